// Package benchenv is what a benchmark runs on: the checkout, the machine,
// the demo api binary. It also holds the random bytes of a dependency
// layer and the progress line and seconds format that bench/build and
// bench/ship share.
package benchenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// FindRepo returns the deploy-action checkout that holds the working
// directory: the nearest directory, going up, whose go.mod declares the
// module.
func FindRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(data, []byte("module github.com/semalink/deploy-action\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run it from the deploy-action checkout")
		}
		dir = parent
	}
}

// CPUModel is the CPU's model name from /proc/cpuinfo, or "?".
func CPUModel() string {
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return "?"
}

// LoadAvg is the 1, 5 and 15 minute load averages from /proc/loadavg, or
// "?".
func LoadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// BuildAPI links the demo api (examples/demo/api) of the checkout repo
// into the file out: static (CGO_ENABLED=0), -trimpath, with main.release
// set to release, so that each release string makes an app layer of its
// own.
func BuildAPI(ctx context.Context, repo, out, release string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-X main.release="+release, "-o", out, "./examples/demo/api")
	cmd.Dir, cmd.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the demo api: %w\n%s", err, out)
	}
	return nil
}

// RandomBytes is n bytes from a random seed of their own: a dependency
// layer whose content no earlier build has seen.
func RandomBytes(n int) []byte {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	b := make([]byte, n)
	rand.NewChaCha8(seed).Read(b)
	return b
}

// Secs formats d as seconds with two decimals: "1.23 s".
func Secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// Logf writes a progress line to stderr, stamped with the time of day.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// SSHEnv reads the test sshd's settings from TEST_SSH_* or .testenv/env.
func SSHEnv(repo string) (map[string]string, error) {
	keys := []string{"TEST_SSH_HOST", "TEST_SSH_PORT", "TEST_SSH_USER", "TEST_SSH_KEY", "TEST_SSH_KNOWN_HOSTS"}
	env := map[string]string{}
	for _, k := range keys {
		env[k] = os.Getenv(k)
	}
	if env["TEST_SSH_HOST"] == "" {
		data, err := os.ReadFile(filepath.Join(repo, ".testenv", "env"))
		if err != nil {
			return nil, fmt.Errorf("no TEST_SSH_* and %w: start the test sshd with scripts/test-sshd", err)
		}
		for line := range strings.Lines(string(data)) {
			k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "export "), "=")
			if ok {
				env[k] = strings.Trim(v, `"'`)
			}
		}
	}
	for _, k := range keys {
		if env[k] == "" {
			return nil, fmt.Errorf("%s is not set: start the test sshd with scripts/test-sshd", k)
		}
	}
	return env, nil
}
