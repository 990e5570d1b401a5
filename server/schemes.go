package server

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/go-github/v62/github"
)

// hookGitHub is POST /hooks/github.
type hookGitHub struct{ s *Server }

func (hookGitHub) name() string { return SchemeGitHub }
func (hookGitHub) limit() int64 { return maxGitHubBody }
func (hookGitHub) signed(h http.Header) bool {
	return h.Get(github.SHA256SignatureHeader) != ""
}

func (k hookGitHub) verify(h http.Header, body []byte) (string, error) {
	if err := VerifyGitHub(values(k.s.cfg.Hooks.GitHub.Secrets), h, body); err != nil {
		return "", err
	}
	// GitHub signs no ID: the body is the delivery's key (its
	// signature's hex could be written in other cases).
	return "github " + bodyHash(body), nil
}

func (k hookGitHub) decide(r *http.Request, body []byte) verdict {
	g, s := k.s.cfg.Hooks.GitHub, k.s
	event := github.WebHookType(r)
	if !slices.Contains([]string{"ping", "push", "workflow_run", "deployment"}, event) {
		return ignore("event " + strconvQuote(event) + " does not deploy")
	}
	if event != "ping" {
		// The repository first, from a small decode: a signed event from
		// a repository that may not deploy is refused without decoding
		// all of it (a push event is mostly its commits).
		var head struct {
			Repository struct {
				FullName string `json:"full_name"`
			} `json:"repository"`
			Sender struct {
				Login string `json:"login"`
			} `json:"sender"`
		}
		if json.Unmarshal(body, &head) == nil && !slices.Contains(g.Repositories, head.Repository.FullName) {
			v := deny(http.StatusForbidden, vForbidden, "repository "+strconvQuote(head.Repository.FullName)+" is not one of hooks.github.repositories")
			v.entry = Entry{Event: event, Sender: head.Sender.Login, Project: g.Project}
			return v
		}
	}
	payload, err := github.ParseWebHook(event, body)
	if err != nil {
		return deny(http.StatusBadRequest, vBadRequest, "the "+event+" payload does not parse as GitHub's JSON")
	}
	var (
		repo   *github.Repository
		sender *github.User
		d      = &Deploy{Project: g.Project, Action: "deploy", Event: event}
	)
	switch e := payload.(type) {
	case *github.PingEvent:
		return verdict{code: http.StatusOK, verdict: vIgnored, reason: "ping", reply: map[string]string{"ok": "pong"}, entry: Entry{Event: event}}
	case *github.PushEvent:
		repo, sender = pushRepo(e.GetRepo()), e.GetSender()
		branch, isBranch := strings.CutPrefix(e.GetRef(), "refs/heads/")
		d.Ref, d.Forward = e.GetAfter(), true
		v := k.allow(repo, sender, d)
		if v.code != 0 {
			return v
		}
		switch {
		case !isBranch:
			return ignore("a push of " + e.GetRef() + ", not of a branch")
		case e.GetDeleted():
			return ignore("branch " + branch + " was deleted")
		case !slices.Contains(k.branches(), branch):
			return deny(http.StatusForbidden, vForbidden, "branch "+branch+" is not one of hooks.github.branches")
		}
	case *github.WorkflowRunEvent:
		repo, sender = e.GetRepo(), e.GetSender()
		run := e.GetWorkflowRun()
		d.Ref, d.Forward = run.GetHeadSHA(), true
		if v := k.allow(repo, sender, d); v.code != 0 {
			return v
		}
		switch {
		case e.GetAction() != "completed" || run.GetConclusion() != "success":
			return ignore("workflow run " + e.GetAction() + " " + run.GetConclusion() + ": only a completed, successful run deploys")
		case run.GetEvent() != "push" || run.GetHeadRepository().GetFullName() != repo.GetFullName():
			// A pull request's run (from a fork, on a branch named
			// main) is no push to main.
			return ignore("a workflow run for " + strconvQuote(run.GetEvent()) + " from " + strconvQuote(run.GetHeadRepository().GetFullName()) + ": only runs for pushes to the repository itself deploy")
		case !slices.Contains(k.branches(), run.GetHeadBranch()):
			return deny(http.StatusForbidden, vForbidden, "branch "+run.GetHeadBranch()+" is not one of hooks.github.branches")
		}
	case *github.DeploymentEvent:
		repo, sender = e.GetRepo(), e.GetSender()
		dep := e.GetDeployment()
		d.Ref = cmp.Or(dep.GetSHA(), dep.GetRef())
		d.Repository, d.Deployment = repo.GetFullName(), dep.GetID()
		if v := k.allow(repo, sender, d); v.code != 0 {
			return v
		}
		if len(g.Environments) > 0 && !slices.Contains(g.Environments, dep.GetEnvironment()) {
			return ignore("environment " + strconvQuote(dep.GetEnvironment()) + " is not one of hooks.github.environments")
		}
		// GitHub signs no time: a Deployment older than the replay
		// window is a captured delivery played again (or a late
		// redelivery), which would take production back to its ref.
		if age := s.now().Sub(dep.GetCreatedAt().Time); age > replayWindow || age < -time.Minute {
			return ignore("the Deployment was created more than " + replayWindow.String() + " ago: create a new one to deploy")
		}
	default:
		return ignore("event " + event + " does not deploy")
	}
	if v, ok := s.request(d.Action, d.Project, d.Ref, ""); !ok {
		v.entry = entryOf(d, event)
		return v
	}
	return verdict{deploy: d, entry: entryOf(d, event)}
}

