package deployer

import (
	"cmp"
	"context"
	"fmt"
	"path"
	"time"

	"github.com/docker/docker/client"
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
	c := newChecker(p)
	var results []Result
	unreached := func(name string, err error) {
		results = append(results, Result{Host: name, DryRun: p.DryRun, FailedStep: "connect to " + name, Error: Redact(err.Error(), p.Secrets)})
	}
	err := eachHost(ctx, p, rep, unreached, func(h Host) error {
		res := Result{Host: h.Name(), DryRun: p.DryRun}
		err := deployTo(ctx, p, c, h, &recorder{Reporter: rep, res: &res, now: p.Now, secrets: p.Secrets}, &res, nil)
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
func eachHost(ctx context.Context, p *Plan, rep Reporter, unreached func(addr string, err error), fn func(Host) error) error {
	if p.Local {
		return fn(machine{remote.Local{}})
	}
	dial := p.connect
	if dial == nil {
		dial = connect
	}
	for _, cfg := range p.Hosts {
		done := rep.Step("connect to " + cfg.Addr)
		h, hangUp, err := dial(ctx, cfg)
		done(err)
		if err != nil {
			if unreached != nil {
				unreached(cfg.Addr, err)
			}
			return err
		}
		err = fn(h)
		hangUp()
		if err != nil {
			return fmt.Errorf("%s: %w", h.Name(), err)
		}
	}
	return nil
}

// target is one host during one deploy.
type target struct {
	plan     *Plan
	host     Host
	docker   Engine
	compose  compose.CLI // without files: each release brings its own
	rep      Reporter
	memory   int64  // the host's, as its Engine reports it
	platform string // the host's os/arch, which images built elsewhere are built for

	built   map[string]string // service → image ID on the host, of this deploy's builds
	shipped int64             // bytes this deploy sent to the host
	// buildTags are where this deploy's builds left their tags: on the
	// host, and on this machine when it built the images.
	buildTags []builtTag
	local     Engine // this machine's, when it built the images
	source    string // the commit the images come from, when not the plan's (a redeploy)

	// What the last start saw: when each service turned healthy, and the
	// last lines of one that did not.
	healthy map[string]time.Duration
	logs    []string
	swaps   []Swap
}

func (t *target) releaseDir(id string) string { return path.Join(t.plan.projectDir(), "releases", id) }

func (t *target) cli(id string) compose.CLI {
	c := t.compose
	c.Dir = t.releaseDir(id)
	c.Files = []string{path.Join(c.Dir, "compose.yaml")}
	return c
}

// rotation is what a rotate does around its deploy
// (RotateRabbitMQPassword).
type rotation interface {
	// prepare runs before the build: it reads, says what will change and
	// asks; in a dry run it is all that happens.
	prepare(ctx context.Context, t *target) error
	// apply runs under the lock, once the images are pinned.
	apply(ctx context.Context, t *target) error
}

// deployTo deploys to one host, filling res as it goes.
//
// In order: inspect the host (its facts), check the project once with
// them, build, take the lock, pin the images, make and upload the release,
// migrate, start it and wait for health, then commit it or roll back.
// Nothing on the host changes before the lock but the images the build
// adds.
func deployTo(ctx context.Context, p *Plan, c *checker, h Host, rep Reporter, res *Result, rot rotation) (err error) {
	t, err := inspect(ctx, p, h, rep)
	if err != nil {
		return err
	}
	defer t.close()
	defer func() { res.Shipped = t.shipped }()
	live, err := t.current(ctx)
	if err != nil {
		return err
	}
	res.Previous = live
	// The drift a rotation is about to fix is checked once it has run.
	var liveRel *Release
	if rot == nil {
		liveRel = t.liveRecord(ctx, live)
	}
	if err := c.run(rep, t.facts(ctx, liveRel, rot == nil)); err != nil {
		return err
	}
	if rot != nil {
		if err := rot.prepare(ctx, t); err != nil {
			return err
		}
	}
	if p.DryRun {
		rep.Printf("dry run: would deploy %s to %s (live release: %s); nothing changed", p.Name, h.Name(), cmp.Or(live, "none"))
		return nil
	}

	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hostStepTimeout)
		defer cancel()
		t.dropBuildTags(ctx)
	}()
	if !p.Redeploy {
		if err := t.buildAll(ctx); err != nil {
			return err
		}
	}

	ctx, unlock, err := t.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	defer func() {
		if lost := lockLost(ctx); lost != nil && err != nil {
			err = fmt.Errorf("%w (%v)", lost, err)
		}
	}()
	prev, err := t.current(ctx)
	if err != nil {
		return err
	}
	if p.Redeploy {
		if err := t.liveImages(ctx, prev); err != nil {
			return err
		}
	}
	// Read again: another deploy may have gone live, or a rotation
	// recorded a new password, while this one built.
	prevRel := t.liveRecord(ctx, prev)
	if rot == nil {
		if err := t.recheckDrift(ctx, c, rep, prevRel); err != nil {
			return err
		}
	}
	// Named once the lock is ours: release IDs sort in the order the
	// releases were deployed.
	commit := cmp.Or(t.source, p.Commit)
	rel := &Release{ID: newReleaseID(p.Now(), commit), Project: p.Name, Created: p.Now().UTC(), Trigger: p.Trigger, Commit: commit,
		Actor: p.Actor, RunURL: p.RunURL, Deployment: p.Deployment, Status: StatusPending}
	rep.Printf("release %s", rel.ID)
	res.Release, res.Previous, res.Deployment = rel.ID, prev, p.Deployment
	if prevRel != nil {
		res.PreviousDeployment = prevRel.Deployment
	}
	defer func() { res.Status = rel.Status }()

	done := rep.Step("images")
	res.Images, err = t.images(ctx, rel)
	done(err)
	if err != nil {
		return err
	}
	if rot != nil {
		if err := rot.apply(ctx, t); err != nil {
			return err
		}
		prevRel = t.liveRecord(ctx, prev) // the rotation recorded the new password in it
		if err := t.recheckDrift(ctx, c, rep, prevRel); err != nil {
			return err
		}
	}

	done = rep.Step("upload release")
	err = t.upload(ctx, rel)
	done(err)
	if err != nil {
		t.finish(ctx, rel, StatusFailed, err)
		return fmt.Errorf("%w; the running version was left as it was", err)
	}

	if p.Migrate != "" {
		done = rep.Step("migrate (" + p.Migrate + ")")
		if ran := migratedBy(prevRel, rel); ran != "" {
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
	res.Healthy, res.Swaps, rel.Swaps = t.healthy, t.swaps, t.swaps
	for _, l := range t.logs {
		res.Logs = append(res.Logs, Redact(l, p.Secrets))
	}
	done(err)
	if err != nil {
		return t.rollback(ctx, rel, prev, err)
	}

	done = rep.Step("commit")
	err = t.commit(ctx, rel, prev)
	done(err)
	return err
}

// localEngine connects this machine's Docker Engine, where images built
// away from the host land before they are shipped.
func localEngine() (Engine, error) {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("connect this machine's Docker Engine: %w", err)
	}
	return c, nil
}
