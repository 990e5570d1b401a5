package deployer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
)

// The pipeline's decisions, against a fakeHost: what each outcome leaves
// live, recorded and running. The end-to-end tests run the same against a
// real sshd, Engine and compose.

const fakeDir = "testdata/pulled"

type fakeRun struct {
	h   *fakeHost
	out bytes.Buffer
	rep *findingsReporter
}

func newFakeRun() *fakeRun {
	r := &fakeRun{h: newFakeHost()}
	r.rep = &findingsReporter{TextReporter: &TextReporter{W: &r.out}}
	return r
}

// deploy runs a deploy of testdata/pulled with env, changed by edit.
func (r *fakeRun) deploy(t *testing.T, edit func(*Plan), env ...string) (Result, error) {
	t.Helper()
	p := fakePlan(t, fakeDir, r.h, env...)
	if edit != nil {
		edit(p)
	}
	res, err := Run(t.Context(), p, r.rep)
	if len(res) != 1 {
		t.Fatalf("%d results, want one: %v", len(res), err)
	}
	return res[0], err
}

func (r *fakeRun) release(t *testing.T, id string) *Release {
	t.Helper()
	b, err := r.h.ReadFile(t.Context(), path.Join("/srv/deployer/shop/releases", id, "release.json"))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := parseRelease(b)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

func (r *fakeRun) statuses(t *testing.T) string {
	t.Helper()
	out, _ := r.h.Output(t.Context(), "ls", "-1", "/srv/deployer/shop/releases")
	var s []string
	for _, id := range strings.Fields(string(out)) {
		s = append(s, string(r.release(t, id).Status))
	}
	return strings.Join(s, " ")
}

// findingsReporter keeps the findings it is given.
type findingsReporter struct {
	*TextReporter
	findings []checks.Finding
}

func (f *findingsReporter) Finding(x checks.Finding, failing bool) {
	f.findings = append(f.findings, x)
	f.TextReporter.Finding(x, failing)
}

func TestDeployThenRedeploy(t *testing.T) {
	r := newFakeRun()
	first, err := r.deploy(t, nil, "RELEASE=v1")
	if err != nil {
		t.Fatalf("first deploy: %v\n%s", err, &r.out)
	}
	api := first.Images["api"]
	if first.Status != StatusLive || first.Previous != "" || first.Migration != "ran" || api.Size != 50<<20 ||
		!strings.HasPrefix(api.Ref, "shop-api:") || api.ID == "" || first.Shipped != 0 {
		t.Errorf("first result %+v", first)
	}
	if got := r.h.current("/srv/deployer/shop"); got != first.Release {
		t.Errorf("current is %q, want %s", got, first.Release)
	}
	if got := r.h.eng.running()["api"]; got != api.Ref {
		t.Errorf("api runs %q, want the pinned %s", got, api.Ref)
	}
	if r.h.locked != 1 {
		t.Errorf("%d locks taken, want 1", r.h.locked)
	}
	if _, ok := first.Healthy["api"]; !ok || len(first.Healthy) != 2 {
		t.Errorf("healthy %v, want api and rabbitmq", first.Healthy)
	}

	// The same migration is not run again; the first release is kept as
	// the one to roll back to.
	second, err := r.deploy(t, nil, "RELEASE=v1")
	if err != nil {
		t.Fatalf("redeploy: %v\n%s", err, &r.out)
	}
	if second.Migration != "skipped" || second.Previous != first.Release || second.Images["api"] != api {
		t.Errorf("redeploy result %+v", second)
	}
	if got := r.statuses(t); got != "superseded live" {
		t.Errorf("releases %s, want superseded live", got)
	}
	if n := strings.Count(strings.Join(r.h.ran, ","), "run migrate"); n != 1 {
		t.Errorf("the migration ran %d times, want once: %v", n, r.h.ran)
	}
	// A new image means a new migration.
	third, err := r.deploy(t, nil, "RELEASE=v2")
	if err != nil || third.Migration != "ran" || third.Images["api"].Ref == api.Ref {
		t.Errorf("deploy of v2: %v, result %+v", err, third)
	}
}

func TestFailedDeploys(t *testing.T) {
	for _, tc := range []struct {
		name      string
		first     bool // no release before
		edit      func(*fakeRun, *Plan)
		wantErr   string
		wantState string // statuses of the releases after
		wantStep  string
		runs      string // what runs after, "first" or "second"
	}{
		{name: "migration fails", edit: func(r *fakeRun, _ *Plan) { r.h.migrate = errors.New("relation users already exists") },
			wantErr: "migration migrate failed", wantState: "live failed", wantStep: "migrate (migrate)", runs: "first"},
		{name: "unhealthy", edit: func(r *fakeRun, _ *Plan) { r.h.eng.broken[apiRef(r, "v2")] = true },
			wantErr: "rolled back to", wantState: "live rolled-back", wantStep: "start", runs: "first"},
		{name: "unhealthy, no rollback", edit: func(r *fakeRun, p *Plan) { r.h.eng.broken[apiRef(r, "v2")] = true; p.NoRollback = true },
			wantErr: "left running because of --no-rollback", wantState: "live failed", wantStep: "start", runs: "second"},
		{name: "unhealthy first release", first: true, edit: func(r *fakeRun, _ *Plan) { r.h.eng.broken[apiRef(r, "v2")] = true },
			wantErr: "no previous release to roll back to", wantState: "failed", wantStep: "start", runs: "second"},
		{name: "rollback fails too", edit: func(r *fakeRun, _ *Plan) {
			r.h.eng.broken[apiRef(r, "v2")], r.h.eng.broken[apiRef(r, "v1")] = true, true
		}, wantErr: "rolling back to", wantState: "live failed", wantStep: "start", runs: "none"},
		{name: "image missing", edit: func(_ *fakeRun, p *Plan) {
			s := p.Project.Compose.Services["api"]
			s.Image = "elsewhere.example/api:v2"
			p.Project.Compose.Services["api"] = s
		}, wantErr: "pull access denied", wantState: "live", wantStep: "images", runs: "first"},
		{name: "upload fails", edit: func(r *fakeRun, _ *Plan) { r.h.fail["write compose.yaml"] = errFake },
			wantErr: "upload compose.yaml: fake failure", wantState: "live failed", wantStep: "upload release", runs: "first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFakeRun()
			var first Result
			if !tc.first {
				var err error
				if first, err = r.deploy(t, nil, "RELEASE=v1"); err != nil {
					t.Fatal(err)
				}
			}
			res, err := r.deploy(t, func(p *Plan) { tc.edit(r, p) }, "RELEASE=v2")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q\n%s", err, tc.wantErr, &r.out)
			}
			if res.Error == "" || !strings.HasPrefix(res.FailedStep, tc.wantStep) {
				t.Errorf("result error %q, failed step %q, want %s", res.Error, res.FailedStep, tc.wantStep)
			}
			if got := r.statuses(t); got != tc.wantState {
				t.Errorf("releases %q, want %q", got, tc.wantState)
			}
			if got := r.h.current("/srv/deployer/shop"); got != first.Release {
				t.Errorf("current %q, want it left at %q", got, first.Release)
			}
			switch got := r.h.eng.running(); tc.runs {
			case "first":
				if got["api"] != first.Images["api"].Ref {
					t.Errorf("api runs %q, want the first release's %s", got["api"], first.Images["api"].Ref)
				}
			case "second":
				if got, want := r.h.eng.running(true)["api"], apiRef(r, "v2"); got != want || r.h.eng.running()["api"] != "" {
					t.Errorf("api's container has %q (running: %v), want the second release's %s, stopped", got, r.h.eng.running(), want)
				}
			}
		})
	}
}

