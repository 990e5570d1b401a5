package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"
)

// Remote commands run as `sh -c groupLine+'exec "$@"' sh ARGS...`: the
// shell prints a marker line with its process group, then becomes the
// command. Cancelling kills that group from a second session, because
// sshd refuses SSH "signal" requests on root logins (which have no
// privilege separation: "session signalling requires privilege
// separation"), and a signal would reach only the session's first process.
//
// sshd starts every command through the user's login shell, which may take
// a while (a .bashrc that loads nvm, rbenv or conda) and may print on the
// way. Whatever comes before the marker on stdout is the shell's, not the
// command's, and is dropped (what it prints on stderr cannot be told from
// the command's). A cancel waits for the marker as long as the shell takes,
// up to shellStart, so that a command is ended even when the cancel arrived
// before it started; and if the client has stopped listening by then,
// printing the marker fails and the command never starts.
//
// A command does not outlive its client. sshd does not signal a session's
// processes when the connection goes, it only closes their stdin; so a
// command that reads no stdin runs in the background, with /dev/null for
// input, beside a watcher that reads the session's stdin (through fd 7: sh
// gives a background list /dev/null for stdin), which the client
// keeps open and never writes. When it ends (the client closed it, or sshd
// noticed the connection die: ClientAliveInterval), the watcher sends TERM
// to the group, and KILL once the command has ended or 10 s have passed;
// while it lives, the group's id cannot be reused. The shell exits only
// after the command has: a session that has ended has no command left. A
// command fed on stdin ends with its input.
//
// While the client holds a deploy lock, its commands also hold a shared
// flock(2) on the lock's run file, which the next holder takes exclusively
// before it reports the lock held: a deploy never overlaps the commands of
// the one before, even those still ending after their client went.
const (
	groupMarker = "\x1edeployer-pgid "
	groupLine   = `if read -r s </proc/$$/stat 2>/dev/null; then s=${s##*) }; s=${s#* }; s=${s#* }; g=${s%% *}; else g=$$; fi
printf '\036deployer-pgid %s\n' "$g" || exit 141
`
	// execScript: $1 the run file to hold shared, or ""; $2 "stdin" when
	// the command reads the session's stdin, else "watch"; then the command.
	execScript = groupLine + `if [ -n "$1" ]; then exec 8>>"$1" && flock -s 8 || exit 1; fi
if [ "$2" = stdin ]; then shift 2; exec "$@"; fi
shift 2
"$@" </dev/null &
c=$!
trap 'wait "$c"; exit 143' TERM
exec 7<&0
sh -c '` + watchScript + `' sh "$g" "$$" <&7 >/dev/null 2>&1 7<&- 8>&- &
w=$!
exec 7<&-
wait "$c"
rc=$?
kill -s KILL "$w" 2>/dev/null
exit "$rc"`
	// watchScript: $1 the group, $2 the shell that waits for the command.
	// Once stdin ends it sends TERM to the group, waits up to 10 s for the
	// shell (which waits for the command), then KILLs what is left. It has
	// its own command line, so that it is not taken for the command. The
	// shell's TERM trap leaves it running: it ends when the session's
	// stdin does, which the client closes with the session.
	watchScript = `trap "" TERM; cat; kill -s TERM -- "-$1"; end=$(($(date +%s) + 10)); while kill -0 "$2" && [ "$(date +%s)" -lt "$end" ]; do sleep 0.1; done; kill -s KILL -- "-$1"`
	killScript  = `kill -s "$1" -- "-$2"`
)

// shellStart bounds how long a cancel waits for a login shell to start the
// command it cancels; past that the session is closed, which stops the
// command before it starts. killWait bounds the session that sends the
// signal, its own login shell included.
const (
	shellStart = time.Minute
	killWait   = 15 * time.Second
)

// Run runs a command on the host.
func (c *Client) Run(ctx context.Context, cmd Cmd) error {
	if err := c.run(ctx, cmd); err != nil {
		return fmt.Errorf("run %s on %s: %w", display(cmd.Args), c.name, err)
	}
	return nil
}

// run is Run with errors not yet wrapped with what ran where.
func (c *Client) run(ctx context.Context, cmd Cmd) error {
	if len(cmd.Args) == 0 {
		return errors.New("no command")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s, release, err := c.session(ctx)
	if err != nil {
		return err
	}
	defer release()
	tail := &tailBuffer{}
	group := newGroupWriter(cmd.Stdout)
	s.Stdout, s.Stderr = group, stderrTo(tail, cmd.Stderr)
	// Fed here rather than by the session, whose Wait would wait for a
	// Stdin that never ends even after the command has exited. Without
	// one, stdin stays open, unwritten, until the session closes: the
	// command's watcher on the host ends it when it closes.
	stdin, err := s.StdinPipe()
	if err != nil {
		return err
	}
	mode := "watch"
	if cmd.Stdin != nil {
		mode = "stdin"
	}
	args := append([]string{c.runFile(), mode}, cmd.Args...)
	if err := s.Start(Quote(sh(execScript, args...)...)); err != nil {
		return c.why(fmt.Errorf("start: %w", err))
	}
	fed := func() error { return nil }
	if cmd.Stdin != nil {
		fed = feed(stdin, cmd.Stdin)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		c.stop(s, done, group)
		return ctx.Err()
	case <-c.done:
		return c.lost()
	}
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return fed()
	case errors.As(err, &exit):
		fed()
		return &ExitError{Args: cmd.Args, Code: exit.ExitStatus(), Stderr: tail.String()}
	case errors.As(err, new(*ssh.ExitMissingError)):
		return c.why(errors.New("the command ended without an exit status"))
	}
	return c.why(err)
}

