package deployer

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
)

// rollback brings the previous release back after a failed start.
func (t *target) rollback(ctx context.Context, rel *Release, prev string, cause error) error {
	// The deploy's own context may be what failed (a Ctrl-C); the
	// rollback still needs to happen.
	lost := lockLost(ctx)
	// A start-first swap back takes as long again, per batch.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), upTimeout+t.plan.HealthTimeout+2*hostStepTimeout+t.swapBudget(prev))
	defer cancel()
	switch {
	case lost != nil:
		// Not ours to change any more: another deploy may be at work.
		t.finish(ctx, rel, StatusFailed, cause)
		return cause
	case t.plan.NoRollback:
		t.finish(ctx, rel, StatusFailed, cause)
		return fmt.Errorf("%w; left running because of --no-rollback", cause)
	case prev == "":
		t.finish(ctx, rel, StatusFailed, cause)
		return fmt.Errorf("%w; there is no previous release to roll back to", cause)
	}
	// The previous release's .env may hold values this plan no longer
	// has (a password before its rotation): its logs are hidden by them.
	secrets := t.releaseSecrets(ctx, prev)
	t.rep = redact(t.rep, secrets)
	done := t.rep.Step("roll back to " + prev)
	err := t.upAndWait(ctx, prev)
	done(err)
	if err != nil {
		// Neither serves as it should: not "rolled back".
		t.finish(ctx, rel, StatusFailed, cause)
		err = fmt.Errorf("%w; rolling back to %s failed too: %v", cause, prev, err)
		return redactedError{msg: Redact(err.Error(), secrets), err: err}
	}
	t.finish(ctx, rel, StatusRolledBack, cause)
	return fmt.Errorf("%w; rolled back to %s, which is healthy", cause, prev)
}

// Rollback brings back an earlier release on each host: the one named by
// to, or the one that was live before the current one. It waits for it to
// be healthy before pointing current at it. The Results say, per host, the
// release brought back (Release) and the one it replaced (Previous).
func Rollback(ctx context.Context, plan *Plan, to string, rep Reporter) ([]Result, error) {
	p := plan.withDefaults()
	if err := p.validateTarget(); err != nil {
		return nil, err
	}
	rep = redact(rep, p.Secrets)
	var results []Result
	unreached := func(name string, err error) {
		results = append(results, Result{Host: name, FailedStep: "connect to " + name, Error: Redact(err.Error(), p.Secrets)})
	}
	err := eachHost(ctx, p, rep, unreached, func(h Host) error {
		res := Result{Host: h.Name()}
		var secrets []string
		err := rollbackOn(ctx, p, h, to, &recorder{Reporter: rep, res: &res, now: p.Now, secrets: p.Secrets}, &res, &secrets)
		if err != nil {
			err = redactedError{msg: Redact(err.Error(), secrets), err: err}
			res.Error = err.Error()
		}
		results = append(results, res)
		return err
	})
	return results, err
}

// rollbackOn rolls one host back, filling res; secrets get what the
// error must hide.
func rollbackOn(ctx context.Context, p *Plan, h Host, to string, rep Reporter, res *Result, secrets *[]string) (err error) {
	*secrets = p.Secrets
	ctx, t, end, err := session(ctx, p, h, rep)
	if err != nil {
		return err
	}
	defer end()
	cur, err := t.current(ctx)
	if err != nil {
		return err
	}
	res.Previous = cur
	id, err := t.rollbackTarget(ctx, cur, to)
	if err != nil {
		return err
	}
	res.Release = id
	// A rollback has no env files of its own: the two releases' .env on
	// the host say what to hide, in its output and in its error (which
	// may quote a container's last log lines).
	*secrets = append(t.releaseSecrets(ctx, cur, id), p.Secrets...)
	rep = redact(rep, *secrets)
	withSecrets := *p // this host's copy: other hosts learn their own
	withSecrets.Secrets = *secrets
	t.rep, t.plan = rep, &withSecrets
	done := rep.Step(fmt.Sprintf("roll back from %s to %s", cur, id))
	err = t.upAndWait(ctx, id)
	done(err)
	if err != nil {
		if lost := lockLost(ctx); lost != nil {
			return fmt.Errorf("%w (%v)", lost, err)
		}
		if cur != "" {
			rep.Printf("bringing %s back", cur)
			if err2 := t.upAndWait(context.WithoutCancel(ctx), cur); err2 != nil {
				return fmt.Errorf("%w; and %s did not come back either: %v", err, cur, err2)
			}
		}
		return fmt.Errorf("release %s is not healthy: %w; %s still serves", id, err, cur)
	}
	rel, err := t.readRelease(ctx, id)
	if err != nil {
		return err
	}
	if err := t.point(ctx, id); err != nil {
		return err
	}
	t.finish(ctx, rel, StatusLive, nil)
	res.Status, res.Deployment = StatusLive, rel.Deployment
	res.Images = map[string]Image{}
	for svc, ref := range rel.Images {
		img := Image{Ref: ref}
		if in, err := t.docker.ImageInspect(ctx, ref); err == nil {
			img.ID, img.Size = in.ID, in.Size
		}
		res.Images[svc] = img
	}
	if old, err := t.readRelease(ctx, cur); err == nil {
		res.PreviousDeployment = old.Deployment
		t.finish(ctx, old, StatusRolledBack, errors.New("rolled back by hand to "+id))
	}
	rep.Printf("%s is live again", id)
	return nil
}

// releaseSecrets are the values of the releases' .env files on the host:
// what a command that has no env files of its own must hide.
func (t *target) releaseSecrets(ctx context.Context, ids ...string) []string {
	var out []string
	for _, id := range ids {
		if id == "" {
			continue
		}
		data, err := t.host.ReadFile(ctx, path.Join(t.releaseDir(id), ".env"))
		if err != nil {
			continue
		}
		vars, err := readEnvFile(data)
		if err != nil {
			continue
		}
		for _, v := range vars {
			out = append(out, v)
		}
	}
	return out
}

// rollbackTarget picks the release to go back to: the one asked for, or
// the newest release before the current one that was live.
func (t *target) rollbackTarget(ctx context.Context, cur, to string) (string, error) {
	ids, err := t.releaseIDs(ctx)
	if err != nil {
		return "", err
	}
	if to != "" {
		if !slices.Contains(ids, to) {
			return "", fmt.Errorf("no release %s on %s: `deployer releases` lists them", to, t.host.Name())
		}
		if to == cur {
			return "", fmt.Errorf("release %s is already live", to)
		}
		return to, nil
	}
	for i := len(ids) - 1; i >= 0; i-- {
		if ids[i] >= cur && cur != "" {
			continue
		}
		if rel, err := t.readRelease(ctx, ids[i]); err == nil && rel.Status == StatusSuperseded {
			return ids[i], nil
		}
	}
	return "", fmt.Errorf("no earlier release that was live on %s: name one with --to (see `deployer releases`)", t.host.Name())
}

// validateTarget checks what commands that only read or roll back need.
func (p *Plan) validateTarget() error {
	switch {
	case !projectName.MatchString(p.Name):
		return fmt.Errorf("project name %q: give --project NAME (or the Compose file with name:)", p.Name)
	case !p.Local && len(p.Hosts) == 0:
		return errors.New("no host: give --host USER@HOST with --known-hosts or --host-fingerprint, or --local")
	}
	return nil
}