// allow checks the repository; it fills the deploy's sender. A zero
// verdict allows.
func (k hookGitHub) allow(repo *github.Repository, sender *github.User, d *Deploy) verdict {
	d.Sender = sender.GetLogin()
	if !slices.Contains(k.s.cfg.Hooks.GitHub.Repositories, repo.GetFullName()) {
		v := deny(http.StatusForbidden, vForbidden, "repository "+strconvQuote(repo.GetFullName())+" is not one of hooks.github.repositories")
		v.entry = entryOf(d, d.Event)
		return v
	}
	return verdict{}
}

// branches are the branches whose pushes and runs deploy: the hook's,
// or the project's source branch.
func (k hookGitHub) branches() []string {
	g := k.s.cfg.Hooks.GitHub
	if len(g.Branches) > 0 {
		return g.Branches
	}
	return []string{k.s.cfg.Projects[g.Project].Source.branch()}
}

// pushRepo is a push event's repository (a type of its own in go-github).
func pushRepo(r *github.PushEventRepository) *github.Repository {
	return &github.Repository{FullName: github.String(r.GetFullName())}
}

// hookSlack is POST /hooks/slack: slash commands.
type hookSlack struct{ s *Server }

func (hookSlack) name() string { return SchemeSlack }
func (hookSlack) limit() int64 { return maxBody }
func (hookSlack) signed(h http.Header) bool {
	return h.Get("X-Slack-Signature") != "" && h.Get("X-Slack-Request-Timestamp") != ""
}

func (k hookSlack) verify(h http.Header, body []byte) (string, error) {
	if err := VerifySlack(values(k.s.cfg.Hooks.Slack.Secrets), h, body, k.s.now()); err != nil {
		return "", err
	}
	return "slack " + h.Get("X-Slack-Request-Timestamp") + " " + bodyHash(body), nil
}

func (k hookSlack) decide(r *http.Request, body []byte) verdict {
	sl, s := k.s.cfg.Hooks.Slack, k.s
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return deny(http.StatusBadRequest, vBadRequest, "the body is not a Slack slash command's form")
	}
	team, channel, user := form.Get("team_id"), form.Get("channel_id"), form.Get("user_id")
	words := strings.Fields(form.Get("text"))
	e := Entry{Sender: user}
	if len(words) > 0 {
		e.Action = words[0]
	}
	if len(words) > 1 {
		e.Project = words[1]
	}
	forbid := func(what string) verdict {
		v := deny(http.StatusForbidden, vForbidden, what+" may not deploy: see hooks.slack")
		v.entry = e
		return v
	}
	switch {
	case !allowed(sl.Teams, team) || team == "":
		return forbid("team " + strconvQuote(team))
	case !allowed(sl.Channels, channel):
		return forbid("channel " + strconvQuote(channel))
	case !allowed(sl.Users, user):
		return forbid("user " + strconvQuote(user))
	case len(words) > 0 && words[0] != "status" && !allowed(sl.Actions, words[0]):
		return forbid("action " + strconvQuote(words[0]))
	case len(words) > 1 && !allowed(sl.Projects, words[1]):
		return forbid("project " + strconvQuote(words[1]))
	}
	usage := "usage: deploy|redeploy|rollback|status PROJECT [REF|RELEASE]"
	if len(words) < 2 || len(words) > 3 || !slices.Contains([]string{"deploy", "redeploy", "rollback", "status"}, words[0]) {
		v := deny(http.StatusBadRequest, vBadRequest, usage)
		v.reply = map[string]string{"response_type": "ephemeral", "text": usage}
		v.entry = e
		return v
	}
	d := &Deploy{Action: words[0], Project: words[1], Sender: user, respond: form.Get("response_url")}
	if d.respond != "" && !slices.ContainsFunc(sl.ResponseURLs, func(p string) bool { return strings.HasPrefix(d.respond, p) }) {
		d.respond = "" // posted nowhere but Slack (hooks.slack.response-urls)
	}
	if len(words) == 3 {
		switch d.Action {
		case "deploy":
			d.Ref = words[2]
		case "rollback":
			d.Release = words[2]
		default:
			return deny(http.StatusBadRequest, vBadRequest, usage)
		}
	}
	e.Ref, e.Release = d.Ref, d.Release
	if v, ok := s.request(cmp.Or(map[string]string{"status": "redeploy"}[d.Action], d.Action), d.Project, d.Ref, d.Release); !ok {
		v.reply = map[string]string{"response_type": "ephemeral", "text": v.reason}
		v.entry = e
		return v
	}
	if d.Action == "status" {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second) // Slack waits 3
		defer cancel()
		text, err := s.status(ctx, d.Project)
		if err != nil {
			text = "status of " + d.Project + ": " + err.Error()
		}
		return verdict{code: http.StatusOK, verdict: vAnswered, entry: e,
			reply: map[string]string{"response_type": "ephemeral", "text": text + s.recent(d.Project)}}
	}
	return verdict{deploy: d, entry: e}
}

