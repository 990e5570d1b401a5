package remote

// The file operations and the lock of a Client are small sh scripts. Each
// script is a constant; what varies reaches it as positional parameters
// ("$1"...), quoted by Quote like any argument, so no data is ever parsed
// as shell code.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// sh is the argument list that runs script with args as "$1"...
func sh(script string, args ...string) []string {
	return append([]string{"sh", "-c", script, "sh"}, args...)
}

// writeScript: $1 directory, $2 path, $3 base name, $4 octal mode, $5 the
// data's length; the data on stdin. The temporary file is named (after the
// shell's PID) and the traps that remove it are set before it exists, so
// that a write stopped at any point leaves none behind; it is created 0600
// (and not through a link: noclobber, after removing one a dead process
// of the same PID left), then given its mode, then filled; one shorter than
// $5 (its client went away mid-write, which cat takes for the end) is not
// renamed into place.
const writeScript = `set -e
umask 077
mkdir -p -- "$1"
tmp="$1/.$3.$$"
trap 'rm -f -- "$tmp"' EXIT
trap 'exit 143' HUP INT TERM PIPE
rm -f -- "$tmp"
(set -C; : >"$tmp")
chmod "$4" -- "$tmp"
cat >"$tmp"
[ "$(wc -c <"$tmp")" -eq "$5" ] || { echo "short write: $(wc -c <"$tmp") of $5 bytes" >&2; exit 1; }
sync -- "$tmp" 2>/dev/null || sync
mv -f -- "$tmp" "$2"
tmp=
sync -- "$1" 2>/dev/null || sync`

func (c *Client) writeFile(ctx context.Context, p string, data []byte, perm fs.FileMode) error {
	if err := checkFilePath(p); err != nil {
		return err
	}
	mode := strconv.FormatUint(uint64(perm.Perm()), 8)
	return c.run(ctx, Cmd{
		Args:  sh(writeScript, path.Dir(p), p, path.Base(p), mode, strconv.Itoa(len(data))),
		Stdin: bytes.NewReader(data),
	})
}

// readScript: $1 path. A missing file exits with codeMissing, so that "not
// found" is not read from a translated error message.
const readScript = `[ -e "$1" ] || exit 66
exec cat -- "$1"`

const codeMissing = 66

func (c *Client) readFile(ctx context.Context, p string) ([]byte, error) {
	if err := checkFilePath(p); err != nil {
		return nil, err
	}
	data, err := output(ctx, c.run, sh(readScript, p))
	if ee, ok := errors.AsType[*ExitError](err); ok && ee.Code == codeMissing {
		return nil, fs.ErrNotExist
	}
	if errors.Is(err, errTooLarge) {
		return nil, errTooLarge
	}
	return data, err
}

// lockScript: $1 directory, $2 lock file, $3 seconds to wait, $4 holder.
// It holds flock(2) on fd 9 for as long as it runs, and runs until its
// stdin closes: when Unlock closes it, or when sshd closes it because the
// connection dropped. After its process group (groupLine) it prints
// "busy HOLDER" when it has to wait, then "held" once the lock is its own,
// or "timeout HOLDER" when it gave up. HOLDER is what the lock file says,
// in hex, so that telling who holds the lock takes no session of its own:
// the waiting is woken by the release in the kernel, not by a poll.
//
// Before "held" it takes the run file ($2.run) exclusively and lets it go:
// the commands of the previous holder hold it shared until they have ended
// (execScript), which those of a client that went away do within seconds.
// It prints "ending" when it has to wait for them. The client bounds the
// two waits together by the one wait asked for.
const lockScript = groupLine + `command -v flock >/dev/null 2>&1 || exit 69
umask 077
mkdir -p -- "$1" || exit 1
exec 9>>"$2" || exit 1
holder() { printf '%s ' "$1"; head -c 4096 -- "$2" | od -An -v -tx1 | tr -d ' \n'; echo; }
flock -n -E 75 9 || {
	rc=$?
	[ "$rc" -eq 75 ] || exit "$rc"
	holder busy "$2"
	flock -w "$3" -E 75 9 || {
		rc=$?
		[ "$rc" -eq 75 ] && holder timeout "$2"
		exit "$rc"
	}
}
exec 8>>"$2.run" || exit 1
flock -n 8 || {
	echo ending
	flock -w "$3" -E 75 8 || {
		rc=$?
		[ "$rc" -eq 75 ] && echo timeout
		exit "$rc"
	}
}
exec 8>&-
printf '%s' "$4" >"$2"
echo held
cat >/dev/null
: >"$2"`

const (
	codeNoFlock = 69
	codeBusy    = 75
)

