package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
	"github.com/sethvargo/go-githubactions"
)

func TestActionCheck(t *testing.T) {
	root := repoPath(t, ".")
	tmp := t.TempDir()
	outputs, summaryFile := filepath.Join(tmp, "output"), filepath.Join(tmp, "summary")
	for _, f := range []string{outputs, summaryFile} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("GITHUB_OUTPUT", outputs)
	t.Setenv("GITHUB_STEP_SUMMARY", summaryFile)
	t.Setenv("INPUT_COMMAND", "check")
	t.Setenv("INPUT_WORKING-DIRECTORY", "testdata/seed/before")
	t.Setenv("INPUT_COMPOSE-FILES", "docker-compose.staging.yml")
	t.Setenv("INPUT_ENVIRONMENT", "production")
	t.Setenv("INPUT_SARIF-FILE", filepath.Join(tmp, "deployer.sarif"))

	code, stdout, stderr := run(t, root, "action")
	if code != exitFindings {
		t.Fatalf("exit code %d, want %d\n%s\n%s", code, exitFindings, stdout, stderr)
	}
	// Annotations point at files relative to the workspace, not to working-directory.
	if !strings.Contains(stdout, "::error file=testdata/seed/before/docker-compose.staging.yml,line=17,") {
		t.Errorf("no error annotation on the api service:\n%s", stdout)
	}
	// Masked before anything else is printed; shown nowhere else.
	if !strings.HasPrefix(stdout, "::add-mask::") || !strings.Contains(stdout, "::add-mask::not-a-real-password\n") {
		t.Error("the env file's secret was not masked first")
	}
	if strings.Contains(ran{stdout: stdout}.output(), "not-a-real-password") {
		t.Error("a secret from the env file reached the log")
	}
	out, _ := os.ReadFile(outputs)
	for _, want := range []string{"errors<<", "warnings<<", "sarif-file<<"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("GITHUB_OUTPUT lacks %s:\n%s", want, out)
		}
	}
	sum, _ := os.ReadFile(summaryFile)
	if !strings.Contains(string(sum), "migration-restart-loop") {
		t.Errorf("job summary lacks the findings:\n%s", sum)
	}
	if sarif, err := os.ReadFile(filepath.Join(tmp, "deployer.sarif")); err != nil || !strings.Contains(string(sarif), `"version": "2.1.0"`) {
		t.Errorf("SARIF file: %v\n%.200s", err, sarif)
	}
}

func TestActionUnknownCommand(t *testing.T) {
	t.Setenv("INPUT_COMMAND", "launch")
	code, stdout, stderr := run(t, "", "action")
	if code != exitConfig || !strings.Contains(stdout, "::error::input command: \"launch\"") || stderr != "" {
		t.Fatalf("exit code %d, stdout %q, stderr %q; want one annotation and nothing raw", code, stdout, stderr)
	}
}

func TestCommandSafe(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain line\n", "plain line\n"},
		{"::error::x\n", "| ::error::x\n"},
		{"  \t::set-output name=a::b\n", "| " + "  \t::set-output name=a::b\n"},
		{"\u00a0::add-mask::x\n", "| \u00a0::add-mask::x\n"},
		{"progress\r::add-mask::x\n", "progress\n| ::add-mask::x\n"},
		{"progress ##[set-output name=x;]y\n", "progress ## [set-output name=x;]y\n"},
	} {
		if got := commandSafe(tc.in); got != tc.want {
			t.Errorf("commandSafe(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A finding of the deploy's checks is an annotation on its file and line.
func TestActionReporterFinding(t *testing.T) {
	var b strings.Builder
	r := &actionReporter{gha: githubactions.New(githubactions.WithWriter(&b)), w: &b}
	f := checks.Finding{Rule: "limits-missing", Service: "api", Pos: project.Position{File: "deploy/compose.yaml", Line: 12, Column: 5},
		Message: "api has no memory limit", Fix: "set deploy.resources.limits.memory"}
	r.Finding(f, false)
	r.Finding(f, true)
	want := "::warning file=deploy/compose.yaml,line=12,col=5,title=limits-missing (api)::api has no memory limit%0Afix: set deploy.resources.limits.memory\n" +
		"::error file=deploy/compose.yaml,line=12,col=5,title=limits-missing (api)::api has no memory limit%0Afix: set deploy.resources.limits.memory\n"
	if b.String() != want {
		t.Errorf("annotations:\n%s\nwant:\n%s", b.String(), want)
	}
}
