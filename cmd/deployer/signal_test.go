package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
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
    restart: unless-stopped
    deploy: {resources: {limits: {memory: 64m}}}
    logging: {driver: json-file, options: {max-size: 1m}}
x-deployer:
  checks:
    ignore: [{rule: logs-not-forwarded, reason: a test}]
`})
	t.Cleanup(func() {
		exec.Command("docker", "compose", "-p", name, "down", "-v", "-t", "1").Run()
		exec.Command("sh", "-c", `docker images -q --filter reference="$0-*" | xargs -r docker image rm -f`, name).Run()
	})
	args := []string{"deploy", "-f", "compose.yaml", "--local", "--root", root, "-p", name, "--health-timeout", "10m"}
	if r := runBinary(t, dir, []string{"RELEASE=v1"}, args...); r.code != exitOK {
		t.Fatalf("first deploy: exit %d", r.code)
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
