package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	testGitHubSecret = "a-github-webhook-secret-42"
	testSlackSecret  = "a-slack-signing-secret-0123456789"
)

// fakeRuns stands in for the pipeline: it records what ran and, with a
// gate, holds each run until the test lets it go.
type fakeRuns struct {
	mu      sync.Mutex
	ran     []Deploy
	gate    chan struct{}
	started chan string
}

func (f *fakeRuns) run(ctx context.Context, d Deploy, log io.Writer) (Outcome, error) {
	fmt.Fprintf(log, "started %s\n", d.ID)
	f.started <- d.ID
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return Outcome{}, ctx.Err()
		}
	}
	fmt.Fprintf(log, "done %s\n", d.ID)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ran = append(f.ran, d)
	return Outcome{Release: "rel-" + d.ID[len(d.ID)-8:]}, nil
}

type fixture struct {
	t    *testing.T
	path string // the configuration
	cfg  *Config
	s    *Server
	url  string
	runs *fakeRuns
	out  *bytes.Buffer
}

var goodHooks = "  github: {secrets: [env:GITHUB_WEBHOOK_SECRET], repositories: [semalink/app], branches: [main], project: demo, environments: [production]}\n" +
	"  slack: {secrets: [file:DIR/slack-secret], teams: [T0001], channels: [C0001], users: [U0001], response-urls: [RESPOND]}\n" +
	"  standard: {secrets: [env:DEPLOY_HOOK_SECRET], projects: [demo], actions: [deploy, redeploy, rollback]}\n"

// newFixture starts a server with all three hooks and a fake pipeline.
func newFixture(t *testing.T, gated bool) *fixture {
	t.Helper()
	t.Setenv("GITHUB_WEBHOOK_SECRET", testGitHubSecret)
	t.Setenv("DEPLOY_HOOK_SECRET", standardSecret)
	t.Setenv("GITHUB_TOKEN", "")
	f := &fixture{t: t, runs: &fakeRuns{started: make(chan string, 100)}, out: &bytes.Buffer{}}
	if gated {
		f.runs.gate = make(chan struct{})
	}
	f.path = writeConfig(t, strings.ReplaceAll(goodHooks, "RESPOND", "http://127.0.0.1/"))
	f.start()
	return f
}

// start (or restart) the server on the fixture's configuration.
func (f *fixture) start() {
	t := f.t
	cfg, err := LoadConfig(t.Context(), f.path)
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = cfg
	s, err := New(cfg, Options{Run: f.runs.run, Status: func(context.Context, string) (string, error) { return "demo: r1 is live", nil },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	f.s, f.url = s, hs.URL
	t.Cleanup(func() {
		hs.Close()
		if f.runs.gate != nil {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // stop a held run at once
			s.Close(ctx)
		} else {
			s.Close(context.Background())
		}
	})
}

// stop closes the server as a SIGTERM would, without waiting for a held
// run.
func (f *fixture) stop() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.s.Close(ctx)
}

type answer struct {
	code int
	body map[string]any
	raw  string
}

func (f *fixture) post(path string, h http.Header, body string) answer {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url+path, strings.NewReader(body))
	must(f.t, err)
	for k, v := range h {
		req.Header[k] = v
	}
	return do(f.t, req)
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	a := answer{code: resp.StatusCode, raw: string(b)}
	_ = json.Unmarshal(b, &a.body)
	return a
}

func (f *fixture) get(path string) answer {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.url+path, nil)
	must(f.t, err)
	return do(f.t, req)
}

var msgCounter atomic.Int64

func standardHeaders(t *testing.T, secret, body string, at time.Time) http.Header {
	t.Helper()
	h, err := SignStandard(secret, fmt.Sprintf("msg_%d_%d", time.Now().UnixNano(), msgCounter.Add(1)), []byte(body), at)
	must(t, err)
	return h
}

func githubHeaders(event, body string) http.Header {
	h := SignGitHub([]byte(testGitHubSecret), []byte(body))
	h.Set("X-GitHub-Event", event)
	h.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
	h.Set("Content-Type", "application/json")
	return h
}

func slashCommand(text, team, channel, user string) string {
	return url.Values{"team_id": {team}, "channel_id": {channel}, "user_id": {user}, "command": {"/deploy"},
		"text": {text}, "response_url": {"http://127.0.0.1/respond"}}.Encode()
}

