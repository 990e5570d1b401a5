package deployer

import (
	"cmp"
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/deployer/compose"
	"github.com/semalink/deploy-action/deployer/remote"
)

// Step timeouts that are not the user's to set.
const (
	buildTimeout  = 30 * time.Minute
	uploadTimeout = 5 * time.Minute
	upTimeout     = 5 * time.Minute
	// hostStepTimeout bounds each of the small steps on a host (inspect,
	// compose detection, reading and pointing at releases, prune), so that
	// a host that stops answering without dropping the connection fails
	// the deploy instead of holding it.
	hostStepTimeout = 2 * time.Minute
	pruneTimeout    = 5 * time.Minute
)

// Run deploys the plan to each host in turn, stopping at the first
// failure: a host that does not turn healthy is rolled back and the hosts
// after it are not touched. It returns a Result for each host it reached,
// failed ones included.
func Run(ctx context.Context, plan *Plan, rep Reporter) ([]Result, error) {
	p := plan.withDefaults()
	if err := p.validate(); err != nil {
		return nil, configError(err)
	}
	rep = redact(rep, p.Secrets)
	if err := preflight(p, rep, p.Checks); err != nil {
		return nil, err
	}
	var results []Result
	unreached := func(name string, err error) {
		results = append(results, Result{Host: name, DryRun: p.DryRun, FailedStep: "connect to " + name, Error: Redact(err.Error(), p.Secrets)})
	}
	err := eachHost(ctx, p, rep, unreached, func(h remote.Host) error {
		res := Result{Host: h.Name(), DryRun: p.DryRun}
		err := deployTo(ctx, p, h, &recorder{Reporter: rep, res: &res, now: p.Now, secrets: p.Secrets}, &res)
		if err != nil {
			res.Error = Redact(err.Error(), p.Secrets)
		}
		results = append(results, res)
		return err
	})
	return results, err
}

// eachHost connects to the plan's hosts one at a time (or uses this
// machine) and calls fn, stopping at the first error; unreached, if not
// nil, hears of a host it could not connect to.
func eachHost(ctx context.Context, p *Plan, rep Reporter, unreached func(addr string, err error), fn func(remote.Host) error) error {
	if p.Local {
		return fn(remote.Local{})
	}
	for _, cfg := range p.Hosts {
		done := rep.Step("connect to " + cfg.Addr)
		h, err := remote.Dial(ctx, cfg)
		done(err)
		if err != nil {
			if unreached != nil {
				unreached(cfg.Addr, err)
			}
			return err
		}
		err = fn(h)
		h.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", h.Name(), err)
		}
	}
	return nil
}

// CheckFailed is a deploy stopped by preflight findings.
type CheckFailed struct{ Findings []checks.Finding }

func (e *CheckFailed) Error() string {
	var msgs []string
	for _, f := range e.Findings {
		msgs = append(msgs, fmt.Sprintf("%s: %s [%s]\n  fix: %s", f.Pos, f.Message, f.Rule, f.Fix))
	}
	return fmt.Sprintf("preflight checks failed; nothing on the host changed:\n%s", strings.Join(msgs, "\n"))
}

// preflight runs the checks; findings at the failing level stop the deploy
// before anything changes.
//
// The checks run again once the host's facts are known (its memory, the
// live release's secrets); a warning already shown is not shown again.
func preflight(p *Plan, rep Reporter, opts checks.Options) error {
	step := "preflight checks"
	if p.warned == nil {
		p.warned = map[string]bool{}
	} else {
		step += " with the host's facts"
	}
	done := rep.Step(step)
	var failing []checks.Finding
	for _, f := range checks.Run(p.Project, opts) {
		if f.Suppressed != nil {
			continue
		}
		switch key := fmt.Sprint(f.Pos, f.Rule, f.Message); {
		case f.Severity == checks.Error || (p.Strict && f.Severity == checks.Warning):
			failing = append(failing, f)
		case f.Severity == checks.Warning && !p.warned[key]:
			p.warned[key] = true
			rep.Warnf("%s: %s [%s]", f.Pos, f.Message, f.Rule)
		}
	}
	if len(failing) > 0 {
		err := &CheckFailed{Findings: failing}
		done(fmt.Errorf("%d finding(s) at the failing level", len(failing)))
		return err
	}
	done(nil)
	return nil
}

