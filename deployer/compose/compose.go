package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"sync"

	"github.com/semalink/deploy-action/deployer/remote"
)

// Runner runs a command on the host: a remote.Host (over SSH, or this
// machine). A command that ran and failed returns a *remote.ExitError.
type Runner interface {
	Run(ctx context.Context, c remote.Cmd) error
}

// CLI is one compose project on the host, as the compose command line sees
// it. The zero Command means the v2 plugin, ["docker", "compose"].
type CLI struct {
	Runner  Runner
	Command []string // ["docker", "compose"] or ["docker-compose"], as Detect found it
	Version string   // as Detect found it; a 1.x version leaves out flags v1 lacks
	Project string   // -p
	Dir     string   // --project-directory
	Files   []string // -f, in order
	EnvFile string   // --env-file, optional
}

// Up creates or recreates the project's services (all of them, or the
// named ones) and starts them in the background. It never builds and, on
// v2, never pulls: images are on the host before up runs.
func (c CLI) Up(ctx context.Context, services ...string) error {
	args := []string{"up", "-d", "--remove-orphans", "--no-build"}
	if !c.v1() {
		args = append(args, "--pull", "never")
	}
	return c.run(ctx, "up", append(args, services...), nil, nil)
}

// Create creates containers of service up to scale, keeping the ones it
// has as they are (--no-recreate), without starting them: a start-first
// swap's new containers.
func (c CLI) Create(ctx context.Context, service string, scale int) error {
	args := []string{"create", "--no-recreate", "--no-build", "--scale", fmt.Sprintf("%s=%d", service, scale)}
	if !c.v1() {
		args = append(args, "--pull", "never")
	}
	return c.run(ctx, "create "+service, append(args, service), nil, nil)
}

// Start starts service's containers that are not running, and what it
// depends on, as compose does: in order, waiting for the dependencies'
// conditions, with the configs and secrets copied in.
func (c CLI) Start(ctx context.Context, service string) error {
	return c.run(ctx, "start "+service, []string{"start", service}, nil, nil)
}

// ConfigHash is the hash compose gives service's configuration, which its
// containers carry in the label com.docker.compose.config-hash.
func (c CLI) ConfigHash(ctx context.Context, service string) (string, error) {
	var out strings.Builder
	if err := c.run(ctx, "config --hash", []string{"config", "--hash", service}, &out, nil); err != nil {
		return "", err
	}
	for line := range strings.Lines(out.String()) {
		if name, hash, ok := strings.Cut(strings.TrimSpace(line), " "); ok && name == service {
			return hash, nil
		}
	}
	return "", fmt.Errorf("compose config --hash %s printed no hash", service)
}

// RunOnce runs service as a one-off container without a TTY and removes it
// afterwards, streaming its output to stdout and stderr. A non-zero exit
// is an *Error with the exit code and the last lines of stderr.
//
// Compose starts the service's dependencies first, recreating any whose
// configuration changed, and runs a service that is in a profile.
//
// The container carries the label RunLabel, which tells it from a one-off
// container someone started by hand.
func (c CLI) RunOnce(ctx context.Context, service string, stdout, stderr io.Writer) error {
	args := []string{"run", "--rm", "-T", "--label", RunLabel + "=1"}
	if !c.v1() {
		args = append(args, "--pull", "never")
	}
	return c.run(ctx, "run "+service, append(args, service), stdout, stderr)
}

// Args returns the full argument list for a compose subcommand and its
// arguments: the command, the project flags, then args.
func (c CLI) Args(args ...string) []string {
	cmd := c.Command
	if len(cmd) == 0 {
		cmd = v2Command
	}
	out := append([]string(nil), cmd...)
	if c.Project != "" {
		out = append(out, "-p", c.Project)
	}
	if c.Dir != "" {
		out = append(out, "--project-directory", c.Dir)
	}
	for _, f := range c.Files {
		out = append(out, "-f", f)
	}
	if c.EnvFile != "" {
		out = append(out, "--env-file", c.EnvFile)
	}
	return append(out, args...)
}

// v1 reports whether c runs Compose v1, which lacks --pull on up and run.
func (c CLI) v1() bool {
	if c.Version != "" {
		return strings.HasPrefix(c.Version, "1.")
	}
	// Without a detected version, a lone docker-compose is taken for v1:
	// leaving out --pull is harmless on a standalone v2 binary.
	return len(c.Command) == 1 && path.Base(c.Command[0]) == "docker-compose"
}

func (c CLI) run(ctx context.Context, what string, args []string, stdout, stderr io.Writer) error {
	// The two streams are copied concurrently, and callers often pass one
	// writer for both.
	var mu sync.Mutex
	tail := &lastLines{max: stderrLines}
	errw := &locked{mu: &mu, w: tail}
	if stderr != nil {
		errw.w = io.MultiWriter(stderr, tail)
	}
	var outw io.Writer
	if stdout != nil {
		outw = &locked{mu: &mu, w: stdout}
	}
	err := c.Runner.Run(ctx, remote.Cmd{Args: c.Args(args...), Stdout: outw, Stderr: errw})
	if err == nil {
		return nil
	}
	cmd := c.Command
	if len(cmd) == 0 {
		cmd = v2Command
	}
	e := &Error{Command: strings.Join(cmd, " ") + " " + what, ExitCode: -1, Stderr: tail.lines(), Err: err}
	if ctx.Err() != nil {
		// Killed because the caller gave up: that, not the exit status of
		// a killed process, is what happened.
		e.Err = ctx.Err()
	} else if code, ok := exitCode(err); ok {
		e.ExitCode = code
	}
	return e
}

var v2Command = []string{"docker", "compose"}

// RunLabel marks the containers of RunOnce.
const RunLabel = "io.semalink.deployer.run"

// stderrLines is how much of a failed command's stderr an Error keeps.
const stderrLines = 10

// Error is a compose command that failed: which one, its exit code when it
// exited on its own, and the last lines it wrote to stderr.
type Error struct {
	Command  string   // e.g. "docker compose run migrate"
	ExitCode int      // -1 when it did not exit on its own (not started, killed, cancelled)
	Stderr   []string // its last lines of stderr, oldest first
	Err      error    // the Runner's error, or the context's when it was cancelled
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Command)
	if e.ExitCode >= 0 {
		fmt.Fprintf(&b, ": exit code %d", e.ExitCode)
	} else {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	switch len(e.Stderr) {
	case 0:
	case 1:
		b.WriteString(": " + e.Stderr[0])
	default:
		b.WriteString(":\n\t" + strings.Join(e.Stderr, "\n\t"))
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// exitCode finds the exit status in a Runner's error.
func exitCode(err error) (int, bool) {
	if ee, ok := errors.AsType[*remote.ExitError](err); ok {
		return ee.Code, true
	}
	return 0, false
}

// locked serializes writes to w.
type locked struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *locked) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// lastLines is a writer that keeps the last max non-empty lines written to
// it, each cut at maxLine bytes, leaving out compose's progress lines.
type lastLines struct {
	max  int
	done []string
	cur  []byte
}

const maxLine = 512

// progress matches compose's progress lines ("Container shop-db-1  Started",
// "Network shop_default  Creating"): they would crowd out the lines that
// say what went wrong.
var progress = regexp.MustCompile(`^(Container|Network|Volume|Image) \S+ +(Creating|Created|Recreate|Recreated|Starting|Started|Running|Waiting|Healthy|Stopping|Stopped|Removing|Removed|Pulling|Pulled|Skipped)$`)

func (l *lastLines) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.cur = appendCapped(l.cur, p)
			break
		}
		l.cur = appendCapped(l.cur, p[:i])
		l.flush()
		p = p[i+1:]
	}
	return n, nil
}

func appendCapped(dst, p []byte) []byte {
	if room := maxLine - len(dst); len(p) > room {
		p = p[:max(room, 0)]
	}
	return append(dst, p...)
}

func (l *lastLines) flush() {
	line := strings.TrimSpace(strings.TrimRight(string(l.cur), "\r"))
	l.cur = l.cur[:0]
	if line == "" || progress.MatchString(line) {
		return
	}
	l.done = append(l.done, line)
	if len(l.done) > l.max {
		l.done = l.done[len(l.done)-l.max:]
	}
}

func (l *lastLines) lines() []string {
	if len(l.cur) > 0 {
		l.flush()
	}
	return l.done
}