const pushBody = `{"ref":"refs/heads/%s","after":"%s","deleted":false,"repository":{"full_name":"%s"},"sender":{"login":"octocat"}}`

// TestHookAnswers: each hook's requests, good and bad, get their status,
// and only the good ones queue a deploy.
func TestHookAnswers(t *testing.T) {
	f := newFixture(t, false)
	now := time.Now()
	deployBody := `{"action":"redeploy","project":"demo","sender":"ops-bot"}`
	good := standardHeaders(t, standardSecret, deployBody, now)
	flipped := strings.Replace(deployBody, "redeploy", "rEdeploy", 1)
	sha := "0123456789abcdef0123456789abcdef01234567"
	forkRun := `{"action":"completed","workflow_run":{"head_sha":"` + sha + `","head_branch":"main","conclusion":"success","event":"pull_request","head_repository":{"full_name":"evil/app"}},"repository":{"full_name":"semalink/app"}}`
	type tc struct {
		name   string
		path   string
		h      http.Header
		body   string
		code   int
		queued bool
	}
	cases := []tc{
		{"standard: good", "/hooks/standard", good, deployBody, 202, true},
		{"standard: the same delivery again", "/hooks/standard", good, deployBody, 409, false},
		{"standard: a flipped byte", "/hooks/standard", standardHeaders(t, standardSecret, deployBody, now), flipped, 401, false},
		{"standard: stale", "/hooks/standard", standardHeaders(t, standardSecret, deployBody, now.Add(-6*time.Minute)), deployBody, 401, false},
		{"standard: from the future", "/hooks/standard", standardHeaders(t, standardSecret, deployBody, now.Add(6*time.Minute)), deployBody, 401, false},
		{"standard: a wrong secret", "/hooks/standard", standardHeaders(t, "whsec_"+"c29tZSBvdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMhIQ==", deployBody, now), deployBody, 401, false},
		{"standard: unsigned", "/hooks/standard", http.Header{}, deployBody, 401, false},
		{"standard: signed, not JSON", "/hooks/standard", standardHeaders(t, standardSecret, "{nope", now), "{nope", 400, false},
		{"standard: signed, unknown field", "/hooks/standard", standardHeaders(t, standardSecret, `{"action":"redeploy","project":"demo","x":1}`, now), `{"action":"redeploy","project":"demo","x":1}`, 400, false},
		{"standard: a project not allowed", "/hooks/standard", standardHeaders(t, standardSecret, `{"action":"redeploy","project":"other"}`, now), `{"action":"redeploy","project":"other"}`, 403, false},
		{"standard: a ref that is an option", "/hooks/standard", standardHeaders(t, standardSecret, `{"action":"deploy","project":"demo","ref":"--upload-pack=x"}`, now), `{"action":"deploy","project":"demo","ref":"--upload-pack=x"}`, 400, false},
		{"standard: over the body limit", "/hooks/standard", standardHeaders(t, standardSecret, "x", now), strings.Repeat("x", maxBody+1), 413, false},

		{"github: ping", "/hooks/github", githubHeaders("ping", `{"zen":"Keep it logically awesome.","hook_id":1}`), `{"zen":"Keep it logically awesome.","hook_id":1}`, 200, false},
		{"github: push to main", "/hooks/github", githubHeaders("push", fmt.Sprintf(pushBody, "main", sha, "semalink/app")), fmt.Sprintf(pushBody, "main", sha, "semalink/app"), 202, true},
		{"github: push to another branch", "/hooks/github", githubHeaders("push", fmt.Sprintf(pushBody, "feature", sha, "semalink/app")), fmt.Sprintf(pushBody, "feature", sha, "semalink/app"), 403, false},
		{"github: push to another repository", "/hooks/github", githubHeaders("push", fmt.Sprintf(pushBody, "main", sha, "evil/app")), fmt.Sprintf(pushBody, "main", sha, "evil/app"), 403, false},
		{"github: an event that does not deploy", "/hooks/github", githubHeaders("issues", `{"action":"opened"}`), `{"action":"opened"}`, 202, false},
		{"github: a run still going", "/hooks/github", githubHeaders("workflow_run", `{"action":"requested","workflow_run":{"head_sha":"`+sha+`","head_branch":"main"},"repository":{"full_name":"semalink/app"}}`), `{"action":"requested","workflow_run":{"head_sha":"` + sha + `","head_branch":"main"},"repository":{"full_name":"semalink/app"}}`, 202, false},
		{"github: a fork's pull request run on its main", "/hooks/github", githubHeaders("workflow_run", forkRun), forkRun, 202, false},
		{"github: a bad signature", "/hooks/github", SignGitHub([]byte("not-the-secret-at-all!"), []byte(`{}`)), `{}`, 401, false},
		{"github: sha1 only", "/hooks/github", http.Header{"X-Hub-Signature": {"sha1=0000"}}, `{}`, 401, false},
		{"github: signed, not JSON", "/hooks/github", githubHeaders("push", "{nope"), "{nope", 400, false},

		{"slack: status", "/hooks/slack", SignSlack([]byte(testSlackSecret), []byte(slashCommand("status demo", "T0001", "C0001", "U0001")), now), slashCommand("status demo", "T0001", "C0001", "U0001"), 200, false},
		{"slack: rollback", "/hooks/slack", SignSlack([]byte(testSlackSecret), []byte(slashCommand("rollback demo", "T0001", "C0001", "U0001")), now), slashCommand("rollback demo", "T0001", "C0001", "U0001"), 202, true},
		{"slack: another team", "/hooks/slack", SignSlack([]byte(testSlackSecret), []byte(slashCommand("rollback demo", "T9999", "C0001", "U0001")), now), slashCommand("rollback demo", "T9999", "C0001", "U0001"), 403, false},
		{"slack: another user", "/hooks/slack", SignSlack([]byte(testSlackSecret), []byte(slashCommand("redeploy demo", "T0001", "C0001", "U0666")), now), slashCommand("redeploy demo", "T0001", "C0001", "U0666"), 403, false},
		{"slack: stale", "/hooks/slack", SignSlack([]byte(testSlackSecret), []byte(slashCommand("redeploy demo", "T0001", "C0001", "U0001")), now.Add(-10*time.Minute)), slashCommand("redeploy demo", "T0001", "C0001", "U0001"), 401, false},
		{"slack: not a command", "/hooks/slack", SignSlack([]byte(testSlackSecret), []byte(slashCommand("destroy demo", "T0001", "C0001", "U0001")), now), slashCommand("destroy demo", "T0001", "C0001", "U0001"), 400, false},
	}
	deployment := `{"deployment":{"id":42,"sha":"` + sha + `","ref":"main","environment":"production","created_at":"` + now.UTC().Format(time.RFC3339) + `"},"repository":{"full_name":"semalink/app"},"sender":{"login":"octocat"}}`
	cases = append(cases, tc{"github: a deployment", "/hooks/github", githubHeaders("deployment", deployment), deployment, 202, true})
	staging := strings.Replace(deployment, "production", "staging", 1)
	cases = append(cases, tc{"github: a deployment elsewhere", "/hooks/github", githubHeaders("deployment", staging), staging, 202, false})
	old := strings.Replace(deployment, now.UTC().Format(time.RFC3339), now.Add(-time.Hour).UTC().Format(time.RFC3339), 1)
	cases = append(cases, tc{"github: a Deployment an hour old (a replay)", "/hooks/github", githubHeaders("deployment", old), old, 202, false})
	// The same push with its signature's hex in upper case: the same
	// delivery.
	upper := githubHeaders("push", fmt.Sprintf(pushBody, "main", sha, "semalink/app"))
	upper.Set("X-Hub-Signature-256", "sha256="+strings.ToUpper(strings.TrimPrefix(upper.Get("X-Hub-Signature-256"), "sha256=")))
	cases = append(cases, tc{"github: the push again, its signature in upper case", "/hooks/github", upper, fmt.Sprintf(pushBody, "main", sha, "semalink/app"), 409, false})

	queued := 0
	for _, c := range cases {
		a := f.post(c.path, c.h, c.body)
		if a.code != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, a.code, a.raw, c.code)
		}
		if c.queued {
			queued++
			if id, _ := a.body["id"].(string); !deployID.MatchString(id) {
				t.Errorf("%s: no deploy id in %s", c.name, a.raw)
			}
		}
		if n := len(f.s.Deploys()); n != queued {
			t.Errorf("%s: %d deploys recorded, want %d", c.name, n, queued)
		}
		for _, secret := range []string{testGitHubSecret, testSlackSecret, standardSecret, c.h.Get("webhook-signature"), c.h.Get("X-Hub-Signature-256")} {
			if secret != "" && strings.Contains(a.raw, secret) {
				t.Errorf("%s: the answer quotes a signature or secret: %s", c.name, a.raw)
			}
		}
	}
	// The replay names the deploy the first delivery queued.
	if a := f.post("/hooks/standard", good, deployBody); a.body["deploy"] != f.s.Deploys()[len(f.s.Deploys())-1].ID {
		t.Errorf("a replay's answer does not name the first deploy: %s", a.raw)
	}
	// What was queued is what was asked for.
	list := f.s.Deploys()
	byHook := map[string]Deploy{}
	for _, d := range list {
		byHook[d.Hook+"/"+d.Action+"/"+d.Event] = d
	}
	if d := byHook["github/deploy/push"]; d.Ref != sha || !d.Forward || d.Sender != "octocat" || d.Project != "demo" {
		t.Errorf("push: %+v", d)
	}
	if d := byHook["github/deploy/deployment"]; d.Deployment != 42 || d.Repository != "semalink/app" || d.Forward {
		t.Errorf("deployment: %+v", d)
	}
	if d := byHook["standard/redeploy/"]; d.Sender != "ops-bot" {
		t.Errorf("standard: %+v", d)
	}
	if d := byHook["slack/rollback/"]; d.Sender != "U0001" {
		t.Errorf("slack: %+v", d)
	}

	// The audit log has a line per request and never a secret.
	audit, err := os.ReadFile(filepath.Join(f.cfg.State, "audit.log"))
	must(t, err)
	if n := bytes.Count(audit, []byte("\n")); n < len(cases) {
		t.Errorf("audit log: %d lines for %d requests", n, len(cases))
	}
	for _, secret := range []string{testGitHubSecret, testSlackSecret, standardSecret, "v1,", "sha256="} {
		if bytes.Contains(audit, []byte(secret)) {
			t.Errorf("the audit log holds %q", secret)
		}
	}
	if !bytes.Contains(audit, []byte(`"verdict":"forbidden"`)) || !bytes.Contains(audit, []byte(`"sender":"octocat"`)) {
		t.Errorf("audit log:\n%s", audit)
	}
	// The metrics count them by hook and verdict.
	m := f.get("/metrics")
	for _, want := range []string{`deployer_server_requests_total{hook="standard",verdict="accepted"} 1`, `deployer_server_requests_total{hook="standard",verdict="replay"} 2`,
		`deployer_server_requests_total{hook="github",verdict="forbidden"} 2`, `deployer_server_requests_total{hook="slack",verdict="stale"} 1`, "deployer_server_queue_depth "} {
		if !strings.Contains(m.raw, want) {
			t.Errorf("metrics lack %s:\n%s", want, m.raw)
		}
	}
}