// apiRef is the pinned reference the api of RELEASE v gets.
func apiRef(r *fakeRun, v string) string {
	ref := "registry.example/shop/api:" + v
	if !r.h.eng.has(ref) {
		rc, _ := r.h.eng.ImagePull(context.Background(), ref, image.PullOptions{})
		rc.Close()
	}
	img, _ := r.h.eng.ImageInspect(context.Background(), ref)
	return "shop-api:" + strings.TrimPrefix(img.ID, "sha256:")[:12]
}

func TestPrune(t *testing.T) {
	r := newFakeRun()
	var live []Result
	for _, v := range []string{"v1", "v2", "v3"} {
		res, err := r.deploy(t, func(p *Plan) { p.Keep = 2 }, "RELEASE="+v)
		if err != nil {
			t.Fatal(err)
		}
		live = append(live, res)
	}
	// Failures: they may not push the last good releases out.
	for _, v := range []string{"v4", "v5", "v6"} {
		r.h.eng.broken[apiRef(r, v)] = true
		if _, err := r.deploy(t, func(p *Plan) { p.Keep = 2 }, "RELEASE="+v); err == nil {
			t.Fatalf("deploy of broken %s passed", v)
		}
	}
	last, err := r.deploy(t, func(p *Plan) { p.Keep = 2 }, "RELEASE=v7")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.statuses(t); got != "superseded rolled-back rolled-back live" {
		t.Errorf("releases %q, want the two newest good ones and the two newest failed ones", got)
	}
	for i, want := range []bool{false, false, true} {
		if ref := live[i].Images["api"].Ref; r.h.eng.has(ref) != want {
			t.Errorf("image %s of v%d: tagged %v, want %v", ref, i+1, !want, want)
		}
	}
	if !r.h.eng.has(last.Images["api"].Ref) || !r.h.eng.has(last.Images["rabbitmq"].Ref) {
		t.Errorf("an image in use was removed")
	}
}

