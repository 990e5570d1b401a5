package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/semalink/deploy-action/deployer"
	"github.com/semalink/deploy-action/deployer/compose/composetest"
	"github.com/semalink/deploy-action/internal/ghdeploy/ghdeploytest"
)

func TestMain(m *testing.M) { composetest.Main(m) }

// repo is the path of a file of this repository.
func repo(rel string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", rel)
}

// gitRepo is the app's repository as GitHub would hold it: a bare
// repository with the demo stack, two commits on main.
type gitRepo struct {
	bare, work string
	commits    []string // oldest first
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=dev", "GIT_AUTHOR_EMAIL=dev@example.com", "GIT_COMMITTER_NAME=dev", "GIT_COMMITTER_EMAIL=dev@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func newGitRepo(t *testing.T) *gitRepo {
	t.Helper()
	dir := t.TempDir()
	r := &gitRepo{bare: filepath.Join(dir, "app.git"), work: filepath.Join(dir, "work")}
	must(t, os.MkdirAll(filepath.Join(r.work, "api"), 0o755))
	compose, err := os.ReadFile(repo("deployer/testdata/stack/compose.yaml"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(r.work, "compose.yaml"), compose, 0o644))
	must(t, os.WriteFile(filepath.Join(r.work, "api", "Dockerfile"), []byte("FROM scratch\nCOPY api /api\nENTRYPOINT [\"/api\"]\nCMD [\"serve\"]\n"), 0o644))
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(r.work, "api", "api"), "./examples/demo/api")
	build.Dir, build.Env = repo("."), append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	git(t, dir, "init", "-q", "-b", "main", r.work)
	git(t, r.work, "add", ".")
	git(t, r.work, "commit", "-q", "-m", "the demo stack")
	r.commits = append(r.commits, git(t, r.work, "rev-parse", "HEAD"))
	must(t, os.WriteFile(filepath.Join(r.work, "api", "NOTES"), []byte("a change that rebuilds the api\n"), 0o644))
	git(t, r.work, "add", ".")
	git(t, r.work, "commit", "-q", "-m", "a second commit")
	r.commits = append(r.commits, git(t, r.work, "rev-parse", "HEAD"))
	// A branch that was never merged, as a pull request's would be.
	git(t, r.work, "checkout", "-q", "-b", "feature")
	must(t, os.WriteFile(filepath.Join(r.work, "api", "NOTES"), []byte("not reviewed\n"), 0o644))
	git(t, r.work, "commit", "-q", "-am", "unreviewed")
	git(t, r.work, "checkout", "-q", "main")
	git(t, dir, "clone", "-q", "--bare", r.work, r.bare)
	return r
}

// e2e is a server on this machine's Engine, deploying the demo stack
// from a git repository, with GitHub's API stood in for.
type e2e struct {
	*fixture
	name  string
	root  string
	git   *gitRepo
	gh    *ghdeploytest.Server
	gated chan struct{} // when not nil, the next run waits for it
}

