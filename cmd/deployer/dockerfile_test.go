package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/docker/docker/client"
	"github.com/semalink/deploy-action/deployer/build"
	"github.com/semalink/deploy-action/deployer/compose/composetest"
)

// TestDockerfile builds the top-level Dockerfile for real, then runs the
// image as a runner runs a container action (INPUT_*, GITHUB_OUTPUT,
// GITHUB_STEP_SUMMARY, the workspace mounted) for check on the demo stack.
//
// No registry is reachable in the tests: its base images (GO_IMAGE,
// BASE_IMAGE) are stand-ins made here under names of their own, never the
// real ones': a Go image from this machine's Go (its version in the tag)
// and a static busybox (for RUN's /bin/sh), a base of nothing but CA
// certificates; kept for the next run. The build downloads modules
// from the Go module proxy and compiles deployer cold, so scripts/test
// runs it on its own, after the other tests (DEPLOYER_TEST_DOCKERFILE=1).
func TestDockerfile(t *testing.T) {
	if os.Getenv("DEPLOYER_TEST_DOCKERFILE") == "" {
		t.Skip("run by scripts/test on its own, after the rest: set DEPLOYER_TEST_DOCKERFILE=1")
	}
	composetest.Need(t)
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skipf("no stand-in for %s", runtime.GOARCH)
	}
	goImage := "deployer-test/golang:" + strings.TrimPrefix(runtime.Version(), "go")
	standIn(t, goImage, map[string]string{
		"usr/local/go":                      runtime.GOROOT(),
		"bin/busybox":                       "/bin/busybox",
		"etc/ssl/certs/ca-certificates.crt": "/etc/ssl/certs/ca-certificates.crt",
	}, "ENV PATH=/go/bin:/usr/local/go/bin:/bin GOPATH=/go GOTOOLCHAIN=local\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n")
	baseImage := "deployer-test/static:1"
	standIn(t, baseImage, map[string]string{
		"etc/ssl/certs/ca-certificates.crt": "/etc/ssl/certs/ca-certificates.crt",
	}, "")

	image := "deployer-dockerfile-test:" + composetest.ProjectName(t)
	buildImage(t, repoPath(t, "."), image, map[string]string{"VERSION": "v0.0.0-test", "GO_IMAGE": goImage, "BASE_IMAGE": baseImage})
	t.Cleanup(func() { exec.Command("docker", "image", "rm", image).Run() })

	if out, err := exec.Command("docker", "run", "--rm", image, "--version").Output(); err != nil || strings.TrimSpace(string(out)) != "deployer v0.0.0-test" {
		t.Errorf("--version: %q (%v)", out, err)
	}

	// As the runner starts a container action: the workspace and the file
	// commands' directory mounted, the inputs as INPUT_*.
	commands := t.TempDir()
	writeFiles(t, commands, map[string]string{"output": "", "summary": ""})
	cmd := exec.Command("docker", "run", "--rm", "--workdir", "/github/workspace",
		"-v", repoPath(t, ".")+":/github/workspace:ro", "-v", commands+":/github/file_commands",
		"-e", "GITHUB_ACTIONS=true", "-e", "GITHUB_WORKSPACE=/github/workspace",
		"-e", "GITHUB_OUTPUT=/github/file_commands/output", "-e", "GITHUB_STEP_SUMMARY=/github/file_commands/summary",
		"-e", "INPUT_COMMAND=check", "-e", "INPUT_COMPOSE-FILES=examples/demo/compose.yaml",
		image, "action")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("check of the demo stack in the image: %v\n%s", err, out)
	}
	// The demo stack passes, with one info finding.
	outputs := readOutputs(t, filepath.Join(commands, "output"))
	summary, _ := os.ReadFile(filepath.Join(commands, "summary"))
	if outputs["errors"] != "0" || outputs["warnings"] != "0" || !strings.Contains(string(summary), "logs-not-forwarded") {
		t.Errorf("outputs %v, summary:\n%s\nlog:\n%s", outputs, summary, out)
	}
}

// standIn makes image from files (path in the image → path here) and
// extra Dockerfile lines, unless the Engine has an image of that name.
func standIn(t *testing.T, image string, files map[string]string, extra string) {
	t.Helper()
	if exec.Command("docker", "image", "inspect", image).Run() == nil {
		return
	}
	dir := t.TempDir()
	for in, from := range files {
		dst := filepath.Join(dir, "root", in)
		must(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		if out, err := exec.Command("cp", "-rL", from, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v\n%s", from, err, out)
		}
	}
	must(t, os.MkdirAll(filepath.Join(dir, "root", "tmp"), 0o1777))
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\nCOPY root/ /\n" + extra})
	buildImage(t, dir, image, nil)
}

// buildImage builds the Dockerfile in dir with the Engine's BuildKit,
// through the project's own client of it (the docker CLI here has no
// buildx).
func buildImage(t *testing.T, dir, tag string, args map[string]string) {
	t.Helper()
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	must(t, err)
	defer docker.Close()
	b, err := build.Engine(t.Context(), docker)
	must(t, err)
	defer b.Close()
	var progress strings.Builder
	if _, err := b.Build(t.Context(), build.Request{Service: filepath.Base(tag), Context: dir, Tag: tag, Args: args},
		build.Options{Progress: &progress, Mode: "plain"}); err != nil {
		t.Fatalf("build %s: %v\n%s", tag, err, progress.String())
	}
}