func TestPointFails(t *testing.T) {
	r := newFakeRun()
	first, err := r.deploy(t, nil, "RELEASE=v1")
	if err != nil {
		t.Fatal(err)
	}
	r.h.fail["mv"] = errFake
	res, err := r.deploy(t, nil, "RELEASE=v2")
	if err == nil || !strings.Contains(err.Error(), "point current at") || res.FailedStep != "commit" {
		t.Fatalf("error %v, result %+v", err, res)
	}
	if got := r.h.current("/srv/deployer/shop"); got != first.Release {
		t.Errorf("current %s after a failed commit, want %s", got, first.Release)
	}
	if got := r.statuses(t); got != "live pending" {
		t.Errorf("releases %q, want live pending", got)
	}
}

func TestInterruptedReleasesAreMarked(t *testing.T) {
	r := newFakeRun()
	stale := &Release{ID: "20260101-000000.000-dead", Project: "shop", Status: StatusPending}
	r.h.files["/srv/deployer/shop/releases/"+stale.ID+"/release.json"] = stale.marshal()
	if _, err := r.deploy(t, nil, "RELEASE=v1"); err != nil {
		t.Fatal(err)
	}
	if got := r.release(t, stale.ID); got.Status != StatusInterrupted || got.Error == "" {
		t.Errorf("a pending release found under the lock is %s (%q), want interrupted", got.Status, got.Error)
	}
}

