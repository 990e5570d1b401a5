package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/deployer/compose/composetest"
	"github.com/semalink/deploy-action/deployer/remote/remotetest"
	"github.com/semalink/deploy-action/internal/ghdeploy/ghdeploytest"
)

// actionRun is one run of the Action as a runner starts it.
type actionRun struct {
	ran
	outputs map[string]string
	summary string
}

// readOutputs parses GITHUB_OUTPUT: name<<DELIMITER, value lines, DELIMITER.
func readOutputs(t *testing.T, file string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		name, delim, ok := strings.Cut(lines[i], "<<")
		if !ok {
			continue
		}
		var value []string
		for i++; i < len(lines) && lines[i] != delim; i++ {
			value = append(value, lines[i])
		}
		out[name] = strings.Join(value, "\n")
	}
	return out
}

// TestActionAgainstAHost runs the binary as a runner runs the Action,
// against the test sshd and this machine's Engine: deploy, redeploy, a
// deploy that fails its health check (rolled back), then a rollback by
// input. It reads the outputs and the summary back, and looks for the
// secrets everywhere.
func TestActionAgainstAHost(t *testing.T) {
	composetest.Need(t)
	ssh := remotetest.SSH(t)
	key, err := os.ReadFile(ssh.Key)
	must(t, err)
	knownHosts, err := os.ReadFile(ssh.KnownHosts)
	must(t, err)

	dir, name := stackDir(t)
	root := remotetest.TempDir(t, ssh.User)

	const secret, token = "s3cret-token-7f1d9e", "ghs_e2eToken4b1c"
	gh := ghdeploytest.New(t, token, "semalink/shop")
	action := func(t *testing.T, extra ...string) actionRun {
		t.Helper()
		tmp := t.TempDir()
		outputs, summary := filepath.Join(tmp, "output"), filepath.Join(tmp, "summary")
		writeFiles(t, tmp, map[string]string{"output": "", "summary": ""})
		env := append([]string{
			"GITHUB_ACTIONS=true", "GITHUB_WORKSPACE=" + dir, "GITHUB_OUTPUT=" + outputs, "GITHUB_STEP_SUMMARY=" + summary,
			"GITHUB_EVENT_NAME=workflow_dispatch", "GITHUB_ACTOR=octocat",
			"GITHUB_SERVER_URL=https://github.com", "GITHUB_REPOSITORY=semalink/shop", "GITHUB_RUN_ID=42",
			"GITHUB_SHA=3f2a9c1d0e5b7a8c9d0e1f2a3b4c5d6e7f8a9b0c", "GITHUB_API_URL=" + gh.URL,
			"INPUT_GITHUB-TOKEN=" + token, "INPUT_ENVIRONMENT=staging",
			"DEPLOYER_ROOT=" + root,
			"INPUT_COMMAND=deploy", "INPUT_COMPOSE-FILES=compose.yaml", "INPUT_PROJECT=" + name,
			"INPUT_HOSTS=" + ssh.User + "@" + ssh.Host + ":" + ssh.Port,
			"INPUT_SSH-PRIVATE-KEY=" + string(key), "INPUT_KNOWN-HOSTS=" + string(knownHosts),
			"INPUT_HEALTH-TIMEOUT=30s", "INPUT_URL=https://shop.example",
			"INPUT_ENV=RELEASE=v1\nAPI_TOKEN=" + secret + "\n",
		}, extra...)
		r := runBinary(t, dir, env, "action")
		a := actionRun{ran: r, outputs: readOutputs(t, outputs)}
		b, _ := os.ReadFile(summary)
		a.summary = string(b)
		// The secrets may only be in the mask commands.
		masked := regexp.MustCompile(`(?m)^::add-mask::.*$`).ReplaceAllString(r.output(), "")
		for _, s := range []string{secret, token, strings.Split(strings.TrimSpace(string(key)), "\n")[1]} {
			if strings.Contains(masked, s) || strings.Contains(a.summary, s) || strings.Contains(strings.Join(slices.Collect(maps.Values(a.outputs)), "\n"), s) {
				t.Errorf("a secret (%.8s…) reached the log, the outputs or the summary", s)
			}
		}
		return a
	}
	var images map[string]string

	first := action(t)
	if first.code != exitOK || first.outputs["status"] != "live" || first.outputs["release-id"] == "" || first.outputs["previous-release"] != "" ||
		first.outputs["url"] != "https://shop.example" || first.outputs["duration"] == "" {
		t.Fatalf("deploy: exit %d, outputs %v\n%s", first.code, first.outputs, first.output())
	}
	if !strings.Contains(first.stdout, "layers were on the host already") {
		t.Errorf("the deploy did not build on the runner and ship, the Action's default:\n%s", first.stdout)
	}
	if err := json.Unmarshal([]byte(first.outputs["images"]), &images); err != nil || !strings.HasPrefix(images["api"], "sha256:") {
		t.Errorf("images output %q (%v), want service → image ID", first.outputs["images"], err)
	}
	if !strings.Contains(first.summary, first.outputs["release-id"]+" is live") || !strings.Contains(first.summary, "| upload release |") ||
		!strings.Contains(first.summary, "| api | ") {
		t.Errorf("summary of the deploy:\n%s", first.summary)
	}

	again := action(t, "INPUT_COMMAND=redeploy")
	var againImages map[string]string
	_ = json.Unmarshal([]byte(again.outputs["images"]), &againImages)
	if again.code != exitOK || again.outputs["status"] != "live" || again.outputs["previous-release"] != first.outputs["release-id"] ||
		againImages["api"] != images["api"] || strings.Contains(again.output(), "==> build") {
		t.Fatalf("redeploy: exit %d, outputs %v\n%s", again.code, again.outputs, again.output())
	}

	// The release's name holds the secret, and the migration and the api
	// print it: the output must show it hidden.
	broken := action(t, "INPUT_ENV=RELEASE=v2-"+secret+"\nFAIL_HEALTH=1\nAPI_TOKEN="+secret+"\n")
	if !strings.Contains(broken.stdout, "migrate ***: applying migrations") {
		t.Errorf("the migration's line with the secret is not in the log, hidden:\n%s", broken.stdout)
	}
	if broken.code != exitFailed || broken.outputs["status"] != "rolled-back" || broken.outputs["previous-release"] != again.outputs["release-id"] {
		t.Fatalf("failing deploy: exit %d, outputs %v\n%s", broken.code, broken.outputs, broken.output())
	}
	if !strings.Contains(broken.summary, "rolled back") || !strings.Contains(broken.summary, "**Failed at start") ||
		!strings.Contains(broken.summary, "Its last log lines:") || !strings.Contains(broken.summary, "api *** listening") {
		t.Errorf("summary of the failed deploy:\n%s", broken.summary)
	}

	back := action(t, "INPUT_COMMAND=rollback", "INPUT_RELEASE="+first.outputs["release-id"])
	if back.code != exitOK || back.outputs["status"] != "live" || back.outputs["release-id"] != first.outputs["release-id"] ||
		back.outputs["previous-release"] != again.outputs["release-id"] {
		t.Fatalf("rollback: exit %d, outputs %v\n%s", back.code, back.outputs, back.output())
	}

	// The Deployments, as GitHub was told: each deploy created one, in
	// progress then done; the failed one failed and the one before came
	// back; the rollback by hand failed the one it left and restored the
	// first.
	var got []string
	for _, c := range gh.Calls() {
		got = append(got, fmt.Sprintf("%d %s", c.Deployment, c.State))
		if c.State == "success" && (c.Body["environment_url"] != "https://shop.example" || c.Body["log_url"] != "https://github.com/semalink/shop/actions/runs/42") {
			t.Errorf("success of %d without the environment's URL and the run's: %v", c.Deployment, c.Body)
		}
		if c.State == "created" && (c.Body["environment"] != "staging" || c.Body["ref"] != "3f2a9c1d0e5b7a8c9d0e1f2a3b4c5d6e7f8a9b0c") {
			t.Errorf("deployment %d: %v", c.Deployment, c.Body)
		}
	}
	want := "101 created,101 in_progress,101 success,102 created,102 in_progress,102 success," +
		"103 created,103 in_progress,103 failure,102 success,102 failure,101 success"
	if strings.Join(got, ",") != want {
		t.Errorf("GitHub was told:\n%s\nwant:\n%s", strings.Join(got, ","), want)
	}

	list := action(t, "INPUT_COMMAND=releases")
	var hosts []struct {
		Current  string
		Releases []struct {
			ID     string `json:"id"`
			Actor  string `json:"actor"`
			RunURL string `json:"run_url"`
		}
	}
	if err := json.Unmarshal([]byte(list.outputs["releases"]), &hosts); err != nil || len(hosts) != 1 || hosts[0].Current != first.outputs["release-id"] ||
		len(hosts[0].Releases) != 3 || hosts[0].Releases[0].Actor != "octocat" || hosts[0].Releases[0].RunURL != "https://github.com/semalink/shop/actions/runs/42" {
		t.Errorf("releases output %s (%v)", list.outputs["releases"], err)
	}

	// Without the permission, GitHub's refusal is a warning that names
	// it, and the deploy goes on.
	gh.Forbid = true
	refused := action(t, "INPUT_COMMAND=redeploy")
	if refused.code != exitOK || !strings.Contains(refused.stdout, "::warning::GitHub Deployment: create a deployment: GitHub answered 403") ||
		!strings.Contains(refused.stdout, "permissions: deployments: write") {
		t.Errorf("redeploy without the permission: exit %d\n%s", refused.code, refused.output())
	}
}