// TestRotatedSecret: both secrets of a hook are accepted while it is
// rotated; once the old one is removed from the configuration, it is not.
func TestRotatedSecret(t *testing.T) {
	f := newFixture(t, false)
	old := "whsec_" + "b2xkIHNlY3JldCwgc3RpbGwgMzIgYnl0ZXMgbG9uZyE="
	t.Setenv("OLD_HOOK_SECRET", old)
	b, err := os.ReadFile(f.path)
	must(t, err)
	rotating := strings.Replace(string(b), "[env:DEPLOY_HOOK_SECRET]", "[env:DEPLOY_HOOK_SECRET, env:OLD_HOOK_SECRET]", 1)
	must(t, os.WriteFile(f.path, []byte(rotating), 0o600))
	f.stop()
	f.start()
	body := `{"action":"redeploy","project":"demo"}`
	if a := f.post("/hooks/standard", standardHeaders(t, old, body, time.Now()), body); a.code != 202 {
		t.Errorf("the old secret while rotating: %d %s", a.code, a.raw)
	}
	must(t, os.WriteFile(f.path, b, 0o600))
	f.stop()
	f.start()
	n := len(f.s.Deploys())
	if a := f.post("/hooks/standard", standardHeaders(t, old, body, time.Now()), body); a.code != 401 {
		t.Errorf("the rotated-out secret: %d %s", a.code, a.raw)
	}
	if a := f.post("/hooks/standard", standardHeaders(t, standardSecret, body, time.Now()), body); a.code != 202 {
		t.Errorf("the new secret: %d %s", a.code, a.raw)
	}
	if got := len(f.s.Deploys()); got != n+1 {
		t.Errorf("%d deploys, want %d", got, n+1)
	}
}

