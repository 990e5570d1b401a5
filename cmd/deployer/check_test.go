package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the deployer command line in dir and returns its exit code,
// standard output and standard error.
func run(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	if dir != "" {
		t.Chdir(dir)
	}
	t.Setenv("GITHUB_ACTIONS", "")
	var stdout, stderr bytes.Buffer
	cmd := newRootCommand()
	cmd.SetArgs(args)
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	code := exitCode(&stderr, cmd.ExecuteContext(t.Context()))
	return code, stdout.String(), stderr.String()
}

func repoPath(t *testing.T, rel string) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func TestCheckExitCodes(t *testing.T) {
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "compose.yaml"), []byte("services:\n  api:\n    image: [unclosed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		dir      string
		args     []string
		code     int
		stdout   string // substring expected on stdout
		stderr   string // substring expected on stderr
		noStdout string
	}{
		{name: "seed before fails", dir: "testdata/seed/before", args: []string{"check", "-f", "docker-compose.staging.yml"},
			code: exitFindings, stdout: "healthcheck-missing"},
		{name: "seed after passes strict", dir: "testdata/seed/after", args: []string{"check", "-f", "docker-compose.staging.yml", "--strict"},
			code: exitOK},
		{name: "demo passes strict", dir: "examples/demo", args: []string{"check", "--strict"}, code: exitOK},
		{name: "flags override x-deployer", dir: "testdata/seed/after", args: []string{"check", "-f", "docker-compose.staging.yml", "--environment", "production", "--strict"},
			code: exitFindings, stdout: "redis-eviction"},
		{name: "cloudflare strict makes tls internal an error", dir: "testdata/seed/before", args: []string{"check", "-f", "docker-compose.staging.yml", "--format", "json", "--cloudflare-ssl", "strict"},
			code: exitFindings, stdout: `"rule": "caddy-tls-internal",
      "severity": "error"`},
		{name: "broken yaml", dir: broken, args: []string{"check"}, code: exitConfig, stderr: "compose.yaml:3"},
		{name: "missing file", dir: broken, args: []string{"check", "-f", "nope.yaml"}, code: exitConfig, stderr: "nope.yaml"},
		{name: "unknown format", dir: "testdata/seed/after", args: []string{"check", "-f", "docker-compose.staging.yml", "--format", "xml"}, code: exitConfig, stderr: "text, json, sarif, github"},
		{name: "bad host memory", dir: "testdata/seed/after", args: []string{"check", "-f", "docker-compose.staging.yml", "--host-memory", "lots"}, code: exitConfig, stderr: "--host-memory"},
		{name: "bad environment", dir: "testdata/seed/after", args: []string{"check", "-f", "docker-compose.staging.yml", "--environment", "prod"}, code: exitConfig, stderr: "staging, production"},
		{name: "unknown flag", dir: "testdata/seed/after", args: []string{"check", "--nope"}, code: exitConfig, stderr: "--nope"},
		{name: "list rules", dir: "", args: []string{"check", "--list-rules"}, code: exitOK, stdout: "migration-restart-loop"},
		{name: "secrets never printed", dir: "testdata/seed/before", args: []string{"check", "-f", "docker-compose.staging.yml", "--format", "json", "--environment", "production"},
			code: exitFindings, stdout: "neon-pooler", noStdout: "not-a-real-password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir
			if dir != "" && !filepath.IsAbs(dir) {
				dir = repoPath(t, dir)
			}
			code, stdout, stderr := run(t, dir, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, stdout)
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, stderr)
			}
			if tt.noStdout != "" && strings.Contains(stdout+stderr, tt.noStdout) {
				t.Errorf("output contains %q", tt.noStdout)
			}
		})
	}
}

func TestCheckLoadErrorNamesTheFix(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  api:\n    image: x:1\n    healthcheck:\n      tset: [\"CMD\", \"true\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, dir, "check")
	if code != exitConfig {
		t.Fatalf("exit code %d, want %d; stderr: %s", code, exitConfig, stderr)
	}
	for _, want := range []string{"compose.yaml:5", "tset", "fix:"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestCheckJSONIsValid(t *testing.T) {
	code, stdout, _ := run(t, repoPath(t, "testdata/seed/before"), "check", "-f", "docker-compose.staging.yml", "--format", "json")
	if code != exitFindings {
		t.Fatalf("exit code %d", code)
	}
	var doc struct {
		Findings []struct {
			Rule     string `json:"rule"`
			Location struct {
				File string `json:"file"`
				Line int    `json:"line"`
			} `json:"location"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if len(doc.Findings) == 0 {
		t.Fatal("no findings")
	}
	for _, f := range doc.Findings {
		if f.Location.File == "" || filepath.IsAbs(f.Location.File) {
			t.Errorf("%s: location %q should be relative to the working directory", f.Rule, f.Location.File)
		}
	}
}