func TestReleaseEnvFile(t *testing.T) {
	r := newFakeRun()
	envFile := filepath.Join(t.TempDir(), "production.env")
	must(t, os.WriteFile(envFile, []byte("DATABASE_URL='postgres://app:s3cret$pw@db.example/app'\nRABBITMQ_PASS=\"it's \\\"quoted\\\"\"\n"), 0o600))
	res, err := r.deploy(t, func(p *Plan) {
		o := project.Options{WorkingDir: fakeDir, EnvFiles: []string{envFile}, Env: []string{}}
		p.Project = mustLoad(t, o)
		p.Env, p.Secrets = p.Project.EnvFileVars(), p.Project.SecretValues()
	}, "RELEASE=v1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.h.ReadFile(t.Context(), "/srv/deployer/shop/releases/"+res.Release+"/.env")
	if err != nil {
		t.Fatal(err)
	}
	vars, err := readEnvFile(b)
	if err != nil {
		t.Fatalf("the release's .env does not read back: %v\n%s", err, b)
	}
	if vars["DATABASE_URL"] != "postgres://app:s3cret$pw@db.example/app" || vars["RABBITMQ_PASS"] != `it's "quoted"` || len(vars) != 2 {
		t.Errorf(".env reads back as %q", vars)
	}
	for _, name := range []string{".env", "compose.yaml", "release.json"} {
		if perm := r.h.perms["/srv/deployer/shop/releases/"+res.Release+"/"+name]; perm != 0o600 {
			t.Errorf("%s written with mode %v, want 0600", name, perm)
		}
	}
	if strings.Contains(r.out.String(), "s3cret") {
		t.Errorf("a value of the env file was printed:\n%s", &r.out)
	}
}

func mustLoad(t *testing.T, o project.Options) *project.Project {
	t.Helper()
	p, err := project.Load(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	r := newFakeRun()
	res, err := r.deploy(t, func(p *Plan) { p.DryRun = true }, "RELEASE=v1")
	if err != nil || !res.DryRun || res.Release != "" {
		t.Fatalf("dry run: %v, %+v", err, res)
	}
	if len(r.h.files) != 0 || len(r.h.links) != 0 || r.h.locked != 0 || len(r.h.ran) != 0 {
		t.Errorf("a dry run changed the host: files %v, links %v, locks %d, compose %v", r.h.files, r.h.links, r.h.locked, r.h.ran)
	}
}

func TestPasswordDrift(t *testing.T) {
	for _, tc := range []struct {
		name   string
		volume bool
		// meanwhile is what another deploy does while this one builds.
		meanwhile func(*fakeHost)
		pass      string // this deploy's RABBITMQ_PASS
		want      string // "" passes
	}{
		{"the broker keeps its users on a volume", true, nil, "second-secret", "rabbitmq-password-drift"},
		{"a fresh broker takes the new one", false, nil, "second-secret", ""},
		{"unchanged", true, nil, "first-secret", ""},
		{"rotated by another deploy while this one built", true, func(h *fakeHost) {
			cur := h.links["/srv/deployer/shop/current"]
			p := path.Join("/srv/deployer/shop", cur, "release.json")
			rel, _ := parseRelease(h.files[p])
			rel.Secrets["rabbitmq/RABBITMQ_DEFAULT_PASS"] = HashSecret("second-secret")
			h.files[p] = rel.marshal()
		}, "first-secret", "rabbitmq-password-drift"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFakeRun()
			first, err := r.deploy(t, nil, "RELEASE=v1", "RABBITMQ_PASS=first-secret")
			if err != nil {
				t.Fatal(err)
			}
			r.h.eng.vols["shop_rabbitmq-data"] = tc.volume
			r.h.onLock = tc.meanwhile
			locks := r.h.locked
			res, err := r.deploy(t, nil, "RELEASE=v1", "RABBITMQ_PASS="+tc.pass)
			var cf *CheckFailed
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("deploy: %v", err)
			case tc.want == "":
				return
			case !errors.As(err, &cf) || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("deploy with a changed password: %v, want %s", err, tc.want)
			case tc.meanwhile == nil && r.h.locked != locks:
				t.Errorf("the lock was taken although the checks failed")
			}
			if res.FailedStep != "preflight checks" || res.Release != "" {
				t.Errorf("result %+v, want the preflight checks failed and no release", res)
			}
			if got := r.h.current("/srv/deployer/shop"); got != first.Release || r.statuses(t) != "live" {
				t.Errorf("current %s, releases %s: want the first alone, live", got, r.statuses(t))
			}
		})
	}
}

func TestFindingsOncePerRun(t *testing.T) {
	r := newFakeRun()
	p := fakePlan(t, fakeDir, r.h, "RELEASE=v1")
	p.Hosts = append(p.Hosts, p.Hosts[0])
	p.DryRun = true
	// No memory limit on the api: a warning with a file and line.
	s := p.Project.Compose.Services["api"]
	s.Deploy = nil
	p.Project.Compose.Services["api"] = s
	if _, err := Run(t.Context(), p, r.rep); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, f := range r.rep.findings {
		if f.Pos.File == "" || f.Pos.Line == 0 {
			t.Errorf("finding %s without a file and line: %+v", f.Rule, f.Pos)
		}
		seen[f.Rule+" "+f.Service]++
	}
	if seen["limits-missing api"] != 1 {
		t.Errorf("findings %v, want limits-missing of api once", seen)
	}
	for rule, n := range seen {
		if n != 1 {
			t.Errorf("%s reported %d times over two hosts, want once", rule, n)
		}
	}
	if n := strings.Count(r.out.String(), "==> preflight checks"); n != 2 {
		t.Errorf("the checks ran %d times for two hosts, want once each", n)
	}
}

