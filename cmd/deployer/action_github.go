package main

import (
	"context"
	"fmt"
	"os"

	"github.com/semalink/deploy-action/deployer"
	"github.com/semalink/deploy-action/internal/ghdeploy"
	"github.com/sethvargo/go-githubactions"
)

// deployment is the GitHub Deployment a run reports to, when the
// github-token and environment inputs are given. Whatever GitHub answers,
// the deploy goes on: a refusal is a warning that says what to change.
type deployment struct {
	gha    *githubactions.Action
	c      *ghdeploy.Client
	id     int64
	url    string // the environment's, from the url input
	logURL string // the run's
}

// startDeployment creates the Deployment of ref in the environment and
// marks it in_progress; nil when Deployments are not asked for or GitHub
// refused.
func startDeployment(ctx context.Context, in inputs, task, ref string) *deployment {
	d := newDeployment(in)
	if d == nil {
		return nil
	}
	if ref == "" {
		in.gha.Warningf("GitHub Deployment: no commit to deploy is known (GITHUB_SHA is unset); none is made")
		return nil
	}
	var err error
	d.id, err = d.c.Start(ctx, ref, in.str("environment"), task, d.logURL)
	if err != nil {
		in.gha.Warningf("GitHub Deployment: %v; the deploy goes on", err)
	}
	if d.id == 0 {
		return nil
	}
	return d // created: its end is reported even if in_progress was refused
}

// newDeployment is a client for the run's repository; nil when the
// inputs do not ask for Deployments.
func newDeployment(in inputs) *deployment {
	token, env := in.secret("github-token"), in.str("environment")
	if token == "" || env == "" {
		return nil
	}
	c, err := ghdeploy.New(token, os.Getenv("GITHUB_API_URL"), os.Getenv("GITHUB_REPOSITORY"))
	if err != nil {
		in.gha.Warningf("GitHub Deployment: %v; none is made", err)
		return nil
	}
	return &deployment{gha: in.gha, c: c, url: in.str("url"), logURL: runURL()}
}

// post sets a state of Deployment id, warning when GitHub refuses.
func (d *deployment) post(ctx context.Context, id int64, state, description string) {
	url := ""
	if state == ghdeploy.Success {
		url = d.url
	}
	if err := d.c.Status(ctx, id, state, url, d.logURL, description); err != nil {
		d.gha.Warningf("GitHub Deployment: %v", err)
	}
}

// finishDeploy reports how a deploy or redeploy ended: success; failure
// when it ran on a host and failed (when it was rolled back and no host
// runs it, the restored release's Deployment is marked successful again);
// error when it changed nothing (checks, connection, build, lock).
func (d *deployment) finishDeploy(ctx context.Context, o outcome) {
	if d == nil {
		return
	}
	r, live, made := o.headline(), false, false
	for _, res := range o.results {
		live = live || res.Status == deployer.StatusLive
		made = made || res.Status != "" // a release was written on a host
	}
	switch st := o.status(); {
	case st == "live":
		d.post(ctx, d.id, ghdeploy.Success, "release "+r.Release+" is live")
	case st == "checks-failed":
		d.post(ctx, d.id, ghdeploy.Error, "the preflight checks failed; nothing changed")
	case !made:
		d.post(ctx, d.id, ghdeploy.Error, "stopped before any change: "+r.FailedStep)
	case st == "rolled-back" && !live:
		d.post(ctx, d.id, ghdeploy.Failure, fmt.Sprintf("release %s was unhealthy; rolled back to %s", r.Release, r.Previous))
		if r.PreviousDeployment != 0 {
			d.post(ctx, r.PreviousDeployment, ghdeploy.Success, "live again after a rollback")
		}
	default:
		d.post(ctx, d.id, ghdeploy.Failure, "failed at "+r.FailedStep+"; see the run")
	}
}

// finishRollback reports a rollback by hand on the Deployments the two
// releases recorded: the one left is a failure, the one restored a
// success again.
func finishRollback(ctx context.Context, in inputs, results []deployer.Result) {
	d := newDeployment(in)
	if d == nil {
		return
	}
	posted := map[int64]bool{}
	for _, r := range results {
		if r.Status != deployer.StatusLive {
			continue
		}
		if id := r.PreviousDeployment; id != 0 && id != r.Deployment && !posted[id] {
			posted[id] = true
			d.post(ctx, id, ghdeploy.Failure, "rolled back by hand to "+r.Release)
		}
		switch id := r.Deployment; {
		case id == 0:
			d.gha.Noticef("GitHub Deployment: release %s recorded none; the environment's Deployments are unchanged", r.Release)
		case !posted[id]:
			posted[id] = true
			d.post(ctx, id, ghdeploy.Success, "live again after a rollback by hand")
		}
	}
}
