// Package remotetest gives tests the private sshd that scripts/test-sshd
// starts on 127.0.0.1: where it listens, the users it lets in (an
// unprivileged deploy user, and one whose shell is slow to start), the
// client key it accepts and the known_hosts file that verifies it, as in
// production. Outside CI a test skips when the sshd is missing; in CI (CI
// set to anything) it fails.
//
// It is for tests only.
package remotetest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	osuser "os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Env is the sshd's settings, from TEST_SSH_* or .testenv/env.
type Env struct {
	Host, Port, Key, KnownHosts string
	// HostCA is the public key of the CA that signed the host key's
	// certificate, which the sshd also offers.
	HostCA string
	// User is an unprivileged user in the docker group with a plain shell;
	// SlowUser's login shell prints a banner and takes a second to start,
	// SlowerUser's three (longer than a cancelled command's grace period).
	User, SlowUser, SlowerUser string
	Dir                        string // the sshd's state directory
}

// Need skips the test, or fails it in CI, where nothing may be missing. It
// is the one place that decides between the two: CI set to any value means
// CI, so a CI system that says CI=1 fails too rather than skipping.
func Need(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// TempDir is a new directory that user owns on the host (this machine),
// for what a command run as that user writes; it is removed when the test
// ends. t.TempDir will not do: it sits below a directory only the test's
// own user may enter.
func TempDir(t testing.TB, user string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "deployer-host-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	Chown(t, dir, user)
	return dir
}

// Chown gives a file or directory to user (and the user's group).
func Chown(t testing.TB, path, user string) {
	t.Helper()
	u, err := osuser.Lookup(user)
	if err != nil {
		Need(t, "user %s: %v: run scripts/test-sshd", user, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatalf("give %s to %s: %v", path, user, err)
	}
}

// SSH reads the sshd's settings from TEST_SSH_* or, when they are unset,
// from .testenv/env at the repository root.
func SSH(t testing.TB) Env {
	t.Helper()
	keys := []string{"TEST_SSH_HOST", "TEST_SSH_PORT", "TEST_SSH_USER", "TEST_SSH_SLOW_USER", "TEST_SSH_SLOWER_USER", "TEST_SSH_KEY", "TEST_SSH_KNOWN_HOSTS", "TEST_SSH_HOST_CA"}
	vars := map[string]string{}
	for _, k := range keys {
		vars[k] = os.Getenv(k)
	}
	if vars["TEST_SSH_HOST"] == "" {
		if root, err := repoRoot(); err == nil {
			readEnvFile(filepath.Join(root, ".testenv", "env"), vars)
		}
	}
	for _, k := range keys {
		if vars[k] == "" {
			Need(t, "%s is not set and .testenv/env has no value for it: run scripts/test-sshd", k)
		}
	}
	return Env{
		Host: vars["TEST_SSH_HOST"], Port: vars["TEST_SSH_PORT"],
		User: vars["TEST_SSH_USER"], SlowUser: vars["TEST_SSH_SLOW_USER"], SlowerUser: vars["TEST_SSH_SLOWER_USER"],
		Key: vars["TEST_SSH_KEY"], KnownHosts: vars["TEST_SSH_KNOWN_HOSTS"], HostCA: vars["TEST_SSH_HOST_CA"],
		Dir: filepath.Dir(vars["TEST_SSH_KNOWN_HOSTS"]),
	}
}

// OtherKey is a freshly made host key: the wrong one for the test sshd.
func OtherKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// OtherHostKeyLine is a known_hosts line for addr with OtherKey.
func OtherHostKeyLine(t testing.TB, addr string) string {
	t.Helper()
	return knownhosts.Line([]string{knownhosts.Normalize(addr)}, OtherKey(t)) + "\n"
}

// Gone tells whether a process has ended (or is a zombie nobody reaped
// yet).
func Gone(pid int) bool {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	return err != nil || strings.Contains(string(status), "\nState:\tZ")
}

// Running lists the processes on this machine (the test hosts' too) that
// have arg as one of their arguments.
func Running(arg string) []int {
	return Processes(func(args []string) bool { return slices.Contains(args, arg) })
}

// Processes lists the processes on this machine whose arguments match,
// zombies left out.
func Processes(match func(args []string) bool) []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || !match(strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")) {
			continue
		}
		if pid, _ := strconv.Atoi(filepath.Base(d)); !Gone(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// readEnvFile fills vars from lines "export K=V".
func readEnvFile(file string, vars map[string]string) {
	data, err := os.ReadFile(file)
	if err != nil {
		return
	}
	for line := range strings.Lines(string(data)) {
		k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "export "), "=")
		if ok {
			vars[k] = strings.Trim(v, `"'`)
		}
	}
}

// Network dials real connections that a test can cut (closed at once, as
// when the deployer ends) or freeze (nothing goes through either way and
// nothing is closed, as when a network drops packets). Its connections are
// closed when the test ends.
type Network struct {
	mu    sync.Mutex
	conns []*Conn
}

// NewNetwork returns a Network whose connections t's end closes.
func NewNetwork(t testing.TB) *Network {
	n := &Network{}
	t.Cleanup(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, c := range n.conns {
			c.Conn.Close()
		}
	})
	return n
}

// Dial is a remote.Config's Dial.
func (n *Network) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := &Conn{Conn: conn}
	n.mu.Lock()
	n.conns = append(n.conns, c)
	n.mu.Unlock()
	return c, nil
}

// Last is the connection dialled last.
func (n *Network) Last() *Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conns[len(n.conns)-1]
}

// CutAll closes every connection dialled so far.
func (n *Network) CutAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		c.Conn.Close()
	}
}

// FreezeAll freezes every connection dialled so far.
func (n *Network) FreezeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		c.Freeze()
	}
}

// Conn is a connection of a Network.
type Conn struct {
	net.Conn
	frozen atomic.Bool
}

// Freeze lets nothing through from now on, either way; reads drop what
// arrives, writes pretend to succeed, Close sends nothing.
func (c *Conn) Freeze() { c.frozen.Store(true) }

func (c *Conn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err != nil || !c.frozen.Load() {
			return n, err
		}
	}
}

func (c *Conn) Write(p []byte) (int, error) {
	if c.frozen.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// Close closes the connection, unless it is frozen: then no FIN may reach
// the other side, and the Network closes it when the test ends.
func (c *Conn) Close() error {
	if c.frozen.Load() {
		return nil
	}
	return c.Conn.Close()
}
