package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// TestReleaseInstall builds a release as the release workflow does (twice:
// the build is reproducible, so the checksums a release commit carries
// hold for the archives built again), serves it as GitHub's release
// downloads would, and installs it with action/install as the Action's
// first step does. An archive that is not the one released is refused.
func TestReleaseInstall(t *testing.T) {
	const version = "v9.9.9"
	platform := runtime.GOOS + "/" + runtime.GOARCH
	build := func(out string) []byte {
		t.Helper()
		cmd := exec.Command(repoPath(t, "scripts/release-build"), version, out, platform)
		cmd.Dir = repoPath(t, ".")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("release-build: %v\n%s", err, b)
		}
		sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
		must(t, err)
		return sums
	}
	dist, again := t.TempDir(), t.TempDir()
	sums := build(dist)
	if string(build(again)) != string(sums) {
		t.Fatalf("two builds of %s differ:\n%s", version, sums)
	}
	name := "deployer_" + version + "_" + strings.ReplaceAll(platform, "/", "_") + ".tar.gz"
	if !strings.Contains(string(sums), "  "+name+"\n") {
		t.Fatalf("SHA256SUMS lacks %s:\n%s", name, sums)
	}

	served := dist
	srv := httptest.NewServer(http.StripPrefix("/"+version+"/", http.FileServer(http.Dir(served))))
	defer srv.Close()

	// The Action as a release commit holds it.
	action := filepath.Join(t.TempDir(), "action")
	script, err := os.ReadFile(repoPath(t, "action/install"))
	must(t, err)
	writeFiles(t, action, map[string]string{"install": string(script), "version": version + "\n", "SHA256SUMS": string(sums)})
	must(t, os.Chmod(filepath.Join(action, "install"), 0o755))

	install := func(t *testing.T) (string, string, error) {
		tmp := t.TempDir()
		outputs := filepath.Join(tmp, "output")
		cmd := exec.Command(filepath.Join(action, "install"))
		cmd.Env = append(os.Environ(), "RUNNER_TEMP="+tmp, "GITHUB_OUTPUT="+outputs, "DEPLOYER_DOWNLOAD_URL="+srv.URL)
		out, err := cmd.CombinedOutput()
		b, _ := os.ReadFile(outputs)
		bin, _ := strings.CutPrefix(strings.TrimSpace(string(b)), "bin=")
		return bin, string(out), err
	}
	bin, out, err := install(t)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	v, err := exec.Command(bin, "--version").Output()
	if err != nil || strings.TrimSpace(string(v)) != "deployer "+version {
		t.Errorf("%s --version: %q (%v), want deployer %s", bin, v, err, version)
	}

	// Another archive under the released name: refused, nothing installed.
	tampered := filepath.Join(t.TempDir(), name)
	must(t, os.Rename(filepath.Join(again, name), tampered))
	must(t, os.WriteFile(filepath.Join(dist, name), append(must2(os.ReadFile(tampered)), 0), 0o644))
	bin, out, err = install(t)
	if err == nil || !strings.Contains(out, "::error::deployer: "+name+" has SHA-256") || !strings.Contains(out, "refusing it") || bin != "" {
		t.Errorf("install of a tampered archive: %v, bin %q\n%s", err, bin, out)
	}
}

func must2[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The release workflow parses, and builds with the script tested above.
func TestReleaseWorkflow(t *testing.T) {
	b, err := os.ReadFile(repoPath(t, ".github/workflows/release.yml"))
	must(t, err)
	var wf struct {
		On   map[string]any `yaml:"on"`
		Jobs map[string]struct {
			Steps []struct{ Run string }
		}
	}
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatalf("release.yml: %v", err)
	}
	var runs []string
	for _, j := range wf.Jobs {
		for _, s := range j.Steps {
			runs = append(runs, s.Run)
		}
	}
	all := strings.Join(runs, "\n")
	for _, want := range []string{"scripts/release-build", "action/SHA256SUMS", "action/version", "gh release create"} {
		if !strings.Contains(all, want) {
			t.Errorf("release.yml does not run %q", want)
		}
	}
	if _, ok := wf.On["workflow_dispatch"]; !ok {
		t.Errorf("release.yml is not started by hand (workflow_dispatch)")
	}
}

// No run: script of the Action, the release workflow or the examples has
// an expression in it: ${{ }} is substituted into the script's text before
// the shell reads it (script injection); values go through env:.
func TestNoExpressionsInScripts(t *testing.T) {
	files := []string{repoPath(t, "action.yml")}
	for _, glob := range []string{".github/workflows/*.y*ml", "examples/workflows/*.y*ml"} {
		more, _ := filepath.Glob(repoPath(t, glob))
		files = append(files, more...)
	}
	var examples []string
	runs := 0
	for _, f := range append(files, examples...) {
		b, err := os.ReadFile(f)
		must(t, err)
		var doc struct {
			Runs struct{ Steps []struct{ Run string } }
			Jobs map[string]struct{ Steps []struct{ Run string } }
		}
		must(t, yaml.Unmarshal(b, &doc))
		steps := doc.Runs.Steps
		for _, j := range doc.Jobs {
			steps = append(steps, j.Steps...)
		}
		for _, s := range steps {
			if s.Run != "" {
				runs++
			}
			if strings.Contains(s.Run, "${{") {
				t.Errorf("%s: a run: script holds an expression:\n%s", filepath.Base(f), s.Run)
			}
		}
	}
	if runs < 5 {
		t.Errorf("only %d run: scripts found to look at", runs)
	}
}
