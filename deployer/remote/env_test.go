package remote

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semalink/deploy-action/deployer/remote/remotetest"
)

// testEnv is the private sshd that scripts/test-sshd starts.
type testEnv struct{ remotetest.Env }

func sshEnv(t *testing.T) testEnv { return testEnv{remotetest.SSH(t)} }

func need(t *testing.T, format string, args ...any) {
	t.Helper()
	remotetest.Need(t, format, args...)
}

func (e testEnv) addr() string { return net.JoinHostPort(e.Host, e.Port) }

// config is how production connects: key file and known_hosts.
func (e testEnv) config() Config {
	return Config{Addr: e.addr(), User: e.User, KeyFile: e.Key, KnownHosts: e.KnownHosts, ConnectTimeout: 5 * time.Second}
}

func dialTest(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := Dial(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// authorizedKeys is the file the sshd reads authorized keys from, as its
// config says.
func (e testEnv) authorizedKeys(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join(e.Dir, "sshd_config"))
	if err != nil {
		need(t, "sshd config: %v", err)
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		if k, v, _ := strings.Cut(strings.TrimSpace(lines.Text()), " "); strings.EqualFold(k, "AuthorizedKeysFile") {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("sshd_config has no AuthorizedKeysFile")
	return ""
}

var authorizedKeysMu sync.Mutex

// authorize adds a public key to the sshd's authorized keys for the test.
func (e testEnv) authorize(t *testing.T, pubKeyFile string) {
	t.Helper()
	file := e.authorizedKeys(t)
	line, err := os.ReadFile(pubKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	line = append(bytes.TrimSpace(line), '\n')
	authorizedKeysMu.Lock()
	defer authorizedKeysMu.Unlock()
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(line)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		authorizedKeysMu.Lock()
		defer authorizedKeysMu.Unlock()
		data, err := os.ReadFile(file)
		if err != nil {
			t.Error(err)
			return
		}
		if err := os.WriteFile(file, bytes.ReplaceAll(data, line, nil), 0o644); err != nil {
			t.Error(err)
		}
	})
}

// hostKey is the sshd's host key as known_hosts has it.
func (e testEnv) hostKeyLine(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(e.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// tempDir is a new directory that h's commands may write to: one the SSH
// user owns for a Client, t.TempDir for Local.
func tempDir(t *testing.T, h Host) string {
	t.Helper()
	if c, ok := h.(*Client); ok {
		user, _, _ := strings.Cut(c.Name(), "@")
		return remotetest.TempDir(t, user)
	}
	return t.TempDir()
}

// patience is how long a test waits for a condition that is either soon
// true or never: a net so that a broken promise fails with a message
// rather than hanging the run, never what a test measures.
const patience = 2 * time.Minute

// waitUntil polls cond until it holds (true), ctx ends or patience runs out
// (false).
func waitUntil(ctx context.Context, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

// Commands run on this machine get neither the Action's inputs nor the
// runner's tokens, nor what would point compose at another Engine or
// change its profiles.
func TestLocalEnviron(t *testing.T) {
	t.Setenv("GITHUB_ACTIONS", "true")
	t.Setenv("INPUT_SSH-PRIVATE-KEY", "key-material")
	t.Setenv("GITHUB_TOKEN", "ghs_token")
	t.Setenv("COMPOSE_PROFILES", "*")
	t.Setenv("DOCKER_CONTEXT", "elsewhere")
	t.Setenv("DOCKER_HOST", "tcp://203.0.113.7:2375")
	t.Setenv("KEEP_ME", "yes")
	out, err := Local{}.Output(t.Context(), "env")
	if err != nil {
		t.Fatal(err)
	}
	env := string(out)
	for _, gone := range []string{"INPUT_SSH-PRIVATE-KEY=", "GITHUB_TOKEN=", "COMPOSE_PROFILES=", "DOCKER_CONTEXT=", "tcp://203.0.113.7"} {
		if strings.Contains(env, gone) {
			t.Errorf("a local command sees %s", gone)
		}
	}
	for _, kept := range []string{"KEEP_ME=yes\n", "DOCKER_HOST=unix:///var/run/docker.sock\n", "PATH="} {
		if !strings.Contains(env, kept) {
			t.Errorf("a local command lacks %s", strings.TrimSpace(kept))
		}
	}
}