func (c *Client) lock(ctx context.Context, p string, holder []byte, wait time.Duration, waiting func([]byte)) (Unlocker, error) {
	if err := checkFilePath(p); err != nil {
		return nil, err
	}
	if bytes.IndexByte(holder, 0) >= 0 {
		return nil, errors.New("the holder contains a NUL byte")
	}
	s, release, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			release()
		}
	}()
	stdin, err := s.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, w := io.Pipe()
	group := newGroupWriter(w)
	tail := &tailBuffer{}
	s.Stdout, s.Stderr = group, tail
	secs := strconv.FormatFloat(max(wait, 0).Seconds(), 'f', 3, 64)
	start := time.Now()
	if err := s.Start(Quote(sh(lockScript, path.Dir(p), p, secs, string(holder))...)); err != nil {
		return nil, c.why(fmt.Errorf("start: %w", err))
	}
	done := make(chan error, 1)
	go func() {
		err := s.Wait()
		w.Close()
		done <- err
	}()
	// The script's lines, until it ends. Read to the end whatever happens,
	// so that the session's output never blocks; once Lock has returned,
	// nobody listens and what comes is dropped.
	lines := make(chan string)
	returned := make(chan struct{})
	defer close(returned)
	go func() {
		defer close(lines)
		r := bufio.NewReaderSize(stdout, 4096)
		for {
			line, err := readLine(r)
			if err != nil {
				return
			}
			select {
			case lines <- line:
			case <-returned:
			}
		}
	}()

	var holderSeen []byte // the holder last reported
	// The script bounds each of its two waits; this bounds them together,
	// from the moment the script runs (the login shell may take a while),
	// with a second for the script's own answer.
	var overall <-chan time.Time
	started := group.known
	for ended := false; !ended; {
		select {
		case <-started:
			started, overall = nil, time.After(max(wait, 0)+time.Second)
		case line, ok := <-lines:
			word, hexHolder, _ := strings.Cut(line, " ")
			switch {
			case !ok:
				ended = true
			case word == "busy":
				holderSeen = unhex(hexHolder)
				if waiting != nil {
					waiting(holderSeen)
				}
			case word == "ending":
				holderSeen = EndingHolder
				if waiting != nil {
					waiting(holderSeen)
				}
			case word == "timeout" && hexHolder != "":
				holderSeen = unhex(hexHolder)
			case word == "held":
				keep = true
				c.mu.Lock()
				c.held = p + ".run"
				c.mu.Unlock()
				return newSSHLock(c, p, stdin, done, release), nil
			}
		case <-ctx.Done():
			// Kill the waiting flock rather than leave it to take the lock
			// behind the caller's back.
			c.stop(s, done, group)
			return nil, ctx.Err()
		case <-overall:
			c.stop(s, done, group)
			return nil, &LockedError{Path: p, Holder: holderSeen, Waited: time.Since(start)}
		case <-c.done:
			return nil, c.lost()
		}
	}
	select {
	case err = <-done:
	case <-c.done:
		return nil, c.lost()
	case <-time.After(unlockTimeout):
		return nil, errors.New("the lock command printed nothing and did not end")
	}
	exit, ok := errors.AsType[*ssh.ExitError](err)
	switch {
	case ok && exit.ExitStatus() == codeBusy:
		return nil, &LockedError{Path: p, Holder: holderSeen, Waited: time.Since(start)}
	case ok && exit.ExitStatus() == codeNoFlock:
		return nil, errors.New("the host has no flock command: install util-linux (apt-get install util-linux)")
	case ok:
		return nil, &ExitError{Args: []string{"flock", p}, Code: exit.ExitStatus(), Stderr: tail.String()}
	case err == nil:
		err = errors.New("the lock command ended without taking the lock")
	}
	return nil, c.why(err)
}

// readLine reads one line, dropping one that does not fit the reader's
// buffer: the lock script's lines are short, a longer one is not its.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = r.ReadSlice('\n')
		}
		if err != nil {
			return "", err
		}
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(line, []byte("\n"))), nil
}

// unhex decodes the lock script's hex; what does not decode is no holder.
func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil
	}
	return b
}

// sshLock is a lock held by a running lock script.
type sshLock struct {
	c       *Client
	path    string
	stdin   io.Closer
	ended   chan struct{} // closed when the script has ended
	endErr  error         // how it ended; valid once ended is closed
	release func()
	once    sync.Once
	err     error
}

func newSSHLock(c *Client, path string, stdin io.Closer, done <-chan error, release func()) *sshLock {
	l := &sshLock{c: c, path: path, stdin: stdin, ended: make(chan struct{}), release: release}
	go func() {
		l.endErr = <-done
		close(l.ended)
	}()
	return l
}

// Lost is closed when the lock script ends before Unlock while the
// connection lives on (it was killed): the lock is no longer ours. When the
// connection goes, the lock goes with it, and every command on the
// connection fails saying so: that needs no second word.
func (l *sshLock) Lost() <-chan struct{} {
	lost := make(chan struct{})
	go func() {
		select {
		case <-l.ended:
			if l.c.why(nil) == nil {
				// Commands from now on must not hold the run file
				// against the next holder.
				l.c.mu.Lock()
				l.c.held = ""
				l.c.mu.Unlock()
				close(lost)
			}
		case <-l.c.done:
		}
	}()
	return lost
}

// Unlock closes the script's stdin, so that it empties the lock file and
// exits, which releases the lock.
func (l *sshLock) Unlock() error {
	l.once.Do(func() {
		defer l.release()
		l.c.mu.Lock()
		l.c.held = ""
		l.c.mu.Unlock()
		l.stdin.Close()
		select {
		case <-l.ended:
			l.err = l.endErr
		case <-l.c.done:
		case <-time.After(unlockTimeout):
			l.err = fmt.Errorf("no answer after %s", unlockTimeout)
		}
		if err := l.c.lost(); err != nil {
			// The host lets go of the lock when sshd notices, if it has
			// not already: the lock may have been lost before Unlock.
			l.err = err
		}
		if l.err != nil {
			l.err = fmt.Errorf("unlock %s on %s: %w", l.path, l.c.name, l.err)
		}
	})
	return l.err
}