// target is one host during one deploy.
type target struct {
	plan    *Plan
	host    remote.Host
	docker  *client.Client
	compose compose.CLI // without files: each release brings its own
	rep     Reporter

	buildEngines []imageRemover // where this deploy's builds left their tags
	local        *client.Client // this machine's Engine, when it built the images
}

func (t *target) releaseDir(id string) string { return path.Join(t.plan.projectDir(), "releases", id) }

func (t *target) cli(id string) compose.CLI {
	c := t.compose
	c.Dir = t.releaseDir(id)
	c.Files = []string{path.Join(c.Dir, "compose.yaml")}
	return c
}

// deployTo deploys to one host, filling res as it goes.
func deployTo(ctx context.Context, p *Plan, h remote.Host, rep Reporter, res *Result) (err error) {
	if p.DryRun {
		return dryRun(ctx, p, h, rep, res)
	}
	ctx, t, info, end, err := session(ctx, p, h, rep)
	if err != nil {
		return err
	}
	defer end()
	defer func() {
		if lost := lockLost(ctx); lost != nil && err != nil {
			err = fmt.Errorf("%w (%v)", lost, err)
		}
	}()
	if err := hostPreflight(p, rep, info); err != nil {
		return err
	}
	// Named once the lock is ours: release IDs sort in the order the
	// releases were deployed.
	id := newReleaseID(p.Now(), p.Commit)

	prev, err := t.current(ctx)
	if err != nil {
		return err
	}
	if err := t.checkDrift(ctx, prev); err != nil {
		return err
	}
	rel := &Release{ID: id, Project: p.Name, Created: p.Now().UTC(), Trigger: p.Trigger, Commit: p.Commit, Status: StatusPending}
	rep.Printf("release %s", rel.ID)
	res.Release, res.Previous = rel.ID, prev
	defer func() { res.Status, res.Images = rel.Status, rel.Images }()

	done := rep.Step("images")
	bctx, cancel := context.WithTimeout(ctx, buildTimeout)
	rel.Images, err = t.images(bctx, rel)
	cancel()
	done(err)
	if err != nil {
		return err
	}

	done = rep.Step("upload release")
	err = t.upload(ctx, rel)
	done(err)
	if err != nil {
		return err
	}

	if p.Migrate != "" {
		done = rep.Step("migrate (" + p.Migrate + ")")
		if ran := t.migratedBy(ctx, prev, rel); ran != "" {
			rep.Printf("%s is unchanged since release %s, where it succeeded: not run again", p.Migrate, ran)
			res.Migration = "skipped"
			done(nil)
		} else {
			res.Migration = "ran"
			err = t.migrate(ctx, rel)
			done(err)
			if err != nil {
				t.finish(ctx, rel, StatusFailed, err)
				return fmt.Errorf("%w; the running version was left as it was", err)
			}
		}
	}

	done = rep.Step("start " + rel.ID)
	err = t.upAndWait(ctx, rel.ID)
	done(err)
	if err != nil {
		return t.rollback(ctx, rel, prev, err)
	}

	done = rep.Step("commit")
	err = t.commit(ctx, rel, prev)
	done(err)
	return err
}

// hostPreflight runs the checks again with the host's memory known, so
// that the limits are checked against it.
func hostPreflight(p *Plan, rep Reporter, info system.Info) error {
	if p.Checks.HostMemory != 0 || info.MemTotal == 0 {
		return nil
	}
	opts := p.Checks
	opts.HostMemory = info.MemTotal
	return preflight(p, rep, opts)
}

// dryRun inspects the host and checks what a deploy would, without the
// lock: it writes nothing there, not even the project's directory.
func dryRun(ctx context.Context, p *Plan, h remote.Host, rep Reporter, res *Result) error {
	t, info, err := inspect(ctx, p, h, rep)
	if err != nil {
		return err
	}
	defer t.docker.Close()
	if err := hostPreflight(p, rep, info); err != nil {
		return err
	}
	prev, err := t.current(ctx)
	if err != nil {
		return err
	}
	if err := t.checkDrift(ctx, prev); err != nil {
		return err
	}
	res.Previous = prev
	rep.Printf("dry run: would deploy %s to %s (live release: %s); nothing changed", p.Name, h.Name(), cmp.Or(prev, "none"))
	return nil
}