// why is the reason the connection is gone, if it is going, or else err:
// a session torn down by a dying connection can fail before the
// connection's watcher has said why.
func (c *Client) why(err error) error {
	select {
	case <-c.done:
		return c.lost()
	case <-time.After(100 * time.Millisecond):
		return err
	}
}

// stop ends a running command: TERM to its process group as soon as the
// group is known, KILL if it is still there after killGrace, then close the
// session.
func (c *Client) stop(s *ssh.Session, done <-chan error, group *groupWriter) {
	defer s.Close()
	select {
	case <-group.known:
	case <-done:
		return
	case <-c.done:
		return
	case <-time.After(shellStart):
		return
	}
	pgid := group.pgid
	if pgid == 0 {
		return
	}
	c.kill(pgid, "TERM")
	select {
	case <-done:
	case <-c.done:
	case <-time.After(killGrace):
		c.kill(pgid, "KILL")
	}
}

// kill sends a signal to a process group on the host, from a session of
// its own outside the maxSessions bound, so that it cannot wait behind the
// command it stops.
func (c *Client) kill(pgid int, sig string) {
	s, err := c.conn.NewSession()
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan error, 1)
	go func() { done <- s.Run(Quote(sh(killScript, sig, strconv.Itoa(pgid))...)) }()
	select {
	case <-done: // it fails if the group is gone already, which is fine
	case <-c.done:
	case <-time.After(killWait):
	}
}

// groupWriter reads the process group that groupLine printed from a
// command's stdout, drops what came before it (the login shell's) and
// passes the rest on.
type groupWriter struct {
	w     io.Writer
	pre   []byte // what came before the marker line's end, so far
	read  bool
	pgid  int           // valid once known is closed
	known chan struct{} // closed when the marker line has been read
}

func newGroupWriter(w io.Writer) *groupWriter {
	if w == nil {
		w = io.Discard
	}
	return &groupWriter{w: w, known: make(chan struct{})}
}

// maxGroupID bounds what follows the marker on its line: a longer line is
// not a marker line.
const maxGroupID = 32

func (g *groupWriter) Write(p []byte) (int, error) {
	n := len(p)
	if !g.read {
		g.pre = append(g.pre, p...)
		p = nil
		for !g.read {
			i := bytes.Index(g.pre, []byte(groupMarker))
			if i < 0 {
				// The shell's noise: keep only what may begin the marker.
				if cut := len(g.pre) - len(groupMarker); cut > 0 {
					g.pre = bytes.Clone(g.pre[cut:])
				}
				break
			}
			line := g.pre[i+len(groupMarker):]
			end := bytes.IndexByte(line, '\n')
			switch {
			case end < 0 && len(line) <= maxGroupID:
				// The rest of the line is still to come.
			case end < 0:
				g.pre = bytes.Clone(line) // too long for a marker line: look on
				continue
			case end <= maxGroupID && parseGroup(line[:end]) > 0:
				g.pgid, g.read = parseGroup(line[:end]), true
				close(g.known)
				p, g.pre = line[end+1:], nil
				continue
			default:
				g.pre = bytes.Clone(line[end+1:]) // not a marker line: look on
				continue
			}
			break
		}
	}
	if len(p) > 0 {
		if _, err := g.w.Write(p); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// parseGroup reads a process group id. It never gives 0 or 1, which kill
// would take for "my own group" and "every process".
func parseGroup(line []byte) int {
	n, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil || n <= 1 {
		return 0
	}
	return n
}

// feed copies r to the command's stdin w, if any, and closes w at the end
// of r. The returned func waits, at most killGrace, for the copy to end, and
// tells whether reading r failed (writing fails once the command exits,
// which is no error).
func feed(w io.WriteCloser, r io.Reader) (wait func() error) {
	if w == nil {
		return func() error { return nil }
	}
	var readErr error
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		// A write error only means the command stopped reading.
		io.Copy(w, readerFunc(func(p []byte) (int, error) {
			n, err := r.Read(p)
			if err != nil && err != io.EOF {
				readErr = err
			}
			return n, err
		}))
		w.Close()
	}()
	return func() error {
		select {
		case <-copied:
			if readErr != nil {
				return fmt.Errorf("read stdin: %w", readErr)
			}
		case <-time.After(killGrace):
		}
		return nil
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
