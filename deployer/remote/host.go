package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"
)

// Host is a machine that deploys act on: a droplet over SSH (*Client) or
// this machine (Local). Both behave the same for every method.
type Host interface {
	// Name is "user@host:port", or "local".
	Name() string
	// Run runs one command. Cancelling ctx signals the command (TERM, then
	// KILL after a grace period) and returns ctx.Err() wrapped with what was
	// running. A command that ran and failed gives an *ExitError.
	Run(ctx context.Context, c Cmd) error
	// Output runs a command and returns its standard output, bounded to
	// 16 MiB: a command that prints more is stopped and an error returned.
	Output(ctx context.Context, args ...string) ([]byte, error)
	// WriteFile replaces the file at path atomically: it creates the parent
	// directory if needed (mode 0700), writes a temporary file in the same
	// directory with perm set before any data, syncs it and renames it over
	// path. Nothing is left behind if it fails.
	WriteFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error
	// ReadFile reads a file of at most 16 MiB. A missing file gives an error
	// that errors.Is fs.ErrNotExist.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Lock takes an exclusive flock(2) on the file at path (creating it and
	// its directory), waiting up to wait for it, then writes holder into it
	// for others to read. If the lock is busy, waiting is called once with
	// the current holder's content before waiting. A timeout gives a
	// *LockedError. The file is emptied on Unlock and never removed.
	Lock(ctx context.Context, path string, holder []byte, wait time.Duration, waiting func(holder []byte)) (Unlocker, error)
	// DialUnix connects to a unix socket on the host.
	DialUnix(ctx context.Context, path string) (net.Conn, error)
	// Docker returns a client of the host's Docker Engine, reached through
	// DialUnix("/var/run/docker.sock"), with the API version negotiated.
	// The caller closes it.
	Docker(ctx context.Context) (*client.Client, error)
	// Close ends the connection; commands still running fail.
	Close() error
}

var (
	_ Host = (*Client)(nil)
	_ Host = Local{}
)

// Cmd is one command, as an argument list: never a shell string.
type Cmd struct {
	Args   []string
	Stdin  io.Reader // nil: empty
	Stdout io.Writer // nil: discarded
	// Stderr receives the command's standard error (nil: discarded). Its
	// last 4 KiB are kept for the *ExitError either way.
	Stderr io.Writer
}

// Unlocker is a lock taken by Host.Lock.
type Unlocker interface {
	// Unlock releases the lock.
	Unlock() error
	// Lost is closed if the lock stops being held before Unlock because
	// its process on the host ended (killed, say) while the connection
	// lives on; a lost connection fails every command by itself. A local
	// lock, held by this process, is never lost.
	Lost() <-chan struct{}
}

// ExitError is a command that ran and failed. Code is the exit status, or
// 128+n for a command killed by signal n; 127 means the command was not
// found.
type ExitError struct {
	Args   []string
	Code   int
	Stderr string // the last lines of its standard error (at most 4 KiB)
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("exit status %d", e.Code)
	lines := strings.Split(e.Stderr, "\n")
	switch {
	case e.Stderr == "":
		return msg
	case len(lines) == 1:
		return msg + ": " + e.Stderr
	case len(lines) > 10:
		lines = lines[len(lines)-10:]
	}
	return msg + ":\n\t" + strings.Join(lines, "\n\t")
}

// LockedError is a lock that someone else still held when Lock gave up.
type LockedError struct {
	Path   string
	Holder []byte // what the holder wrote into the lock file; may be empty
	Waited time.Duration
}

// EndingHolder is the holder reported while the lock is free but the
// commands of its last holder are still ending (see execScript).
var EndingHolder = []byte("the commands of the deploy before, still ending")

func (e *LockedError) Error() string {
	who := "someone whose holder is unknown"
	if h := bytes.TrimSpace(e.Holder); len(h) > 0 {
		who = string(h)
	}
	return fmt.Sprintf("still held after waiting %s, by %s", e.Waited.Round(time.Millisecond), who)
}

const (
	maxOutput  = 16 << 20 // bound of Output and ReadFile
	stderrKeep = 4 << 10  // stderr kept for an ExitError
	// killGrace is how long a cancelled command has between TERM and KILL.
	killGrace = 2 * time.Second
	// unlockTimeout bounds how long Unlock waits for the holder to let go.
	unlockTimeout = 10 * time.Second
	dockerSocket  = "/var/run/docker.sock"
)

var errTooLarge = errors.New("larger than 16 MiB")

// output runs args through run and collects stdout up to maxOutput; more
// than that cancels the command.
func output(ctx context.Context, run func(context.Context, Cmd) error, args []string) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &limitBuffer{max: maxOutput, exceeded: cancel}
	err := run(ctx, Cmd{Args: args, Stdout: out})
	if out.over() {
		return nil, fmt.Errorf("output %w", errTooLarge)
	}
	return out.bytes(), err
}

// limitBuffer keeps up to max bytes. Past that it calls exceeded and drops
// the rest without failing the write, so that the copy keeps draining while
// the command is being stopped.
type limitBuffer struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	max      int
	overflow bool
	exceeded func()
}

func (b *limitBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.overflow || b.buf.Len()+len(p) > b.max {
		if !b.overflow {
			b.overflow = true
			b.exceeded()
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *limitBuffer) over() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.overflow
}

func (b *limitBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// tailBuffer keeps the last stderrKeep bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	cut bool // the start of buf is lost
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*stderrKeep {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-stderrKeep:]...)
		t.cut = true
	}
	return len(p), nil
}

// String is the kept text, starting at a line boundary when cut.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if t.cut || len(b) > stderrKeep {
		b = b[max(len(b)-stderrKeep, 0):]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.TrimSpace(string(b))
}

// stderrTo returns where a command's stderr goes: the tail, and the caller's
// writer if any.
func stderrTo(t *tailBuffer, w io.Writer) io.Writer {
	if w == nil {
		return t
	}
	return io.MultiWriter(t, w)
}

// display is a command line for an error message: quoted, and cut short.
func display(args []string) string {
	s := Quote(args...)
	if r := []rune(s); len(r) > 80 {
		s = string(r[:80]) + "…"
	}
	return s
}

// checkFilePath rejects paths that cannot name a file.
func checkFilePath(p string) error {
	if p == "" || strings.HasSuffix(p, "/") || strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%q is not a file path", p)
	}
	return nil
}