func TestRollbackAndReleases(t *testing.T) {
	r := newFakeRun()
	var ids []string
	for _, v := range []string{"v1", "v2", "v3"} {
		res, err := r.deploy(t, nil, "RELEASE="+v, "DATABASE_URL=postgres://app:pw-"+v+"@db/app")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Release)
	}
	p := fakePlan(t, fakeDir, r.h)
	for _, tc := range []struct {
		to, want, wantErr string
	}{
		{"", ids[1], ""},                // the one live before
		{ids[0], ids[0], ""},            // a named one
		{ids[0], "", "is already live"}, // the live one
		{"20990101-000000.000-none", "", "no release 20990101-000000.000-none"},
	} {
		res, err := Rollback(t.Context(), p, tc.to, &TextReporter{W: io.Discard})
		if len(res) != 1 || tc.wantErr == "" && (res[0].Release != tc.want || res[0].Status != StatusLive || res[0].Images["api"].Ref == "") {
			t.Errorf("rollback to %q: results %+v", tc.to, res)
		}
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("rollback to %q: %v, want %q", tc.to, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("rollback to %q: %v", tc.to, err)
		case tc.wantErr == "" && r.h.current("/srv/deployer/shop") != tc.want:
			t.Errorf("rollback to %q: current %s, want %s", tc.to, r.h.current("/srv/deployer/shop"), tc.want)
		}
	}
	hosts, err := Releases(t.Context(), p, &TextReporter{W: io.Discard})
	if err != nil || len(hosts) != 1 || hosts[0].Current != ids[0] || len(hosts[0].Releases) != 3 {
		t.Fatalf("releases: %v, %+v", err, hosts)
	}
	if got := hosts[0].Releases[2].Status; got != StatusRolledBack {
		t.Errorf("the release rolled back from is %s", got)
	}
	// An unhealthy target: the live one comes back.
	r.h.eng.broken[apiRef(r, "v2")] = true
	_, err = Rollback(t.Context(), p, ids[1], &TextReporter{W: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "still serves") || r.h.current("/srv/deployer/shop") != ids[0] {
		t.Errorf("rollback to an unhealthy release: %v; current %s", err, r.h.current("/srv/deployer/shop"))
	}
	if got := r.h.eng.running()["api"]; got != apiRef(r, "v1") {
		t.Errorf("after a failed rollback the api runs %s, want v1's", got)
	}
}

// A rotation asks before the build, wipes under the lock and deploys in
// the same hold of it.
func TestWipeDataRotation(t *testing.T) {
	r := newFakeRun()
	if _, err := r.deploy(t, nil, "RELEASE=v1", "RABBITMQ_PASS=first-secret"); err != nil {
		t.Fatal(err)
	}
	r.h.eng.vols["shop_rabbitmq-data"] = true
	locks := r.h.locked
	for _, answer := range []bool{false, true} {
		asked, heldWhenAsked := 0, false
		p := fakePlan(t, fakeDir, r.h, "RELEASE=v1", "RABBITMQ_PASS=second-secret")
		err := RotateRabbitMQPassword(t.Context(), p, RotateOptions{WipeData: true, Confirm: func() bool {
			asked++
			heldWhenAsked = r.h.held
			return answer
		}}, r.rep)
		switch {
		case asked != 1 || heldWhenAsked:
			t.Errorf("answer %v: asked %d times, with the lock held: %v; want once, before the lock", answer, asked, heldWhenAsked)
		case !answer && (err == nil || !strings.Contains(err.Error(), "not confirmed") || !r.h.eng.vols["shop_rabbitmq-data"] || r.h.locked != locks):
			t.Errorf("answered no: %v; the volume is there: %v; locks %d → %d", err, r.h.eng.vols["shop_rabbitmq-data"], locks, r.h.locked)
		case answer && err != nil:
			t.Errorf("answered yes: %v\n%s", err, &r.out)
		case answer && (r.h.eng.vols["shop_rabbitmq-data"] || r.h.locked != locks+1 || r.statuses(t) != "superseded live"):
			t.Errorf("answered yes: volume left %v, %d locks taken, releases %s; want it deleted and one deploy under one lock",
				r.h.eng.vols["shop_rabbitmq-data"], r.h.locked-locks, r.statuses(t))
		}
	}
}

