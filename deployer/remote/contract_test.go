package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/semalink/deploy-action/deployer/remote/remotetest"
)

// The contract: every Host behaves the same. Both run on this machine (the
// test sshd listens on 127.0.0.1), so the test can look at the results
// directly too.

func TestLocal(t *testing.T) {
	testHost(t, func(*testing.T) Host { return Local{} })
}

func TestClient(t *testing.T) {
	env := sshEnv(t)
	testHost(t, func(t *testing.T) Host { return dialTest(t, env.config()) })
}

func testHost(t *testing.T, open func(*testing.T) Host) {
	h := open(t)
	tests := []struct {
		name string
		test func(*testing.T, Host)
	}{
		{"Args", testArgs},
		{"ExitError", testExitError},
		{"Stdin", testStdin},
		{"Output", testOutput},
		{"Cancel", testCancel},
		{"WriteFile", testWriteFile},
		{"WriteFileAtomic", testWriteFileAtomic},
		{"ReadFile", testReadFile},
		{"Lock", testLock},
		{"LockCancel", testLockCancel},
		{"Docker", testDocker},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.test(t, h) })
	}
}

func testArgs(t *testing.T, h Host) {
	marker := filepath.Join(tempDir(t, h), "injected")
	args := []string{
		"plain", "with space", "it's", `"double"`, `back\slash`, "", "  ",
		"$(touch " + marker + ")", "`touch " + marker + "`", "; touch " + marker, "&& touch " + marker,
		"| touch " + marker, "> " + marker, "line\nbreak\n", "tab\t", "*", "~", "$HOME", "${PATH}",
		"a=b", "-n", "--", "#not a comment", "!bang", "{a,b}", "ünïcødé ✓", "'", "''", `'\''`,
	}
	out, err := h.Output(t.Context(), append([]string{"printf", "[%s]"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, a := range args {
		want.WriteString("[" + a + "]")
	}
	if string(out) != want.String() {
		t.Errorf("arguments changed on the way:\ngot  %q\nwant %q", out, want.String())
	}
	if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an argument was run as shell code: %s exists", marker)
	}
	// The command itself is an argument too: a name with a space is one word.
	if err := h.Run(t.Context(), Cmd{Args: []string{"true false"}}); exitCode(err) != 127 {
		t.Errorf(`Run("true false") = %v, want exit status 127 (no such command)`, err)
	}
}

func exitCode(err error) int {
	if ee, ok := errors.AsType[*ExitError](err); ok {
		return ee.Code
	}
	return -1
}

func testExitError(t *testing.T, h Host) {
	args := sh("echo first >&2; echo 'it failed' >&2; exit 3")
	err := h.Run(t.Context(), Cmd{Args: args})
	ee, ok := errors.AsType[*ExitError](err)
	if !ok {
		t.Fatalf("Run = %v, want an *ExitError", err)
	}
	if ee.Code != 3 || ee.Stderr != "first\nit failed" || !slices.Equal(ee.Args, args) {
		t.Errorf("ExitError = %+v, want code 3, the stderr and the args", ee)
	}
	for _, want := range []string{"run sh -c", "on " + h.Name(), "exit status 3", "it failed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Run("StderrToo", func(t *testing.T) {
		var stderr bytes.Buffer
		err := h.Run(t.Context(), Cmd{Args: sh("echo oops >&2; exit 1"), Stderr: &stderr})
		if exitCode(err) != 1 || stderr.String() != "oops\n" || !strings.Contains(err.Error(), "oops") {
			t.Errorf("Run = %v with stderr %q, want exit status 1, oops in both", err, stderr.String())
		}
	})
	t.Run("LongStderr", func(t *testing.T) {
		err := h.Run(t.Context(), Cmd{Args: sh(`i=0; while [ $i -lt 2000 ]; do echo "line $i" >&2; i=$((i+1)); done; exit 1`)})
		ee, _ := errors.AsType[*ExitError](err)
		if ee == nil || len(ee.Stderr) > stderrKeep || !strings.HasPrefix(ee.Stderr, "line ") || !strings.HasSuffix(ee.Stderr, "line 1999") {
			t.Errorf("Run = %v, want the last whole lines of stderr, at most 4 KiB", err)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		if err := h.Run(t.Context(), Cmd{Args: []string{"no-such-command-here"}}); exitCode(err) != 127 {
			t.Errorf("Run = %v, want exit status 127", err)
		}
	})
	t.Run("Signal", func(t *testing.T) {
		if err := h.Run(t.Context(), Cmd{Args: sh("kill -TERM $$")}); exitCode(err) != 128+int(syscall.SIGTERM) {
			t.Errorf("Run = %v, want exit status 143", err)
		}
	})
	t.Run("NoCommand", func(t *testing.T) {
		if err := h.Run(t.Context(), Cmd{}); err == nil {
			t.Error("Run with no args succeeded")
		}
	})
}

func testStdin(t *testing.T, h Host) {
	data := make([]byte, 4<<20)
	rand.Read(data)
	var out bytes.Buffer
	if err := h.Run(t.Context(), Cmd{Args: []string{"cat"}, Stdin: bytes.NewReader(data), Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Errorf("cat gave back %d bytes, not the %d sent", out.Len(), len(data))
	}
	t.Run("None", func(t *testing.T) {
		out, err := h.Output(t.Context(), "cat")
		if err != nil || len(out) != 0 {
			t.Errorf("cat with no stdin = %q, %v; want it to end at once with nothing", out, err)
		}
	})
	t.Run("NeverEnds", func(t *testing.T) {
		// The command exits without reading; Run must not wait for a
		// stdin that never ends, beyond the grace period.
		r, w := io.Pipe()
		defer w.Close()
		ctx, cancel := context.WithTimeout(t.Context(), patience)
		defer cancel()
		if err := h.Run(ctx, Cmd{Args: []string{"true"}, Stdin: r}); err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	t.Run("ReadError", func(t *testing.T) {
		r := io.MultiReader(strings.NewReader("some"), iotestErrReader{})
		err := h.Run(t.Context(), Cmd{Args: []string{"cat"}, Stdin: r})
		if err == nil || !strings.Contains(err.Error(), "broken reader") {
			t.Errorf("Run = %v, want the stdin read error", err)
		}
	})
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("broken reader") }

func testOutput(t *testing.T, h Host) {
	out, err := h.Output(t.Context(), "echo", "hello")
	if err != nil || string(out) != "hello\n" {
		t.Errorf("Output = %q, %v", out, err)
	}
	start := time.Now()
	_, err = h.Output(t.Context(), "head", "-c", "17M", "/dev/zero")
	if err == nil || !strings.Contains(err.Error(), "larger than 16 MiB") {
		t.Errorf("Output of 17 MiB = %v, want it refused", err)
	}
	t.Logf("17 MiB refused after %s", time.Since(start).Round(time.Millisecond))
	_, err = h.Output(t.Context(), "cat", "/dev/zero")
	if err == nil || !strings.Contains(err.Error(), "larger than 16 MiB") {
		t.Errorf("Output of endless output = %v, want it stopped and refused", err)
	}
}

// testCancel cancels a command once it runs (it has started a child of its
// own): Run says so, and the command and its child are gone on the host.
func testCancel(t *testing.T, h Host) {
	dir := tempDir(t, h)
	shell, child := filepath.Join(dir, "shell.pid"), filepath.Join(dir, "child.pid")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		if waitUntil(ctx, func() bool { return pidIn(child) > 0 }) {
			cancel()
		}
	}()
	// Longer than the test waits for it to be gone: only the cancel ends it.
	err := h.Run(ctx, Cmd{Args: sh(`echo $$ >"$1"; sleep 3600 & echo $! >"$2.new"; mv "$2.new" "$2"; wait`, shell, child)})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "sleep 3600") {
		t.Errorf("Run = %v, want it cancelled, naming the command", err)
	}
	for _, file := range []string{shell, child} {
		pid := pidIn(file)
		if pid <= 0 {
			t.Fatalf("%s holds no pid", file)
		}
		if !waitUntil(t.Context(), func() bool { return gone(pid) }) {
			t.Errorf("process %d (%s) still runs after the cancel", pid, filepath.Base(file))
		}
	}
}

// pidIn reads a pid from a file; 0 if there is none yet.
func pidIn(file string) int {
	data, _ := os.ReadFile(file)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

var (
	gone      = remotetest.Gone
	running   = remotetest.Running
	processes = remotetest.Processes
)

func testWriteFile(t *testing.T, h Host) {
	dir := filepath.Join(tempDir(t, h), "new", "sub")
	file := filepath.Join(dir, "secret.env")
	stat := func(p string) string {
		out, err := h.Output(t.Context(), "stat", "-c", "%a", p)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	for _, tc := range []struct {
		data []byte
		perm fs.FileMode
		want string
	}{
		{[]byte("TOKEN=s3cret\n"), 0o600, "600"},
		{[]byte("binary\x00\xff\nno newline"), 0o644, "644"},
		{nil, 0o640, "640"},
		{bytes.Repeat([]byte("x"), 1<<20), 0o600, "600"},
	} {
		if err := h.WriteFile(t.Context(), file, tc.data, tc.perm); err != nil {
			t.Fatal(err)
		}
		if got := stat(file); got != tc.want {
			t.Errorf("mode of the written file = %s, want %s", got, tc.want)
		}
		got, err := h.ReadFile(t.Context(), file)
		if err != nil || !bytes.Equal(got, tc.data) {
			t.Errorf("ReadFile gave %d bytes (%v), want the %d written", len(got), err, len(tc.data))
		}
	}
	if got := stat(dir); got != "700" {
		t.Errorf("mode of the made directory = %s, want 700", got)
	}
	if got := ls(t, dir); !slices.Equal(got, []string{"secret.env"}) {
		t.Errorf("directory holds %q, want only the file: no temporary file left", got)
	}
	t.Run("Fails", func(t *testing.T) {
		blocker := filepath.Join(tempDir(t, h), "file")
		os.WriteFile(blocker, nil, 0o600)
		err := h.WriteFile(t.Context(), filepath.Join(blocker, "x"), []byte("x"), 0o600)
		if err == nil || !strings.Contains(err.Error(), "write "+blocker+"/x on "+h.Name()) {
			t.Errorf("WriteFile under a file = %v, want an error naming the path and host", err)
		}
	})
	t.Run("BadPath", func(t *testing.T) {
		if err := h.WriteFile(t.Context(), t.TempDir()+"/", nil, 0o600); err == nil {
			t.Error("WriteFile of a directory path succeeded")
		}
	})
}

func ls(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// testWriteFileAtomic reads a file while it is being replaced: every read
// sees one whole version.
func testWriteFileAtomic(t *testing.T, h Host) {
	dir := tempDir(t, h)
	file := filepath.Join(dir, "release.json")
	a, b := bytes.Repeat([]byte("a"), 1<<20), bytes.Repeat([]byte("b"), 1<<20)
	if err := h.WriteFile(t.Context(), file, a, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil && i < 200; i++ {
			data := a
			if i%2 == 0 {
				data = b
			}
			if err := h.WriteFile(ctx, file, data, 0o644); err != nil && ctx.Err() == nil {
				t.Error(err)
				return
			}
		}
	})
	for range 30 {
		got, err := h.ReadFile(t.Context(), file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
			t.Fatalf("read a mixed or partial file of %d bytes", len(got))
		}
	}
	stop()
	wg.Wait()
	if got := ls(t, dir); !slices.Equal(got, []string{"release.json"}) {
		t.Errorf("directory holds %q, want only the file", got)
	}
}

func testReadFile(t *testing.T, h Host) {
	missing := filepath.Join(tempDir(t, h), "missing")
	_, err := h.ReadFile(t.Context(), missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing+" on "+h.Name()) {
		t.Errorf("ReadFile of a missing file = %v, want fs.ErrNotExist naming the path and host", err)
	}
	big := filepath.Join(tempDir(t, h), "big")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, maxOutput+1); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ReadFile(t.Context(), big); err == nil || !strings.Contains(err.Error(), "larger than 16 MiB") {
		t.Errorf("ReadFile of 16 MiB + 1 = %v, want it refused", err)
	}
	if _, err := h.ReadFile(t.Context(), tempDir(t, h)); err == nil {
		t.Error("ReadFile of a directory succeeded")
	}
}

func testLock(t *testing.T, h Host) {
	file := filepath.Join(tempDir(t, h), "project", "deploy.lock")
	holderA, holderB := []byte(`{"by":"a","pid":1}`), []byte(`{"by":"b"}`)
	a, err := h.Lock(t.Context(), file, holderA, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got, holderA) {
		t.Errorf("lock file holds %q, want the holder %q", got, holderA)
	}

	_, err = h.Lock(t.Context(), file, holderB, 0, nil)
	if le, ok := errors.AsType[*LockedError](err); !ok || !bytes.Equal(le.Holder, holderA) {
		t.Errorf("Lock with no wait = %v, want a *LockedError with holder a", err)
	}

	var told []byte
	_, err = h.Lock(t.Context(), file, holderB, time.Second, func(h []byte) { told = h })
	le, ok := errors.AsType[*LockedError](err)
	if !ok {
		t.Fatalf("second Lock = %v, want a *LockedError", err)
	}
	if !bytes.Equal(le.Holder, holderA) || le.Path != file || le.Waited < time.Second {
		t.Errorf("LockedError = %+v, want holder a after waiting at least the 1s asked", le)
	}
	if !bytes.Equal(told, holderA) {
		t.Errorf("waiting was told %q, want holder a", told)
	}
	if !strings.Contains(err.Error(), `{"by":"a","pid":1}`) || !strings.Contains(err.Error(), h.Name()) {
		t.Errorf("error %q does not say who holds it where", err)
	}

	// A waiter gets the lock when it is released: a is let go once b says
	// it waits, and b then holds it.
	released := make(chan time.Time, 1)
	b, err := h.Lock(t.Context(), file, holderB, patience, func([]byte) {
		go func() {
			if err := a.Unlock(); err != nil {
				t.Error(err)
			}
			released <- time.Now()
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-released:
		t.Logf("waiter took the lock %s after it was released", time.Since(at).Round(time.Millisecond))
	case <-time.After(patience):
		t.Fatal("a was never released")
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got, holderB) {
		t.Errorf("lock file holds %q, want holder b", got)
	}
	if err := b.Unlock(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(file); err != nil || len(got) != 0 {
		t.Errorf("lock file after Unlock = %q, %v; want it there and empty", got, err)
	}
	if err := b.Unlock(); err != nil {
		t.Errorf("second Unlock = %v", err)
	}
	if mode := fileMode(t, file); mode != 0o600 {
		t.Errorf("lock file mode %o, want 600", mode)
	}
}

func fileMode(t *testing.T, file string) fs.FileMode {
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// testLockCancel cancels a waiting Lock: it returns, and does not take the
// lock later behind the caller's back.
func testLockCancel(t *testing.T, h Host) {
	file := filepath.Join(tempDir(t, h), "deploy.lock")
	a, err := h.Lock(t.Context(), file, []byte("a"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err = h.Lock(ctx, file, []byte("b"), time.Hour, func([]byte) { cancel() })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Lock = %v", err)
	}
	// No waiter is left on the host to take the lock later: no process
	// names the lock file once the cancelled Lock has returned (a is ours:
	// Local holds it in this process, a Client in its lock script).
	if _, local := h.(Local); local {
		if pids := running(file); len(pids) != 0 {
			t.Errorf("processes %v still name the lock file", pids)
		}
	} else if !waitUntil(t.Context(), func() bool { return len(running(file)) == 1 }) {
		t.Errorf("processes %v name the lock file, want only a's lock script", running(file))
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	c, err := h.Lock(t.Context(), file, []byte("c"), 0, nil)
	if err != nil {
		t.Fatalf("lock after the cancelled waiter: %v", err)
	}
	c.Unlock()
}

func testDocker(t *testing.T, h Host) {
	if _, err := os.Stat(dockerSocket); err != nil {
		need(t, "no Docker Engine here: %v", err)
	}
	cli, err := h.Docker(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ping, err := cli.Ping(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	info, err := cli.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.ServerVersion == "" || cli.ClientVersion() != ping.APIVersion {
		t.Errorf("engine %q, API %s, client speaks %s: want the version negotiated", info.ServerVersion, ping.APIVersion, cli.ClientVersion())
	}
	t.Logf("engine %s, API %s, %d containers", info.ServerVersion, cli.ClientVersion(), info.Containers)
}
