// Package remotetest gives tests the private sshd that scripts/test-sshd
// starts on 127.0.0.1: where it listens, the client key it accepts and the
// known_hosts file that verifies it, as in production. Outside CI a test skips when the sshd is missing; with
// CI=true it fails.
//
// It is for tests only.
package remotetest

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Env is the sshd's settings, from TEST_SSH_* or .testenv/env.
type Env struct {
	Host, Port, User, Key, KnownHosts string
	Dir                               string // its state directory
}

// Need skips the test, or fails it in CI, where nothing may be missing.
func Need(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// SSH reads the sshd's settings from TEST_SSH_* or, when they are unset,
// from .testenv/env at the repository root.
func SSH(t testing.TB) Env {
	t.Helper()
	keys := []string{"TEST_SSH_HOST", "TEST_SSH_PORT", "TEST_SSH_USER", "TEST_SSH_KEY", "TEST_SSH_KNOWN_HOSTS"}
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
		Host: vars["TEST_SSH_HOST"], Port: vars["TEST_SSH_PORT"], User: vars["TEST_SSH_USER"],
		Key: vars["TEST_SSH_KEY"], KnownHosts: vars["TEST_SSH_KNOWN_HOSTS"],
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
