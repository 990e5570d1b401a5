// Package composetest gives tests a real Docker Engine and Compose v2 to
// work against: a FROM scratch image around the demo api
// (examples/demo/api), and throwaway compose projects that clean up after
// themselves. Outside CI a test skips when docker or compose v2 is missing;
// in CI it fails (remotetest.Need).
//
// It is for tests only.
package composetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semalink/deploy-action/deployer/compose"
	"github.com/semalink/deploy-action/deployer/remote"
	"github.com/semalink/deploy-action/deployer/remote/remotetest"
)

// Need skips the test (or fails it in CI) unless docker and compose v2
// both answer.
func Need(t testing.TB) {
	t.Helper()
	toolsOnce.Do(func() {
		if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
			toolsErr = fmt.Errorf("docker info: %v: %s", err, bytes.TrimSpace(out))
			return
		}
		if out, err := exec.Command("docker", "compose", "version", "--short").CombinedOutput(); err != nil {
			toolsErr = fmt.Errorf("docker compose version: %v: %s", err, bytes.TrimSpace(out))
		}
	})
	if toolsErr != nil {
		remotetest.Need(t, "needs docker and compose v2: %v", toolsErr)
	}
}

var (
	toolsOnce sync.Once
	toolsErr  error

	imageOnce sync.Once
	imageTag  string
	imageErr  error
)

// Dockerfile is the test image: the api binary and its own probe as the
// healthcheck, checked every half second so that tests are quick.
const Dockerfile = `FROM scratch
COPY api /api
HEALTHCHECK --interval=500ms --timeout=2s --retries=3 CMD ["/api", "probe", "http://127.0.0.1:3000/health"]
ENTRYPOINT ["/api"]
CMD ["serve"]
`

// Image returns the tag of the api test image, building it on first use.
// Main removes it when the tests are done.
func Image(t testing.TB) string {
	t.Helper()
	Need(t)
	imageOnce.Do(func() { imageTag, imageErr = buildImage() })
	if imageErr != nil {
		t.Fatalf("build the api test image: %v", imageErr)
	}
	return imageTag
}

func buildImage() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "..", "examples", "demo", "api")
	dir, err := os.MkdirTemp("", "composetest-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "api"), ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v: %s", src, err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(Dockerfile), 0o644); err != nil {
		return "", err
	}
	tag := "deployer-test/api:" + randomID()
	if out, err := exec.Command("docker", "build", "-q", "-t", tag, dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker build: %v: %s", err, out)
	}
	return tag, nil
}

// Main runs the tests, then removes the image Image built.
func Main(m *testing.M) {
	code := m.Run()
	if imageTag != "" {
		if out, err := exec.Command("docker", "image", "rm", "-f", imageTag).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "composetest: remove %s: %v: %s\n", imageTag, err, out)
		}
	}
	os.Exit(code)
}

// Project writes composeYAML into a temporary directory, with ${IMAGE}
// set to the api test image through an env file, and returns a CLI for it
// under a project name of its own. The project is taken down (volumes
// and orphans included) when the test ends.
func Project(t testing.TB, composeYAML string) compose.CLI {
	t.Helper()
	image := Image(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	env := filepath.Join(dir, "test.env")
	if err := os.WriteFile(file, []byte(composeYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env, []byte("IMAGE="+image+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := compose.CLI{
		Runner:  remote.Local{},
		Command: []string{"docker", "compose"},
		Project: ProjectName(t),
		Dir:     dir,
		Files:   []string{file},
		EnvFile: env,
	}
	t.Cleanup(func() { Down(t, c) })
	return c
}

// Down removes a project's containers, networks and volumes.
func Down(t testing.TB, c compose.CLI) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := c.Args("down", "-v", "--remove-orphans", "-t", "1")
	if err := c.Runner.Run(ctx, remote.Cmd{Args: args}); err != nil {
		t.Errorf("%s: %v", strings.Join(args, " "), err)
	}
}

// ProjectName is a compose project name unique to this test and run.
func ProjectName(t testing.TB) string {
	name := strings.ToLower(t.Name())
	name = regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(name, "-")
	if len(name) > 40 {
		name = name[:40]
	}
	return strings.Trim("dt-"+name, "-") + "-" + randomID()
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RemoveProject removes what a test deployed under project name: its containers
// (one-off ones too, which down leaves when a cancelled run left them
// running), volumes and network, and the images tagged name-*, by name
// (other tests' tags may share an image ID). It returns down's error.
func RemoveProject(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "compose", "-p", name, "down", "-v", "--remove-orphans", "-t", "1").CombinedOutput()
	if err != nil {
		err = fmt.Errorf("docker compose down: %w: %s", err, out)
	}
	_ = exec.CommandContext(ctx, "sh", "-c", `docker ps -aq --filter "label=com.docker.compose.project=$0" | xargs -r docker rm -f`, name).Run()
	imgs, _ := exec.CommandContext(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference="+name+"-*").Output()
	if refs := strings.Fields(string(imgs)); len(refs) > 0 {
		_ = exec.CommandContext(ctx, "docker", append([]string{"image", "rm"}, refs...)...).Run()
	}
	return err
}