// TestReplayAfterRestart: a delivery accepted before a restart is still a
// replay after it.
func TestReplayAfterRestart(t *testing.T) {
	f := newFixture(t, false)
	body := `{"action":"redeploy","project":"demo"}`
	h := standardHeaders(t, standardSecret, body, time.Now())
	first := f.post("/hooks/standard", h, body)
	if first.code != 202 {
		t.Fatalf("%d %s", first.code, first.raw)
	}
	f.stop()
	f.start()
	if a := f.post("/hooks/standard", h, body); a.code != 409 || a.body["deploy"] != first.body["id"] {
		t.Errorf("after a restart: %d %s, want 409 naming %v", a.code, a.raw, first.body["id"])
	}
}

// TestQueueSupersedes: requests that come in while a deploy runs wait;
// only the newest runs, the others end as superseded. A queued request
// survives a restart.
func TestQueueSupersedes(t *testing.T) {
	f := newFixture(t, true)
	ask := func(action string) string {
		body := `{"action":"` + action + `","project":"demo"}`
		a := f.post("/hooks/standard", standardHeaders(t, standardSecret, body, time.Now()), body)
		if a.code != 202 {
			t.Fatalf("%d %s", a.code, a.raw)
		}
		return a.body["id"].(string)
	}
	first := ask("redeploy")
	if got := <-f.runs.started; got != first {
		t.Fatalf("started %s, want %s", got, first)
	}
	// Its log streams while it runs.
	resp, err := http.Get(f.url + "/deploys/" + first + "/log")
	must(t, err)
	defer resp.Body.Close()
	line := make([]byte, len("started "+first+"\n"))
	if _, err := io.ReadFull(resp.Body, line); err != nil || string(line) != "started "+first+"\n" {
		t.Errorf("the running deploy's log: %q, %v", line, err)
	}
	second, third, fourth := ask("redeploy"), ask("rollback"), ask("redeploy")
	status := func(id string) string {
		d, _ := f.s.queue.Get(id)
		return d.Status
	}
	if status(first) != Running || status(second) != Superseded || status(third) != Superseded || status(fourth) != Queued {
		t.Errorf("statuses: %s %s %s %s", status(first), status(second), status(third), status(fourth))
	}
	if a := f.get("/deploys/" + second); a.body["status"] != Superseded || !strings.Contains(a.raw, "superseded by "+third) {
		t.Errorf("GET /deploys/%s: %s", second, a.raw)
	}
	f.runs.gate <- struct{}{}
	// The log ends with the deploy.
	rest, err := io.ReadAll(resp.Body)
	if want := "done " + first + "\n\n" + first + ": succeeded, release rel-" + first[len(first)-8:] + "\n"; err != nil || string(rest) != want {
		t.Errorf("the rest of the log: %q, %v", rest, err)
	}
	if got := <-f.runs.started; got != fourth {
		t.Fatalf("started %s, want %s", got, fourth)
	}
	if m := f.get("/metrics").raw; !strings.Contains(m, `deployer_server_deploys_total{outcome="superseded"} 2`) ||
		!strings.Contains(m, "deployer_server_deploy_duration_seconds_count 1") || !strings.Contains(m, "deployer_server_queue_depth 0") {
		t.Errorf("metrics:\n%s", m)
	}
	// A request that waits when the server stops runs after it starts
	// again; the one that ran when it stopped is recorded as failed.
	fifth := ask("redeploy")
	f.stop()
	f.start()
	if status(fourth) != Failed || status(fifth) == Superseded {
		t.Errorf("after a restart: %s %s", status(fourth), status(fifth))
	}
	if got := <-f.runs.started; got != fifth {
		t.Fatalf("started %s after a restart, want %s", got, fifth)
	}
	f.runs.gate <- struct{}{}
	waitFor(t, func() bool { return status(fifth) == Succeeded })
	list := f.get("/deploys")
	var ds []Deploy
	must(t, json.Unmarshal([]byte(list.raw), &ds))
	if len(ds) != 5 || ds[0].ID != fifth || ds[4].ID != first || ds[0].Release == "" {
		t.Errorf("GET /deploys, newest first: %s", list.raw)
	}
}