// recent is a project's last deploys, for a status answer.
func (s *Server) recent(project string) string {
	var b strings.Builder
	n := 0
	for _, d := range s.queue.List() {
		if d.Project != project {
			continue
		}
		if n++; n > 5 {
			break
		}
		fmt.Fprintf(&b, "\n%s %s %s %s by %s", d.ID, d.Action, cmp.Or(d.Ref, d.Release), d.Status, orUnknown(d.Sender))
	}
	return b.String()
}

// respond posts a message to a Slack response_url.
func (s *Server) respond(ctx context.Context, to, text string) {
	b, _ := json.Marshal(map[string]string{"response_type": "in_channel", "text": text})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, to, bytes.NewReader(b))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.post.Do(req)
	if err != nil {
		// Its path is a credential to the channel: the host only.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		s.log.Warn("Slack response_url", "host", req.URL.Host, "error", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		s.log.Warn("Slack response_url", "host", req.URL.Host, "status", resp.Status)
	}
}

// hookStandard is POST /hooks/standard.
type hookStandard struct{ s *Server }

// StandardRequest is the body of a Standard Webhooks request.
type StandardRequest struct {
	Action  string `json:"action"`
	Project string `json:"project"`
	Ref     string `json:"ref,omitempty"`
	Release string `json:"release,omitempty"`
	Sender  string `json:"sender,omitempty"` // who asked, as the signer says: recorded, not checked
}

func (hookStandard) name() string { return SchemeStandard }
func (hookStandard) limit() int64 { return maxBody }
func (hookStandard) signed(h http.Header) bool {
	return h.Get("webhook-id") != "" && h.Get("webhook-timestamp") != "" && h.Get("webhook-signature") != ""
}

func (k hookStandard) verify(h http.Header, body []byte) (string, error) {
	keys := make([]string, len(k.s.cfg.Hooks.Standard.Secrets))
	for i, sec := range k.s.cfg.Hooks.Standard.Secrets {
		keys[i] = string(sec.value)
	}
	id, err := VerifyStandard(keys, h, body, k.s.now())
	// The ID with the body: two senders' msg_1 are not one delivery.
	return "standard " + id + " " + bodyHash(body), err
}

func (k hookStandard) decide(r *http.Request, body []byte) verdict {
	st, s := k.s.cfg.Hooks.Standard, k.s
	var req StandardRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		return deny(http.StatusBadRequest, vBadRequest, `the body is not {"action": …, "project": …, "ref": …, "release": …}`)
	}
	e := Entry{Sender: truncate(req.Sender, 100), Action: req.Action, Project: req.Project, Ref: req.Ref, Release: req.Release}
	if len(req.Sender) > 100 || strings.ContainsAny(req.Sender, "\r\n") {
		v := deny(http.StatusBadRequest, vBadRequest, "sender: one line of at most 100 bytes")
		v.entry = e
		return v
	}
	switch {
	case !slices.Contains(Actions, req.Action):
		v := deny(http.StatusBadRequest, vBadRequest, "action: give deploy, redeploy or rollback")
		v.entry = e
		return v
	case !slices.Contains(st.Actions, req.Action):
		v := deny(http.StatusForbidden, vForbidden, "action "+req.Action+" is not one of hooks.standard.actions")
		v.entry = e
		return v
	case !slices.Contains(st.Projects, req.Project):
		v := deny(http.StatusForbidden, vForbidden, "project "+strconvQuote(req.Project)+" is not one of hooks.standard.projects")
		v.entry = e
		return v
	case req.Ref != "" && req.Action != "deploy", req.Release != "" && req.Action != "rollback":
		v := deny(http.StatusBadRequest, vBadRequest, "ref goes with deploy, release with rollback")
		v.entry = e
		return v
	}
	if v, ok := s.request(req.Action, req.Project, req.Ref, req.Release); !ok {
		v.entry = e
		return v
	}
	return verdict{deploy: &Deploy{Action: req.Action, Project: req.Project, Ref: req.Ref, Release: req.Release, Sender: e.Sender}, entry: e}
}

func bodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

func entryOf(d *Deploy, event string) Entry {
	return Entry{Sender: d.Sender, Event: event, Action: d.Action, Project: d.Project, Ref: d.Ref, Release: d.Release}
}

// strconvQuote quotes what a request said, cut to a readable length.
func strconvQuote(s string) string {
	return fmt.Sprintf("%q", truncate(s, 100))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