func newE2E(t *testing.T) *e2e {
	t.Helper()
	composetest.Need(t)
	e := &e2e{fixture: &fixture{t: t, runs: &fakeRuns{}}, name: composetest.ProjectName(t), git: newGitRepo(t)}
	t.Cleanup(func() { _ = composetest.RemoveProject(e.name) })
	dir := t.TempDir()
	e.root = filepath.Join(dir, "root")
	src := filepath.Join(dir, "src")
	git(t, dir, "clone", "-q", e.git.bare, src)
	must(t, os.WriteFile(filepath.Join(dir, "app.env"), []byte("RELEASE=v1\n"), 0o600))
	e.gh = ghdeploytest.New(t, "a-github-token", "semalink/app")
	t.Setenv("GITHUB_TOKEN", "a-github-token")
	t.Setenv("GITHUB_WEBHOOK_SECRET", testGitHubSecret)
	t.Setenv("DEPLOY_HOOK_SECRET", standardSecret)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:9000
state: %[1]s/state
root: %[2]s
projects:
  %[3]s:
    compose-files: [compose.yaml]
    env-files: [%[1]s/app.env]
    source: {git: %[4]s, dir: %[5]s, branch: main}
hooks:
  github: {secrets: [env:GITHUB_WEBHOOK_SECRET], repositories: [semalink/app], project: %[3]s, api-url: %[6]s}
  standard: {secrets: [env:DEPLOY_HOOK_SECRET], projects: [%[3]s], actions: [deploy, redeploy, rollback]}
`, dir, e.root, e.name, e.git.bare, src, e.gh.URL)
	e.path = filepath.Join(dir, "server.yaml")
	must(t, os.WriteFile(e.path, []byte(cfg), 0o600))
	c, err := LoadConfig(t.Context(), e.path)
	must(t, err)
	p := newPipeline(c)
	run := func(ctx context.Context, d Deploy, log io.Writer) (Outcome, error) {
		if g := e.gated; g != nil {
			e.gated = nil
			<-g
		}
		return p.Run(ctx, d, log)
	}
	s, err := New(c, Options{Run: run, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must(t, err)
	hs := httptest.NewServer(s.Handler())
	e.cfg, e.s, e.url = c, s, hs.URL
	t.Cleanup(func() { hs.Close(); s.Close(context.Background()) })
	return e
}

// wait waits for deploy id to end and returns its record.
func (e *e2e) wait(id string) Deploy {
	e.t.Helper()
	var d Deploy
	waitFor(e.t, func() bool { d, _ = e.s.queue.Get(id); return d.done() })
	return d
}

// live is the live release on the host.
func (e *e2e) live() deployer.Release {
	e.t.Helper()
	plan, err := deployer.NewHostPlan(e.t.Context(), deployer.Options{Name: e.name, Local: true, Root: e.root})
	must(e.t, err)
	hosts, err := deployer.Releases(e.t.Context(), plan, &deployer.TextReporter{W: io.Discard})
	must(e.t, err)
	for _, r := range hosts[0].Releases {
		if r.ID == hosts[0].Current {
			return r
		}
	}
	e.t.Fatalf("nothing is live: %+v", hosts)
	return deployer.Release{}
}

func (e *e2e) log(id string) string {
	return e.get("/deploys/" + id + "/log").raw
}

func (e *e2e) standard(body string) answer {
	e.t.Helper()
	a := e.post("/hooks/standard", standardHeaders(e.t, standardSecret, body, time.Now()), body)
	if a.code != 202 {
		e.t.Fatalf("%s: %d %s", body, a.code, a.raw)
	}
	return a
}

// TestServeDeploysFromGit: GitHub's events and signed standard requests
// deploy the demo stack on this machine's Engine, from a bare git
// repository, with statuses on the GitHub Deployment; an older commit is
// refused, and requests that come in during a deploy leave one run.
func TestServeDeploysFromGit(t *testing.T) {
	e := newE2E(t)
	first, second := e.git.commits[0], e.git.commits[1]

	// A push to main deploys its commit.
	push := fmt.Sprintf(pushBody, "main", first, "semalink/app")
	a := e.post("/hooks/github", githubHeaders("push", push), push)
	if a.code != 202 {
		t.Fatalf("push: %d %s", a.code, a.raw)
	}
	d := e.wait(a.body["id"].(string))
	if d.Status != Succeeded || d.Commit != first || e.live().Commit != first || e.live().Trigger != "webhook" || e.live().Actor != "octocat" {
		t.Fatalf("push: %+v, live %+v\n%s", d, e.live(), e.log(d.ID))
	}

	// A deployment of the second commit deploys it and reports to it.
	id := e.gh.Create(second, "production")
	deployment := fmt.Sprintf(`{"deployment":{"id":%d,"sha":"%s","ref":"main","environment":"production","created_at":"%s"},"repository":{"full_name":"semalink/app"},"sender":{"login":"octocat"}}`,
		id, second, time.Now().UTC().Format(time.RFC3339))
	a = e.post("/hooks/github", githubHeaders("deployment", deployment), deployment)
	if a.code != 202 {
		t.Fatalf("deployment: %d %s", a.code, a.raw)
	}
	d = e.wait(a.body["id"].(string))
	if d.Status != Succeeded || e.live().Commit != second || e.live().Deployment != id {
		t.Fatalf("deployment: %+v, live %+v\n%s", d, e.live(), e.log(d.ID))
	}
	var states []string
	waitFor(t, func() bool {
		states = nil
		for _, c := range e.gh.Calls() {
			if c.Deployment == id {
				states = append(states, c.State)
			}
		}
		return len(states) >= 3
	})
	if !slices.Equal(states, []string{"created", "in_progress", "success"}) {
		t.Errorf("statuses on the Deployment: %v", states)
	}

	// A push of the older commit is refused: it is in the live one.
	live := e.live().ID
	a = e.post("/hooks/github", githubHeaders("push", push), push)
	if a.code != 409 {
		t.Errorf("the same push again: %d %s", a.code, a.raw)
	}
	wr := `{"action":"completed","workflow_run":{"head_sha":"` + first + `","head_branch":"main","conclusion":"success","event":"push","head_repository":{"full_name":"semalink/app"}},"repository":{"full_name":"semalink/app"},"sender":{"login":"octocat"}}`
	a = e.post("/hooks/github", githubHeaders("workflow_run", wr), wr)
	if a.code != 202 {
		t.Fatalf("workflow_run: %d %s", a.code, a.raw)
	}
	d = e.wait(a.body["id"].(string))
	if d.Status != Refused || !strings.Contains(d.Error, "never goes back") || e.live().ID != live {
		t.Errorf("an older commit: %+v; live %s, was %s", d, e.live().ID, live)
	}

	// A signed standard request redeploys; one rolls back.
	d = e.wait(e.standard(`{"action":"redeploy","project":"` + e.name + `"}`).body["id"].(string))
	if d.Status != Succeeded || e.live().ID == live || e.live().Commit != second || !strings.Contains(e.log(d.ID), "migrat") {
		t.Errorf("redeploy: %+v, live %+v\n%s", d, e.live(), e.log(d.ID))
	}
	redeployed := e.live().ID
	d = e.wait(e.standard(`{"action":"rollback","project":"` + e.name + `"}`).body["id"].(string))
	if d.Status != Succeeded || e.live().ID != live {
		t.Errorf("rollback: %+v, live %s, want %s\n%s", d, e.live().ID, live, e.log(d.ID))
	}

	// A command names only what is on the source branch.
	d = e.wait(e.standard(`{"action":"deploy","project":"` + e.name + `","ref":"feature"}`).body["id"].(string))
	if d.Status != Refused || !strings.Contains(d.Error, "is not on main") || e.live().ID != live {
		t.Errorf("a branch that was never merged: %+v", d)
	}

	// Three requests while a deploy runs: the newest runs, two are
	// superseded.
	gate := make(chan struct{})
	e.gated = gate
	running := e.standard(`{"action":"redeploy","project":"` + e.name + `"}`).body["id"].(string)
	waitFor(t, func() bool { d, _ := e.s.queue.Get(running); return d.Status == Running })
	var ids []string
	for _, body := range []string{`{"action":"rollback","project":"%s","release":"` + redeployed + `"}`, `{"action":"redeploy","project":"%s"}`, `{"action":"deploy","project":"%s","ref":"main"}`} {
		ids = append(ids, e.standard(fmt.Sprintf(body, e.name)).body["id"].(string))
	}
	close(gate)
	var got []string
	for _, id := range append([]string{running}, ids...) {
		got = append(got, e.wait(id).Status)
	}
	if !slices.Equal(got, []string{Succeeded, Superseded, Superseded, Succeeded}) {
		t.Errorf("four requests, one running: %v", got)
	}
	if last, _ := e.s.queue.Get(ids[2]); e.live().ID != last.Release || last.Commit != second {
		t.Errorf("the newest request's release is not live: %+v, live %s", last, e.live().ID)
	}
}
