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

	// From now on v1 is held unhealthy (a file on its volume), so a
	// rollback to it waits for as long as the file is there: the second
	// signal comes while it surely runs.
	hold := filepath.Join(t.TempDir(), "hold")
	writeFiles(t, filepath.Dir(hold), map[string]string{"hold": ""})
	id, err := exec.Command("docker", "ps", "-q", "--filter", "label=com.docker.compose.project="+name, "--filter", "label=com.docker.compose.service=api").Output()
	if err != nil || len(strings.Fields(string(id))) != 1 {
		t.Fatalf("find v1's container: %v (%q)", err, id)
	}
	if out, err := exec.Command("docker", "cp", hold, strings.TrimSpace(string(id))+":/state/hold").CombinedOutput(); err != nil {
		t.Fatalf("docker cp: %v: %s", err, out)
	}

	// v2 never turns healthy: interrupt it while it waits, then interrupt
	// the rollback that the first signal started.
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
			cmd.Process.Signal(os.Interrupt)
			signals++
		case signals == 1 && strings.HasPrefix(line, "==> roll back to "):
			cmd.Process.Signal(os.Interrupt)
			signals++
		}
	}
	err = cmd.Wait()
	t.Logf("second deploy:\n%s", out.String())
	if signals != 2 {
		t.Fatalf("sent %d signals, want 2: the deploy never reached its start and rollback", signals)
	}
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Errorf("deployer ended with %v, want it killed by the second SIGINT", err)
	}
}