// TestFailureRateLimit: an address that keeps failing verification gets
// 429; a correctly signed request from it is still served.
func TestFailureRateLimit(t *testing.T) {
	f := newFixture(t, false)
	body := `{"action":"redeploy","project":"demo"}`
	codes := map[int]int{}
	for range failBurst + 5 {
		codes[f.post("/hooks/standard", standardHeaders(t, "whsec_"+"c29tZSBvdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMhIQ==", body, time.Now()), body).code]++
	}
	if codes[401] != failBurst || codes[429] != 5 {
		t.Errorf("answers to bad signatures: %v", codes)
	}
	if a := f.post("/hooks/standard", standardHeaders(t, standardSecret, body, time.Now()), body); a.code != 202 {
		t.Errorf("a good request from a limited address: %d %s", a.code, a.raw)
	}
	// Requests in flight beyond the cap: 503.
	for range maxInFlight {
		f.s.inflight <- struct{}{}
	}
	if a := f.post("/hooks/standard", standardHeaders(t, standardSecret, body, time.Now()), body); a.code != 503 {
		t.Errorf("over the in-flight cap: %d %s", a.code, a.raw)
	}
	for range maxInFlight {
		<-f.s.inflight
	}
}

// TestReaders: records and metrics are for the configured readers only;
// a proxy's X-Forwarded-For names the client.
func TestReaders(t *testing.T) {
	f := newFixture(t, false)
	if a := f.get("/deploys"); a.code != 200 {
		t.Errorf("from loopback: %d", a.code)
	}
	b, err := os.ReadFile(f.path)
	must(t, err)
	must(t, os.WriteFile(f.path, append(b, "proxies: [127.0.0.1]\n"...), 0o600))
	f.stop()
	f.start()
	req, err := http.NewRequest(http.MethodGet, f.url+"/deploys", nil)
	must(t, err)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	if a := do(t, req); a.code != 403 {
		t.Errorf("through the proxy from 203.0.113.9: %d", a.code)
	}
	if a := f.get("/healthz"); a.code != 200 {
		t.Errorf("healthz: %d", a.code)
	}
}

