package build

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/semalink/deploy-action/deployer/remote/remotetest"
	"github.com/sirupsen/logrus"
)

// TestMain removes the images and the api binary the tests made.
func TestMain(m *testing.M) {
	// BuildKit's client logs through logrus (a local cache store warns that
	// the filesystem has no fs-verity); cmd/deployer discards it too.
	logrus.SetOutput(io.Discard)
	code := m.Run()
	cleanup()
	os.Exit(code)
}

var (
	apiOnce sync.Once
	apiDir  string
	apiErr  error

	tagsMu sync.Mutex
	tags   []string
)

func cleanup() {
	if len(tags) > 0 {
		if docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation()); err == nil {
			for _, tag := range tags {
				_, _ = docker.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true})
			}
			docker.Close()
		}
	}
	if apiDir != "" {
		os.RemoveAll(apiDir)
	}
}

// need fails the test in CI and skips it otherwise.
func need(t testing.TB, format string, args ...any) {
	t.Helper()
	remotetest.Need(t, format, args...)
}

// engineDocker returns a client of this machine's Docker Engine.
func engineDocker(t testing.TB) *client.Client {
	t.Helper()
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		need(t, "a Docker Engine: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := docker.Ping(ctx); err != nil {
		docker.Close()
		need(t, "a Docker Engine: %v", err)
	}
	t.Cleanup(func() { docker.Close() })
	return docker
}

// engineBuilder connects to this machine's Engine's BuildKit.
func engineBuilder(t testing.TB) (*Builder, *client.Client) {
	t.Helper()
	docker := engineDocker(t)
	b, err := Engine(t.Context(), docker)
	if err != nil {
		t.Fatalf("Engine: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, docker
}

// apiBinary builds the demo api (static, for a FROM scratch image) once.
func apiBinary(t testing.TB) string {
	t.Helper()
	apiOnce.Do(func() {
		apiDir, apiErr = os.MkdirTemp("", "build-test-api-")
		if apiErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(apiDir, "api"), "./examples/demo/api")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			apiErr = fmt.Errorf("go build the demo api: %v: %s", err, out)
		}
	})
	if apiErr != nil {
		t.Fatal(apiErr)
	}
	return filepath.Join(apiDir, "api")
}

// buildContext makes a build context in a temporary directory: the api
// binary, a file of its own (stamp, random, so the first build of a test
// is never a cache hit) and the given files.
func buildContext(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	bin, err := os.ReadFile(apiBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "api"), string(bin), 0o755)
	write(t, filepath.Join(dir, "stamp"), randomHex(t, 16), 0o644)
	for name, content := range files {
		write(t, filepath.Join(dir, name), content, 0o644)
	}
	return dir
}

func write(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testTag is an image tag of the test's own, removed when the tests end.
func testTag(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	tag := fmt.Sprintf("deployer-build-test-%s:%s", name, randomHex(t, 4))
	tagsMu.Lock()
	tags = append(tags, tag)
	tagsMu.Unlock()
	return tag
}

// plain are options that show progress as plain lines in a buffer.
func plain(buf *bytes.Buffer) Options { return Options{Progress: buf, Mode: "plain"} }

// dirSize is the bytes in the files under dir.
func dirSize(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
