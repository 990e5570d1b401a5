package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/deployer"
	"github.com/semalink/deploy-action/deployer/compose/composetest"
)

func TestDeployCommandLine(t *testing.T) {
	demo := repoPath(t, "examples/demo/compose.yaml")
	root := t.TempDir()
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "no host", args: []string{"deploy", "-f", demo}, code: exitConfig, stderr: "no host"},
		{name: "unverifiable host key", args: []string{"deploy", "-f", demo, "--host", "deploy@203.0.113.7"}, code: exitConfig, stderr: "--known-hosts"},
		{name: "local and host", args: []string{"deploy", "-f", demo, "--local", "--host", "x"}, code: exitConfig, stderr: "exclude each other"},
		{name: "unknown migrate service", args: []string{"deploy", "-f", demo, "--local", "--migrate", "nope", "--root", root}, code: exitConfig, stderr: `migrate service "nope"`},
		{name: "dry run", args: []string{"deploy", "-f", demo, "--local", "--dry-run", "--root", root}, code: exitOK, stdout: "nothing changed"},
		{name: "releases of nothing", args: []string{"releases", "-f", demo, "--local", "--root", root}, code: exitOK, stdout: "no releases"},
		{name: "rollback of nothing", args: []string{"rollback", "-f", demo, "--local", "--root", root}, code: exitFailed, stderr: "no earlier release"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, "", tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stdout lacks %q or stderr lacks %q\nstdout:\n%s\nstderr:\n%s", tt.stdout, tt.stderr, stdout, stderr)
			}
		})
	}
}

func TestActionDeployInputs(t *testing.T) {
	t.Setenv("INPUT_COMMAND", "deploy")
	t.Setenv("INPUT_COMPOSE-FILES", repoPath(t, "examples/demo/compose.yaml"))
	t.Setenv("INPUT_HEALTH-TIMEOUT", "soon")
	code, stdout, stderr := run(t, "", "action")
	if code != exitConfig || !strings.Contains(stdout, "::error::input health-timeout") || stderr != "" {
		t.Fatalf("exit code %d, stdout %q, stderr %q; want one annotation and nothing raw", code, stdout, stderr)
	}
}

func TestActionDeployMasksTheKey(t *testing.T) {
	key := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
	t.Setenv("INPUT_COMMAND", "deploy")
	t.Setenv("INPUT_COMPOSE-FILES", repoPath(t, "examples/demo/compose.yaml"))
	t.Setenv("INPUT_HOSTS", "deploy@203.0.113.7")
	t.Setenv("INPUT_SSH-PRIVATE-KEY", key)
	t.Setenv("GITHUB_STEP_SUMMARY", filepath.Join(t.TempDir(), "summary"))
	tmp := t.TempDir() // where the key file is written for the run
	t.Setenv("TMPDIR", tmp)
	// No known-hosts: the deploy refuses before connecting, after masking.
	code, stdout, _ := run(t, "", "action")
	if code != exitConfig {
		t.Fatalf("exit code %d, want %d", code, exitConfig)
	}
	if !strings.Contains(stdout, "::add-mask::b3BlbnNzaC1rZXktdjEAAAAA") {
		t.Errorf("the key's lines were not masked:\n%s", stdout)
	}
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Errorf("the run left %v behind (%v), want its key file removed", left, err)
	}
}

// TestDeployFormatJSON: with --format json the results, and only they, are
// on stdout; the progress is on stderr. A dry run of the demo on this
// machine's Engine changes nothing.
func TestDeployFormatJSON(t *testing.T) {
	composetest.Need(t)
	root := t.TempDir()
	code, stdout, stderr := run(t, "", "deploy", "-f", repoPath(t, "examples/demo/compose.yaml"), "--local", "--dry-run", "--root", root, "--format", "json")
	if code != exitOK {
		t.Fatalf("exit code %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	var results []deployer.Result
	if err := json.Unmarshal([]byte(stdout), &results); err != nil {
		t.Fatalf("stdout is not the results: %v\n%s", err, stdout)
	}
	if len(results) != 1 || results[0].Host != "local" || !results[0].DryRun || len(results[0].Steps) == 0 || results[0].Error != "" {
		t.Errorf("results %+v, want one dry run on local with its steps", results)
	}
	if !strings.Contains(stderr, "dry run: would deploy") {
		t.Errorf("the progress is not on stderr:\n%s", stderr)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("the dry run wrote %v on the host", entries)
	}
	// A host that cannot be reached is in the results too.
	code, stdout, stderr = run(t, "", "deploy", "-f", repoPath(t, "examples/demo/compose.yaml"), "--host", "deploy@127.0.0.1:1",
		"--host-fingerprint", "SHA256:AAAA", "--format", "json")
	results = nil
	if err := json.Unmarshal([]byte(stdout), &results); err != nil || code != exitFailed {
		t.Fatalf("exit %d, stdout %q (%v), stderr %s", code, stdout, err, stderr)
	}
	if len(results) != 1 || results[0].Host != "127.0.0.1:1" || results[0].FailedStep != "connect to 127.0.0.1:1" || results[0].Error == "" {
		t.Errorf("results %+v, want the unreached host with its failed step", results)
	}
	if code, _, stderr := run(t, "", "deploy", "-f", repoPath(t, "examples/demo/compose.yaml"), "--local", "--format", "yaml"); code != exitConfig || !strings.Contains(stderr, "--format") {
		t.Errorf("--format yaml: exit %d, %s", code, stderr)
	}
}