// waitFor polls cond until it holds (the test's own deadline bounds it).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatal("gave up waiting")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSlackResponds: a slash command's result is posted to its
// response_url, when that is under hooks.slack.response-urls; anywhere
// else, it is not.
func TestSlackResponds(t *testing.T) {
	posted := make(chan string, 10)
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		posted <- r.URL.Path + " " + string(b)
	}))
	defer slack.Close()
	f := newFixture(t, false)
	b, err := os.ReadFile(f.path)
	must(t, err)
	must(t, os.WriteFile(f.path, bytes.Replace(b, []byte("http://127.0.0.1/"), []byte(slack.URL+"/commands/"), 1), 0o600))
	f.stop()
	f.start()
	command := func(responseURL string) answer {
		body := url.Values{"team_id": {"T0001"}, "channel_id": {"C0001"}, "user_id": {"U0001"}, "text": {"redeploy demo"}, "response_url": {responseURL}}.Encode()
		return f.post("/hooks/slack", SignSlack([]byte(testSlackSecret), []byte(body), time.Now()), body)
	}
	a := command(slack.URL + "/elsewhere/1")
	if a.code != 202 || strings.Contains(a.raw, "follows") {
		t.Errorf("a response_url outside the prefixes: %d %s", a.code, a.raw)
	}
	<-f.runs.started
	a = command(slack.URL + "/commands/T0001/2")
	if a.code != 202 || a.body["text"] == nil {
		t.Errorf("%d %s", a.code, a.raw)
	}
	<-f.runs.started
	got := <-posted
	if !strings.HasPrefix(got, "/commands/T0001/2 ") || !strings.Contains(got, "redeploy of demo") || !strings.Contains(got, "succeeded") {
		t.Errorf("posted %s", got)
	}
	f.stop() // waits for what is being sent
	select {
	case p := <-posted:
		t.Errorf("posted outside the prefixes: %s", p)
	default:
	}
}

