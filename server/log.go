package server

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// deployLog is a running deploy's log: written to its file, at most
// maxLog bytes, and read by any number of followers that wait for more
// until it is closed.
type deployLog struct {
	mu      sync.Mutex
	f       *os.File
	path    string
	size    int64
	closed  bool
	changed chan struct{} // closed and replaced on each write
	err     error
}

func newDeployLog(path string) *deployLog {
	l := &deployLog{path: path, changed: make(chan struct{})}
	l.f, l.err = os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	return l
}

// Write appends p, or drops it past maxLog (saying so once).
func (l *deployLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil || l.closed {
		return len(p), nil // a deploy does not fail for its log
	}
	switch {
	case l.size >= maxLog:
		return len(p), nil
	case l.size+int64(len(p)) > maxLog:
		msg := fmt.Sprintf("\n[the log stops here: over %d bytes]\n", maxLog)
		l.write([]byte(msg))
		l.size = maxLog
	default:
		l.write(p)
	}
	return len(p), nil
}

func (l *deployLog) write(p []byte) {
	n, err := l.f.Write(p)
	l.size += int64(n)
	if err != nil {
		l.err = err
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// end writes the deploy's last line, past the size limit too.
func (l *deployLog) end(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil && !l.closed {
		l.write([]byte(line))
	}
}

func (l *deployLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
	}
	l.closed = true
	close(l.changed)
}

// follow reads the log from its start, waiting for more until it is
// closed; Close on the reader stops it.
func (l *deployLog) follow() io.ReadCloser {
	f, err := os.Open(l.path)
	if err != nil {
		return io.NopCloser(&errReader{err})
	}
	return &follower{l: l, f: f, stop: make(chan struct{})}
}

type follower struct {
	l    *deployLog
	f    *os.File
	stop chan struct{}
	once sync.Once
}

func (r *follower) Read(p []byte) (int, error) {
	for {
		// Take the change channel before reading, so that a write after
		// the read wakes us.
		r.l.mu.Lock()
		changed, closed := r.l.changed, r.l.closed
		r.l.mu.Unlock()
		n, err := r.f.Read(p)
		if n > 0 || (err != nil && err != io.EOF) {
			return n, err
		}
		if closed {
			return 0, io.EOF
		}
		select {
		case <-changed:
		case <-r.stop:
			return 0, io.EOF
		}
	}
}

func (r *follower) Close() error {
	r.once.Do(func() { close(r.stop) })
	return r.f.Close()
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }
