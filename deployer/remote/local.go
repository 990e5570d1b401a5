package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/client"
	"github.com/semalink/deploy-action/checks/project"
)

// Local is this machine as a Host, for deploying where the deployer runs
// (deployer deploy --local): commands run with os/exec and no shell, files
// are written directly, Lock is flock(2) and DialUnix is net.Dial. It
// behaves as a Client does.
type Local struct{}

// Name is "local".
func (Local) Name() string { return "local" }

// Close does nothing.
func (Local) Close() error { return nil }

// Run runs a command in a process group of its own, so that cancelling
// ctx signals everything it started, as sshd does for a remote command.
func (l Local) Run(ctx context.Context, cmd Cmd) error {
	if err := l.run(ctx, cmd); err != nil {
		return fmt.Errorf("run %s on local: %w", display(cmd.Args), err)
	}
	return nil
}

func (Local) run(ctx context.Context, c Cmd) error {
	if len(c.Args) == 0 {
		return errors.New("no command")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	tail := &tailBuffer{}
	cmd := exec.Command(c.Args[0], c.Args[1:]...)
	// What this process was given for itself (the Action's inputs, the
	// runner's tokens, the key's passphrase) is not its commands'.
	cmd.Env = localEnviron()
	cmd.Stdout, cmd.Stderr = c.Stdout, stderrTo(tail, c.Stderr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Output held open by a process left in the background.
	cmd.WaitDelay = killGrace
	var stdin io.WriteCloser
	if c.Stdin != nil {
		// Fed as Client does: os/exec would wait for a Stdin that never
		// ends, even after the command has exited.
		var err error
		if stdin, err = cmd.StdinPipe(); err != nil {
			return err
		}
	}
	if err := cmd.Start(); err != nil {
		// Say it as a shell would, so that callers see what a Client shows.
		switch {
		case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
			return &ExitError{Args: c.Args, Code: 127, Stderr: c.Args[0] + ": not found"}
		case errors.Is(err, fs.ErrPermission):
			return &ExitError{Args: c.Args, Code: 126, Stderr: c.Args[0] + ": permission denied"}
		}
		return err
	}
	fed := feed(stdin, c.Stdin)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
		if ferr := fed(); err == nil {
			return ferr
		}
	case <-ctx.Done():
		group := -cmd.Process.Pid
		syscall.Kill(group, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(killGrace):
			syscall.Kill(group, syscall.SIGKILL)
			<-done
		}
		return ctx.Err()
	}
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		code := exit.ExitCode()
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return &ExitError{Args: c.Args, Code: code, Stderr: tail.String()}
	}
	return err
}

// Output runs a command and returns its standard output.
func (l Local) Output(ctx context.Context, args ...string) ([]byte, error) {
	out, err := output(ctx, l.run, args)
	if err != nil {
		return out, fmt.Errorf("run %s on local: %w", display(args), err)
	}
	return out, nil
}

// WriteFile writes a file atomically; see Host.
func (Local) WriteFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error {
	if err := writeFile(ctx, path, data, perm); err != nil {
		return fmt.Errorf("write %s on local: %w", path, err)
	}
	return nil
}

func writeFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error {
	if err := checkFilePath(path); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return pathless(err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return pathless(err)
	}
	defer os.Remove(f.Name()) // fails once renamed, as it should
	defer f.Close()
	// The mode comes first, so that the data is never readable by more
	// than perm allows.
	if err := f.Chmod(perm.Perm()); err != nil {
		return pathless(err)
	}
	if _, err := f.Write(data); err != nil {
		return pathless(err)
	}
	if err := f.Sync(); err != nil {
		return pathless(err)
	}
	if err := f.Close(); err != nil {
		return pathless(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return pathless(err)
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return pathless(err)
	}
	defer d.Close()
	return pathless(d.Sync())
}

// ReadFile reads a file of at most 16 MiB; see Host.
func (Local) ReadFile(ctx context.Context, path string) ([]byte, error) {
	data, err := readFile(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("read %s on local: %w", path, err)
	}
	return data, nil
}

func readFile(ctx context.Context, path string) ([]byte, error) {
	if err := checkFilePath(path); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, pathless(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxOutput+1))
	if err != nil {
		return nil, pathless(err)
	}
	if len(data) > maxOutput {
		return nil, errTooLarge
	}
	return data, nil
}

// pathless drops the *PathError around err: the caller names the path.
func pathless(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// DialUnix connects to a unix socket on this machine.
func (Local) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial %s on local: %w", path, err)
	}
	return conn, nil
}

// Docker returns a client of this machine's Docker Engine.
func (l Local) Docker(ctx context.Context) (*client.Client, error) {
	return docker(ctx, l)
}

// Lock takes an exclusive flock(2) on path, polling for up to wait; see
// Host.
func (Local) Lock(ctx context.Context, path string, holder []byte, wait time.Duration, waiting func(holder []byte)) (Unlocker, error) {
	l, err := lockFile(ctx, path, holder, wait, waiting)
	if err != nil {
		return nil, fmt.Errorf("lock %s on local: %w", path, err)
	}
	return l, nil
}

// lockPoll is how often a busy lock is tried again.
const lockPoll = 50 * time.Millisecond

func lockFile(ctx context.Context, path string, holder []byte, wait time.Duration, waiting func([]byte)) (*localLock, error) {
	if err := checkFilePath(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, pathless(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, pathless(err)
	}
	start := time.Now()
	current := func() []byte { h, _ := readFile(ctx, path); return h }
	if err := flockWait(ctx, f, start, wait, current, waiting); err != nil {
		f.Close()
		if le, ok := errors.AsType[*LockedError](err); ok {
			le.Path = path
		}
		return nil, err
	}
	// The commands of an SSH deploy that held the lock before may still be
	// ending: they hold the run file shared until they have (execScript).
	run, err := os.OpenFile(path+".run", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		f.Close()
		return nil, pathless(err)
	}
	err = flockWait(ctx, run, start, wait, func() []byte { return EndingHolder }, waiting)
	run.Close()
	if err != nil {
		f.Close()
		if le, ok := errors.AsType[*LockedError](err); ok {
			le.Path = path
		}
		return nil, err
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, pathless(err)
	}
	if _, err := f.WriteAt(holder, 0); err != nil {
		f.Close()
		return nil, pathless(err)
	}
	return &localLock{f: f}, nil
}

// flockWait takes an exclusive flock on f, trying until wait has passed
// since start; when it has to wait, it tells waiting (if any) who holds it.
func flockWait(ctx context.Context, f *os.File, start time.Time, wait time.Duration, holder func() []byte, waiting func([]byte)) error {
	for tries := 0; ; tries++ {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("flock: %w", err)
		}
		if tries == 0 && waiting != nil {
			waiting(holder())
		}
		waited := time.Since(start)
		if waited >= wait {
			return &LockedError{Holder: holder(), Waited: waited}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(wait-waited, lockPoll)):
		}
	}
}

type localLock struct{ f *os.File }

// Lost is never closed: this process holds the lock.
func (*localLock) Lost() <-chan struct{} { return nil }

// Unlock empties the lock file and lets go of it.
func (l *localLock) Unlock() error {
	if l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	truncErr := f.Truncate(0)
	// Closing the only descriptor releases the flock.
	if err := errors.Join(truncErr, f.Close()); err != nil {
		return fmt.Errorf("unlock %s on local: %w", f.Name(), pathless(err))
	}
	return nil
}

// localEnviron is what commands run on this machine get: this process's
// environment without what was given to it alone (project.ShellEnviron),
// without COMPOSE_* and DOCKER_CONTEXT (compose would read them: a profile
// that starts the migration service inside up, another Engine), and with
// DOCKER_HOST set to the Engine that Docker talks to, so that compose and
// the pipeline use the same one.
func localEnviron() []string {
	env := slices.DeleteFunc(project.ShellEnviron(), func(kv string) bool {
		return strings.HasPrefix(kv, "COMPOSE_") || strings.HasPrefix(kv, "DOCKER_CONTEXT=") || strings.HasPrefix(kv, "DOCKER_HOST=")
	})
	return append(env, "DOCKER_HOST=unix://"+dockerSocket)
}