// TestScrubEnvironment: once the server has read its secrets, nothing it
// starts inherits them; git never does.
func TestScrubEnvironment(t *testing.T) {
	f := newFixture(t, false)
	t.Setenv("GITHUB_TOKEN", "a-token-for-statuses")
	p := newPipeline(f.cfg)
	for _, kv := range p.env {
		if strings.HasPrefix(kv, "DEPLOY_HOOK_SECRET=") || strings.HasPrefix(kv, "GITHUB_WEBHOOK_SECRET=") || strings.HasPrefix(kv, "GITHUB_TOKEN=") {
			t.Errorf("git's environment holds %s", kv)
		}
	}
	t.Setenv("SOME_OTHER_SECRET", "not named by any hook")
	t.Setenv("LC_TIME", "C")
	ScrubEnvironment()
	for _, name := range []string{"DEPLOY_HOOK_SECRET", "GITHUB_WEBHOOK_SECRET", "GITHUB_TOKEN", "SOME_OTHER_SECRET"} {
		if _, ok := os.LookupEnv(name); ok {
			t.Errorf("%s is still in the environment", name)
		}
	}
	for _, name := range []string{"PATH", "LC_TIME"} {
		if _, ok := os.LookupEnv(name); !ok {
			t.Errorf("%s was removed", name)
		}
	}
}

