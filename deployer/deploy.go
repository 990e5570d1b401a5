package deployer

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/deployer/compose"
	"github.com/semalink/deploy-action/deployer/health"
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
		return nil, err
	}
	rep = redact(rep, p.Secrets)
	if err := preflight(p, rep, p.Checks); err != nil {
		return nil, err
	}
	var results []Result
	err := eachHost(ctx, p, rep, func(h remote.Host) error {
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
// machine) and calls fn, stopping at the first error.
func eachHost(ctx context.Context, p *Plan, rep Reporter, fn func(remote.Host) error) error {
	if p.Local {
		return fn(remote.Local{})
	}
	for _, cfg := range p.Hosts {
		done := rep.Step("connect to " + cfg.Addr)
		h, err := remote.Dial(ctx, cfg)
		done(err)
		if err != nil {
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

// inspect connects the Engine API and compose on the host and reads the
// host's facts.
func inspect(ctx context.Context, p *Plan, h remote.Host, rep Reporter) (*target, system.Info, error) {
	done := rep.Step("inspect " + h.Name())
	t, info, err := func() (*target, system.Info, error) {
		ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
		defer cancel()
		docker, err := h.Docker(ctx)
		if err != nil {
			return nil, system.Info{}, err
		}
		info, err := docker.Info(ctx)
		if err != nil {
			docker.Close()
			return nil, info, fmt.Errorf("docker info: %w", err)
		}
		command, version, warning, err := compose.Detect(ctx, h)
		if err != nil {
			docker.Close()
			return nil, info, err
		}
		if warning != "" {
			rep.Warnf("%s", warning)
		}
		rep.Printf("Docker %s, Compose %s, %s memory, storage %s", info.ServerVersion, version, bytesHuman(info.MemTotal), info.Driver)
		t := &target{plan: p, host: h, docker: docker, rep: rep,
			compose: compose.CLI{Runner: h, Command: command, Version: version, Project: p.Name}}
		return t, info, nil
	}()
	done(err)
	return t, info, err
}

// session inspects the host and takes the project's deploy lock; end
// releases the lock and the Engine connection. The context it returns is
// cancelled, with errLockLost as its cause, if the lock is lost before
// end: whatever the session does from then on stops.
func session(ctx context.Context, p *Plan, h remote.Host, rep Reporter) (_ context.Context, t *target, info system.Info, end func(), err error) {
	if t, info, err = inspect(ctx, p, h, rep); err != nil {
		return ctx, nil, info, nil, err
	}
	ctx, unlock, err := t.lock(ctx)
	if err != nil {
		t.docker.Close()
		return ctx, nil, info, nil, err
	}
	return ctx, t, info, func() { unlock(); t.docker.Close() }, nil
}

// errLockLost is why a session's context ends when its lock is lost.
var errLockLost = errors.New("deploy lock lost: its process on the host ended before the deploy did (it was killed, or its connection dropped), " +
	"so another deploy may hold the lock now; stopped without changing more. See what runs with `deployer releases`")

// lockLost is errLockLost when ctx ended because its session's lock was lost.
func lockLost(ctx context.Context) error {
	if err := context.Cause(ctx); errors.Is(err, errLockLost) {
		return err
	}
	return nil
}

// lock takes the project's deploy lock on the host, waiting for another
// deploy up to the plan's lock timeout, and watches it: the context it
// returns ends if the lock is lost.
func (t *target) lock(ctx context.Context) (context.Context, func(), error) {
	p, rep := t.plan, t.rep
	done := rep.Step("lock")
	holder, _ := json.Marshal(map[string]any{"host": hostname(), "trigger": p.Trigger, "commit": p.Commit, "since": p.Now().UTC()})
	lock, err := t.host.Lock(ctx, path.Join(p.projectDir(), "deploy.lock"), holder, p.LockTimeout, func(by []byte) {
		rep.Printf("another deploy holds the lock: %s; waiting up to %s", describeHolder(by), p.LockTimeout)
	})
	done(err)
	if err != nil {
		return ctx, nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	unlocking := make(chan struct{})
	go func() {
		select {
		case <-lock.Lost():
			cancel(errLockLost)
		case <-unlocking:
		}
	}()
	if err := t.markInterrupted(ctx); err != nil {
		rep.Warnf("%v", err)
	}
	// A migration that an interrupted deploy ran may still run: the lock
	// is ours, so it is nobody's.
	if n, err := t.removeOneOffs(ctx); err != nil {
		rep.Warnf("%v", err)
	} else if n > 0 {
		rep.Printf("removed %d migration container(s) left by an interrupted deploy", n)
	}
	return ctx, func() {
		close(unlocking)
		cancel(nil)
		if err := lock.Unlock(); err != nil && lockLost(ctx) == nil {
			rep.Warnf("release the deploy lock: %v", err)
		}
	}, nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func describeHolder(b []byte) string {
	if bytes.Equal(b, remote.EndingHolder) {
		return string(b)
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil || len(m) == 0 {
		return "unknown holder"
	}
	var parts []string
	for _, k := range []string{"release", "trigger", "commit", "host", "since"} {
		if v, ok := m[k]; ok && fmt.Sprint(v) != "" {
			parts = append(parts, fmt.Sprintf("%s %v", k, v))
		}
	}
	return strings.Join(parts, ", ")
}

// current returns the live release's ID, "" on a first deploy.
func (t *target) current(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	out, err := t.host.Output(ctx, "readlink", path.Join(t.plan.projectDir(), "current"))
	if err != nil {
		var ee *remote.ExitError
		if errors.As(err, &ee) {
			return "", nil // no such link yet
		}
		return "", fmt.Errorf("read the live release: %w", err)
	}
	return path.Base(strings.TrimSpace(string(out))), nil
}

// upload writes the release: compose.yaml and .env in its directory (both
// 0600: they hold the resolved environment), the bind-mounted files of the
// project (0644: a container's own user reads them) under files/, and
// release.json.
func (t *target) upload(ctx context.Context, rel *Release) error {
	ctx, cancel := context.WithTimeout(ctx, uploadTimeout)
	defer cancel()
	b, err := render(t.plan.Project, t.plan.Name, t.plan.projectDir(), rel.Images, t.plan.Migrate)
	if err != nil {
		return err
	}
	rel.Secrets = secretHashes(t.plan.Project.Compose)
	if t.plan.Migrate != "" {
		rel.Migration = migrationID(t.plan.Project.Compose, t.plan.Migrate, rel.Images[t.plan.Migrate])
	}
	rel.Services = t.healthServices(ctx, rel.Images)
	for _, name := range slices.Sorted(maps.Keys(b.files)) {
		rel.Files = appendUnique(rel.Files, strings.Join(strings.SplitN(name, "/", 3)[:2], "/"))
		if err := t.host.WriteFile(ctx, path.Join(t.plan.projectDir(), name), b.files[name], 0o644); err != nil {
			return fmt.Errorf("upload %s: %w", name, err)
		}
	}
	env, err := envFile(releaseEnv(t.plan.Env))
	if err != nil {
		return err
	}
	dir := t.releaseDir(rel.ID)
	for name, data := range map[string][]byte{"compose.yaml": b.compose, ".env": env} {
		if err := t.host.WriteFile(ctx, path.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("upload %s: %w", name, err)
		}
	}
	return t.writeRelease(ctx, rel)
}

func appendUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func (t *target) writeRelease(ctx context.Context, rel *Release) error {
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	if err := t.host.WriteFile(ctx, path.Join(t.releaseDir(rel.ID), "release.json"), rel.marshal(), 0o600); err != nil {
		return fmt.Errorf("write release.json: %w", err)
	}
	return nil
}

// migrate runs the migration service once with the new images. Its output
// streams to the reporter; a failure or a timeout is the gate closing.
//
// A migration container outlives the compose command that runs it when
// that is killed: one this deploy gave up on is removed on the way out
// (one of an interrupted deploy, when the session starts).
func (t *target) migrate(ctx context.Context, rel *Release) error {
	ctx, cancel := context.WithTimeout(ctx, t.plan.MigrateTimeout)
	defer cancel()
	out := t.rep.Output()
	err := t.cli(rel.ID).RunOnce(ctx, t.plan.Migrate, out, out)
	if ctx.Err() != nil && lockLost(ctx) == nil {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), hostStepTimeout)
		defer cancel()
		if _, err := t.removeOneOffs(cleanup); err != nil {
			t.rep.Printf("warning: %v", err)
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("migration %s did not finish in %s", t.plan.Migrate, t.plan.MigrateTimeout)
	}
	if err != nil {
		return fmt.Errorf("migration %s failed: %w", t.plan.Migrate, err)
	}
	return nil
}

// removeOneOffs removes the project's one-off containers that a deploy
// ran (compose.RunLabel), running or not, and says how many there were.
// Those someone ran by hand are left alone.
func (t *target) removeOneOffs(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	list, err := t.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.compose.project="+t.plan.Name),
		filters.Arg("label", compose.RunLabel),
	)})
	if err != nil {
		return 0, fmt.Errorf("list the deploy's one-off containers: %w", err)
	}
	for _, c := range list {
		if err := t.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return 0, fmt.Errorf("remove the one-off container %s of %s: %w", c.ID[:12], c.Labels["com.docker.compose.service"], err)
		}
	}
	return len(list), nil
}

// migratedBy returns the live release when it ran the very same migration
// (same pinned image, command and environment), "" otherwise.
func (t *target) migratedBy(ctx context.Context, live string, rel *Release) string {
	if live == "" || rel.Migration == "" {
		return ""
	}
	old, err := t.readRelease(ctx, live)
	if err != nil || old.Migration != rel.Migration {
		return ""
	}
	return live
}

// migrationID identifies the migration service as it will run.
func migrationID(p *types.Project, service, image string) string {
	s, ok := p.Services[service]
	if !ok {
		return ""
	}
	s.Image, s.Build = image, nil
	b, err := json.Marshal(s)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// upAndWait starts a release and waits until every long-running service is
// healthy (or, without a healthcheck, stays up). The wait runs alongside
// up, so that a service is seen healthy on its own event even while up
// still holds a dependent back for it (condition: service_healthy).
func (t *target) upAndWait(ctx context.Context, id string) error {
	rel, err := t.readRelease(ctx, id)
	if err != nil {
		return err
	}
	var services []health.Service
	for _, s := range rel.Services {
		services = append(services, health.Service{Name: s.Name, Healthcheck: s.Healthcheck, Replicas: s.Replicas})
	}
	w, err := health.Start(ctx, t.docker, t.plan.Name)
	if err != nil {
		return err
	}
	defer w.Close()
	upStart := time.Now()
	upCtx, cancelUp := context.WithTimeout(ctx, upTimeout)
	defer cancelUp()
	waitCtx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	upDone := make(chan struct{})
	var upErr error
	go func() {
		defer close(upDone)
		if upErr = t.cli(id).Up(upCtx); upErr != nil {
			cancelWait()
		}
	}()
	_, err = w.Wait(waitCtx, services, health.Options{
		Timeout: t.plan.HealthTimeout,
		Settle:  t.plan.Settle,
		OnReady: func(r health.Result) {
			t.rep.Printf("%s healthy, %s after up began", r.Service, time.Since(upStart).Round(time.Millisecond))
		},
		UpDone: upDone,
	})
	if err != nil {
		// A rollback may come next: up is given time to end on its own
		// (it sees a failed dependency within a second) rather than be cut
		// off halfway through replacing a container, but not the minutes
		// a crash-looping dependency, never "unhealthy" to it, would hold it.
		const upGrace = 10 * time.Second
		select {
		case <-upDone:
		case <-time.After(upGrace):
			cancelUp()
		}
	}
	<-upDone
	var unhealthy *health.UnhealthyError
	if upErr != nil && !errors.As(err, &unhealthy) {
		return upErr // the wait was cancelled, or found nothing more precise
	}
	if errors.As(err, &unhealthy) && len(unhealthy.Logs) > 0 {
		t.rep.Printf("last lines of %s:", unhealthy.Service)
		out := t.rep.Output()
		for _, l := range unhealthy.Logs {
			fmt.Fprintln(out, l)
		}
	}
	return err
}

// healthServices lists what to wait for: every service but one-off jobs,
// with whether it (or its image) has a healthcheck.
func (t *target) healthServices(ctx context.Context, images map[string]string) []ServiceCheck {
	var out []ServiceCheck
	p := t.plan.Project.Compose
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if name == t.plan.Migrate || s.Restart == types.RestartPolicyNo || s.GetScale() == 0 {
			continue
		}
		hc := s.HealthCheck != nil && !s.HealthCheck.Disable && len(s.HealthCheck.Test) > 0 && s.HealthCheck.Test[0] != "NONE"
		if s.HealthCheck == nil {
			if img, err := t.docker.ImageInspect(ctx, images[name]); err == nil && img.Config != nil && img.Config.Healthcheck != nil {
				hc = len(img.Config.Healthcheck.Test) > 0 && img.Config.Healthcheck.Test[0] != "NONE"
			}
		}
		out = append(out, ServiceCheck{Name: name, Healthcheck: hc, Replicas: s.GetScale()})
	}
	return out
}

func (t *target) readRelease(ctx context.Context, id string) (*Release, error) {
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	b, err := t.host.ReadFile(ctx, path.Join(t.releaseDir(id), "release.json"))
	if err != nil {
		return nil, fmt.Errorf("read release %s: %w", id, err)
	}
	return parseRelease(b)
}

// rollback brings the previous release back after a failed start.
func (t *target) rollback(ctx context.Context, rel *Release, prev string, cause error) error {
	// The deploy's own context may be what failed (a Ctrl-C); the
	// rollback still needs to happen.
	lost := lockLost(ctx)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), upTimeout+t.plan.HealthTimeout+2*hostStepTimeout)
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
	done := t.rep.Step("roll back to " + prev)
	err := t.upAndWait(ctx, prev)
	done(err)
	t.finish(ctx, rel, StatusRolledBack, cause)
	if err != nil {
		return fmt.Errorf("%w; rolling back to %s failed too: %v", cause, prev, err)
	}
	return fmt.Errorf("%w; rolled back to %s, which is healthy", cause, prev)
}

// finish records how a release ended.
func (t *target) finish(ctx context.Context, rel *Release, status Status, cause error) {
	rel.Status, rel.Finished = status, t.plan.Now().UTC()
	if cause != nil {
		// Persisted, and shown by releases: the last lines of a failed
		// migration may hold what it was given.
		rel.Error = Redact(cause.Error(), t.plan.Secrets)
	}
	if err := t.writeRelease(ctx, rel); err != nil {
		t.rep.Warnf("%v", err)
	}
}

// commit points current at the new release and prunes old ones.
func (t *target) commit(ctx context.Context, rel *Release, prev string) error {
	if err := t.point(ctx, rel.ID); err != nil {
		return err
	}
	t.finish(ctx, rel, StatusLive, nil)
	if prev != "" {
		if old, err := t.readRelease(ctx, prev); err == nil {
			t.finish(ctx, old, StatusSuperseded, nil)
		}
	}
	return t.prune(ctx, rel.ID)
}

// point makes id the current release: a new symlink renamed over the old
// one, so current is never missing.
func (t *target) point(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	dir := t.plan.projectDir()
	tmp := path.Join(dir, ".current."+id)
	if err := t.host.Run(ctx, remote.Cmd{Args: []string{"ln", "-sfn", path.Join("releases", id), tmp}}); err != nil {
		return fmt.Errorf("point current at %s: %w", id, err)
	}
	if err := t.host.Run(ctx, remote.Cmd{Args: []string{"mv", "-T", tmp, path.Join(dir, "current")}}); err != nil {
		return fmt.Errorf("point current at %s: %w", id, err)
	}
	return nil
}

// prune removes releases beyond Keep, newest kept, and their images when
// no kept release uses them.
//
// The newest Keep releases that went live are kept (the live one among
// them), and apart from them the newest Keep of those that never did
// (failed, rolled back, interrupted): a run of failed deploys must not
// prune the last release that worked. What release.json names is removed
// only when it is the deployer's own: a carried-files directory of this
// project, an image tag of this project.
func (t *target) prune(ctx context.Context, live string) error {
	ctx, cancel := context.WithTimeout(ctx, pruneTimeout)
	defer cancel()
	ids, err := t.releaseIDs(ctx)
	if err != nil {
		return err
	}
	rels := map[string]*Release{}
	var good, other []string // newest first
	for _, id := range slices.Backward(ids) {
		rel, err := t.readRelease(ctx, id)
		if err != nil {
			other = append(other, id)
			continue
		}
		rels[id] = rel
		if id == live || rel.Status == StatusLive || rel.Status == StatusSuperseded {
			good = append(good, id)
		} else {
			other = append(other, id)
		}
	}
	var keep, drop []string
	for _, list := range [][]string{good, other} {
		n := min(len(list), t.plan.Keep)
		keep, drop = append(keep, list[:n]...), append(drop, list[n:]...)
	}
	if len(drop) == 0 {
		return nil
	}
	inUse := map[string]bool{}
	for _, id := range keep {
		if rel := rels[id]; rel != nil {
			for _, ref := range rel.Images {
				inUse[ref] = true
			}
			for _, f := range rel.Files {
				inUse[f] = true
			}
		}
	}
	slices.Sort(drop)
	for _, id := range drop {
		if id == live {
			continue
		}
		if rel := rels[id]; rel != nil {
			for _, ref := range rel.Images {
				if !inUse[ref] && ours(t.plan.Name, ref) {
					removeImage(ctx, t.docker, ref)
				}
			}
			for _, f := range rel.Files {
				if !inUse[f] && carriedDir.MatchString(f) {
					_ = t.host.Run(ctx, remote.Cmd{Args: []string{"rm", "-rf", "--", path.Join(t.plan.projectDir(), f)}})
				}
			}
		}
		if err := t.host.Run(ctx, remote.Cmd{Args: []string{"rm", "-rf", "--", t.releaseDir(id)}}); err != nil {
			return fmt.Errorf("prune release %s: %w", id, err)
		}
		t.rep.Printf("pruned release %s", id)
	}
	return nil
}

// ours tells whether an image reference is one the deployer made for the
// project: PROJECT-SERVICE:<12 hex>, and no other project's.
func ours(project, ref string) bool {
	rest, ok := strings.CutPrefix(ref, project+"-")
	svc, tag, _ := strings.Cut(rest, ":")
	return ok && pinnedTag.MatchString(tag) && svc != "" && !strings.ContainsAny(svc, "/:@")
}

var pinnedTag = regexp.MustCompile(`^[0-9a-f]{12}$`)

// carriedDir is how release.json names a directory of carried files.
var carriedDir = regexp.MustCompile(`^files/[0-9a-f]{16}$`)

// releaseIDs lists the releases on the host, oldest first.
func (t *target) releaseIDs(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	out, err := t.host.Output(ctx, "ls", "-1", path.Join(t.plan.projectDir(), "releases"))
	if err != nil {
		var ee *remote.ExitError
		if errors.As(err, &ee) {
			return nil, nil
		}
		return nil, fmt.Errorf("list releases: %w", err)
	}
	ids := strings.Fields(string(out))
	slices.Sort(ids)
	return ids, nil
}

// markInterrupted records releases whose deploy never finished: the lock
// is ours, so nobody is still working on them.
func (t *target) markInterrupted(ctx context.Context) error {
	ids, err := t.releaseIDs(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		rel, err := t.readRelease(ctx, id)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil && rel.Status == StatusPending {
			t.finish(ctx, rel, StatusInterrupted, errors.New("the deploy stopped before it finished"))
		}
	}
	return nil
}

func bytesHuman(n int64) string {
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