func TestStaleBuildTagsRemoved(t *testing.T) {
	r := newFakeRun()
	p := fakePlan(t, fakeDir, r.h).withDefaults()
	p.Now = func() time.Time { return time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC) }
	s := p.Project.Compose.Services["api"]
	s.Build = &types.BuildConfig{Context: "."}
	p.Project.Compose.Services["api"] = s
	old, young, other := "shop-api:build-20261202-090000.000-3f2a9c1-1a2b", "shop-api:build-20261202-115500.000-77aa", "shop-rabbitmq:build-20261201-000000.000-1234"
	for _, ref := range []string{old, young, other, "shop-api:build-junk", "shop-api:0123456789ab"} {
		r.h.eng.addImage(ref, "sha256:"+strings.Repeat("a", 64), 1)
	}
	tg := &target{plan: p, host: r.h, docker: r.h.eng, rep: &TextReporter{W: io.Discard}}
	tg.removeStaleBuildTags(t.Context())
	for ref, want := range map[string]bool{old: false, young: true, other: true, "shop-api:build-junk": true, "shop-api:0123456789ab": true} {
		if r.h.eng.has(ref) != want {
			t.Errorf("%s: tagged %v, want %v", ref, !want, want)
		}
	}
}

func TestRedeploy(t *testing.T) {
	r := newFakeRun()
	withBuild := func(p *Plan) {
		p.Redeploy, p.Commit = true, "9e8d7c6b5a4f"
		s := p.Project.Compose.Services["api"]
		s.Build = &types.BuildConfig{Context: "."} // never built: the live release's image is taken
		p.Project.Compose.Services["api"] = s
	}
	if _, err := r.deploy(t, withBuild, "RELEASE=v1"); err == nil || !strings.Contains(err.Error(), "nothing to redeploy") {
		t.Fatalf("redeploy of nothing: %v", err)
	}
	first, err := r.deploy(t, nil, "RELEASE=v1")
	if err != nil {
		t.Fatal(err)
	}
	// The file now names v2, but a redeploy runs what is live.
	again, err := r.deploy(t, withBuild, "RELEASE=v2", "DATABASE_URL=postgres://app:rotated@db/app")
	if err != nil {
		t.Fatalf("redeploy: %v\n%s", err, &r.out)
	}
	if again.Images["api"] != first.Images["api"] || again.Previous != first.Release || again.Status != StatusLive {
		t.Errorf("redeploy result %+v, want the api image of %s live again", again, first.Release)
	}
	if c := r.release(t, again.Release).Commit; c != "3f2a9c1d" {
		t.Errorf("the redeploy's release records commit %q, want the live release's 3f2a9c1d", c)
	}
	env, _ := r.h.ReadFile(t.Context(), "/srv/deployer/shop/releases/"+again.Release+"/compose.yaml")
	if !strings.Contains(string(env), "rotated") {
		t.Errorf("the redeploy did not take the new environment")
	}
	// An image the host no longer has is an error that says what to do.
	r.h.eng.ImageRemove(t.Context(), again.Images["api"].Ref, image.RemoveOptions{})
	if _, err := r.deploy(t, withBuild, "RELEASE=v1"); err == nil || !strings.Contains(err.Error(), "deploy to build it again") {
		t.Errorf("redeploy without the image: %v", err)
	}
}

func TestPlatform(t *testing.T) {
	for _, tc := range []struct{ os, arch, want string }{
		{"linux", "x86_64", "linux/amd64"}, {"linux", "aarch64", "linux/arm64"}, {"linux", "armv7l", "linux/arm/v7"},
		{"linux", "mips", ""}, {"", "x86_64", ""},
	} {
		if got := platform(system.Info{OSType: tc.os, Architecture: tc.arch}); got != tc.want {
			t.Errorf("%s/%s: %q, want %q", tc.os, tc.arch, got, tc.want)
		}
	}
}