// stackDir is a copy of deployer/testdata/stack with the demo api built
// into its build context, and a project name of its own, removed from the
// Engine when the test ends.
func stackDir(t *testing.T) (dir, name string) {
	t.Helper()
	dir = t.TempDir()
	compose, err := os.ReadFile(repoPath(t, "deployer/testdata/stack/compose.yaml"))
	must(t, err)
	writeFiles(t, dir, map[string]string{
		"compose.yaml":   string(compose),
		"api/Dockerfile": "FROM scratch\nCOPY api /api\nENTRYPOINT [\"/api\"]\nCMD [\"serve\"]\n",
	})
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "api", "api"), "./examples/demo/api")
	build.Dir, build.Env = repoPath(t, "."), append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	name = composetest.ProjectName(t)
	t.Cleanup(func() { _ = composetest.RemoveProject(name) })
	return dir, name
}

// TestActionLocal: with local: true the Action deploys to the runner's own
// Engine with its docker compose, as a self-hosted runner on the droplet
// would.
func TestActionLocal(t *testing.T) {
	composetest.Need(t)
	dir, name := stackDir(t)
	root := t.TempDir()
	tmp := t.TempDir()
	outputs := filepath.Join(tmp, "output")
	writeFiles(t, tmp, map[string]string{"output": "", "summary": ""})
	r := runBinary(t, dir, []string{
		"GITHUB_ACTIONS=true", "GITHUB_WORKSPACE=" + dir, "GITHUB_OUTPUT=" + outputs, "GITHUB_STEP_SUMMARY=" + filepath.Join(tmp, "summary"),
		"DEPLOYER_ROOT=" + root, "INPUT_COMMAND=deploy", "INPUT_LOCAL=true", "INPUT_PROJECT=" + name,
		"INPUT_COMPOSE-FILES=compose.yaml", "INPUT_ENV=RELEASE=v1\n", "INPUT_HEALTH-TIMEOUT=30s",
	}, "action")
	out := readOutputs(t, outputs)
	if r.code != exitOK || out["status"] != "live" || !fileExists(filepath.Join(root, name, "current")) {
		t.Errorf("local deploy: exit %d, outputs %v\n%s", r.code, out, r.output())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