// TestUnderAttack: many slow clients that never finish their headers
// and a flood of bad signatures, against the server on loopback: the
// good requests among them are served and queue their deploys, nothing
// else is queued, and the server's goroutines and memory stay bounded.
func TestUnderAttack(t *testing.T) {
	f := newFixture(t, false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.s.Serve(ctx, ln, time.Second) }()
	base := "http://" + ln.Addr().String()
	before := runtime.NumGoroutine()

	const slow = 300
	var conns []net.Conn
	for range slow {
		c, err := net.Dial("tcp", ln.Addr().String())
		must(t, err)
		_, err = c.Write([]byte("POST /hooks/standard HTTP/1.1\r\nHost: deploy\r\nwebhook-id: "))
		must(t, err)
		conns = append(conns, c)
	}
	// The flood comes from 127.0.0.1, the good requests from 127.0.0.2:
	// another client, whom the flood's address limits do not touch.
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DialContext: d.DialContext}}
	}
	attacker, client := from("127.0.0.1"), from("127.0.0.2")
	body := `{"action":"redeploy","project":"demo"}`
	post := func(c *http.Client, h http.Header, body string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/hooks/standard", strings.NewReader(body))
		req.Header = h
		resp, err := c.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	flood := map[int]int{}
	padded := body + strings.Repeat(" ", 64<<10)
	for range 16 {
		wg.Go(func() {
			for range 100 {
				code := post(attacker, standardHeaders(t, "whsec_"+"c29tZSBvdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMhIQ==", padded, time.Now()), padded)
				mu.Lock()
				flood[code]++
				mu.Unlock()
			}
		})
	}
	good := make([]int, 10)
	for i := range good {
		wg.Go(func() { good[i] = post(client, standardHeaders(t, standardSecret, body, time.Now()), body) })
	}
	var peak int
	wg.Go(func() {
		for range 50 {
			peak = max(peak, runtime.NumGoroutine())
			time.Sleep(5 * time.Millisecond)
		}
	})
	wg.Wait()
	for i, code := range good {
		if code != 202 {
			t.Errorf("good request %d: %d", i, code)
		}
	}
	// 503: more than 8 of the flood's bodies at once from its address.
	if flood[401]+flood[429]+flood[503] != 1600 || flood[429] == 0 {
		t.Errorf("the flood's answers: %v", flood)
	}
	waitFor(t, func() bool {
		n := 0
		for _, d := range f.s.Deploys() {
			if d.done() {
				n++
			}
		}
		return n == len(f.s.Deploys())
	})
	if n := len(f.s.Deploys()); n > len(good) || n == 0 {
		t.Errorf("%d deploys recorded for %d good requests", n, len(good))
	}
	// Bounded: a goroutine per connection (the slow ones included), none
	// per failed request once answered; the heap holds no bodies.
	if peak-before > maxConns+100 {
		t.Errorf("goroutines: %d before, %d at the peak", before, peak)
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if m.HeapInuse > 64<<20 {
		t.Errorf("heap in use after the attack: %d MiB", m.HeapInuse>>20)
	}
	for _, c := range conns {
		c.Close()
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestMetricsWhileDeploysEnd: reading the metrics while deploys end and
// are superseded takes the queue's and the metrics' locks in one order.
func TestMetricsWhileDeploysEnd(t *testing.T) {
	f := newFixture(t, false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			f.get("/metrics")
		}
	}()
	body := `{"action":"redeploy","project":"demo"}`
	for range 30 {
		f.post("/hooks/standard", standardHeaders(t, standardSecret, body, time.Now()), body)
	}
	<-done
	waitFor(t, func() bool {
		for _, d := range f.s.Deploys() {
			if !d.done() {
				return false
			}
		}
		return true
	})
}

// TestSlowBodies: bodies that trickle in hold at most a few slots of one
// address; once they are gone, a signed request is served.
func TestSlowBodies(t *testing.T) {
	f := newFixture(t, false)
	addr := strings.TrimPrefix(f.url, "http://")
	var conns []net.Conn
	for range maxPerAddress {
		c, err := net.Dial("tcp", addr)
		must(t, err)
		_, err = c.Write([]byte("POST /hooks/github HTTP/1.1\r\nHost: deploy\r\nX-Hub-Signature-256: sha256=00\r\nContent-Length: 1000000\r\n\r\n{"))
		must(t, err)
		conns = append(conns, c)
	}
	body := `{"action":"redeploy","project":"demo"}`
	// The slow bodies are being read once their slots are taken.
	waitFor(t, func() bool {
		f.s.admitMu.Lock()
		defer f.s.admitMu.Unlock()
		return f.s.perAddress["127.0.0.1"].n == maxPerAddress
	})
	if a := f.post("/hooks/standard", standardHeaders(t, standardSecret, body, time.Now()), body); a.code != 503 {
		t.Errorf("a ninth request from the address: %d %s", a.code, a.raw)
	}
	f.s.admitMu.Lock()
	if f.s.reading != maxPerAddress*1000000 {
		t.Errorf("bytes reserved for the slow bodies: %d", f.s.reading)
	}
	f.s.admitMu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, func() bool {
		f.s.admitMu.Lock()
		defer f.s.admitMu.Unlock()
		return len(f.s.perAddress) == 0 && f.s.reading == 0
	})
	if a := f.post("/hooks/standard", standardHeaders(t, standardSecret, body, time.Now()), body); a.code != 202 {
		t.Errorf("after the slow bodies went: %d %s", a.code, a.raw)
	}
}

// TestAdmit: one address holds at most 32 MiB of the bodies being read,
// an IPv6 /64 is one address, and what is released is free again.
func TestAdmit(t *testing.T) {
	f := newFixture(t, false)
	release, why := f.s.admit("203.0.113.7", 25<<20)
	if why != "" {
		t.Fatal(why)
	}
	if _, why := f.s.admit("203.0.113.7", 25<<20); why == "" {
		t.Error("a second 25 MiB body from one address was admitted")
	}
	other, why := f.s.admit("198.51.100.1", 25<<20)
	if why != "" {
		t.Errorf("another address: %s", why)
	}
	other()
	v6, why := f.s.admit("2001:db8::1", 25<<20)
	if why != "" {
		t.Fatal(why)
	}
	if _, why := f.s.admit("2001:db8::2", 25<<20); why == "" {
		t.Error("a second address of the same /64 was admitted past the budget")
	}
	v6()
	release()
	release() // twice: counted once
	if again, why := f.s.admit("203.0.113.7", 25<<20); why != "" {
		t.Errorf("after release: %s", why)
	} else {
		again()
	}
	f.s.admitMu.Lock()
	defer f.s.admitMu.Unlock()
	if f.s.reading != 0 || len(f.s.perAddress) != 0 {
		t.Errorf("left reserved: %d bytes, %v", f.s.reading, f.s.perAddress)
	}
}
