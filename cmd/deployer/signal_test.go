package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/semalink/deploy-action/deployer/compose/composetest"
)

// TestSecondSignalEndsTheRollback: the first Ctrl-C stops a deploy, which
// rolls back; a second one ends the process at once, for someone who will
// not wait for that rollback.
func TestSecondSignalEndsTheRollback(t *testing.T) {
	image := composetest.Image(t)
	name := composetest.ProjectName(t)
	dir, root := t.TempDir(), t.TempDir()
	writeFiles(t, dir, map[string]string{"compose.yaml": `services:
  api:
    image: ` + image + `
    environment:
      RELEASE: ${RELEASE}
      FAIL_HEALTH: ${FAIL_HEALTH:-0}
      HEALTH_HOLD: /state/hold
    volumes: ["state:/state"]
    # A container that fails its checks stays "starting", and so waited
    # for, rather than turning unhealthy at once.
    healthcheck:
      test: ["CMD", "/api", "probe", "http://127.0.0.1:3000/health"]
      interval: 500ms
      retries: 3
      start_period: 1h
    restart: unless-stopped
    deploy: {resources: {limits: {memory: 64m}}}
    logging: {driver: json-file, options: {max-size: 1m}}
volumes:
  state:
x-deployer:
  checks:
    ignore: [{rule: logs-not-forwarded, reason: a test}]
`})
	downProject(t, name)
	args := []string{"deploy", "-f", "compose.yaml", "--local", "--root", root, "-p", name, "--health-timeout", "10m"}
	if r := runBinary(t, dir, []string{"RELEASE=v1"}, args...); r.code != exitOK {
		t.Fatalf("first deploy: exit %d", r.code)
	}

	// From now on the api is held unhealthy (a file on its volume): a
	// new container of v1, which the rollback starts once v2 has replaced
	// it, stays "starting" as long as the file is there, and the second
	// signal comes while the rollback surely waits for it.
	hold := filepath.Join(t.TempDir(), "hold")
	writeFiles(t, filepath.Dir(hold), map[string]string{"hold": ""})
	if out, err := exec.Command("docker", "cp", hold, apiContainer(t, name)+":/state/hold").CombinedOutput(); err != nil {
		t.Fatalf("docker cp: %v: %s", err, out)
	}

	// v2 never turns healthy: interrupt it once its container runs, then
	// interrupt the rollback that the first signal started.
	cmd := exec.CommandContext(t.Context(), deployerBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "RELEASE=v2", "FAIL_HEALTH=1"}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	lines := bufio.NewScanner(io.TeeReader(stdout, &out))
	signals := 0
	for lines.Scan() {
		line := lines.Text()
		switch {
		case signals == 0 && strings.HasPrefix(line, "==> start "):
			signals++
			go func() {
				deadline := time.Now().Add(2 * time.Minute) // a net, should v2 never start
				for time.Now().Before(deadline) && !runsRelease(name, "v2") {
					time.Sleep(20 * time.Millisecond)
				}
				cmd.Process.Signal(os.Interrupt)
			}()
		case signals == 1 && strings.HasPrefix(line, "==> roll back to "):
			cmd.Process.Signal(os.Interrupt)
			signals++
			// A net: should the signal not end it, end it, and fail below.
			time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
		}
	}
	err = cmd.Wait()
	t.Logf("second deploy:\n%s", out.String())
	if signals != 2 {
		t.Fatalf("sent %d signals, want 2: the deploy never reached its start and rollback", signals)
	}
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if (!ws.Signaled() || ws.Signal() != syscall.SIGINT) && ws.ExitStatus() != 128+int(syscall.SIGINT) {
		t.Errorf("deployer ended with %v, want it killed by the second SIGINT", err)
	}
}

// apiContainer is the ID of the project's running api container.
func apiContainer(t *testing.T, project string) string {
	t.Helper()
	id, err := exec.Command("docker", "ps", "-q", "--filter", "label=com.docker.compose.project="+project,
		"--filter", "label=com.docker.compose.service=api").Output()
	if err != nil || len(strings.Fields(string(id))) != 1 {
		t.Fatalf("find the api container: %v (%q)", err, id)
	}
	return strings.TrimSpace(string(id))
}

// runsRelease tells whether the project's api container is of release
// (its RELEASE variable).
func runsRelease(project, release string) bool {
	out, err := exec.Command("sh", "-c", `docker ps -q --filter "label=com.docker.compose.project=$0" --filter label=com.docker.compose.service=api |
		xargs -r docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}'`, project).Output()
	return err == nil && strings.Contains(string(out), "RELEASE="+release+"\n")
}
