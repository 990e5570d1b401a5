package health

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
)

// Defaults for Options.
const (
	DefaultTimeout = 2 * time.Minute
	DefaultSettle  = 10 * time.Second
)

// pollEvery is how often Wait looks at the containers itself, in case an
// event was lost; events, not this, are what make it quick.
const pollEvery = 3 * time.Second

// Service is one service to wait for.
type Service struct {
	Name string
	// Healthcheck says whether the service has a healthcheck. When the
	// Engine says otherwise about a container (an image's HEALTHCHECK, or
	// none at all), the container's own configuration wins.
	Healthcheck bool
	// Replicas is how many containers must be ready; 0 means 1. Leave a
	// service scaled to zero out.
	Replicas int
}

// Options tune Wait.
type Options struct {
	// Timeout is how long each service has to become ready once up has
	// returned (from the start of Wait, without UpDone); default
	// DefaultTimeout.
	Timeout time.Duration
	// Settle is how long a container without a healthcheck must stay
	// running, without a restart, to be ready; default DefaultSettle.
	Settle time.Duration
	// OnReady, if set, is called as each service becomes ready.
	OnReady func(Result)
	// UpDone, if set, lets Wait run while `compose up` does: close it once
	// up has returned. Until then only the containers created since Start
	// count: a service is ready as soon as its new containers are, and
	// their failures fail it at once, while the containers that were there
	// before (which up may be stopping to replace) are judged only by
	// their state once up has returned. Without it, up has returned
	// before Wait is called.
	UpDone <-chan struct{}
}

// Result is how one service ended.
type Result struct {
	Service string
	Took    time.Duration // from the start of Wait
	Healthy bool          // ready; false when it failed or timed out
	Reason  string        // "healthy", "running for 10s", or what went wrong
	Logs    []string      // the failed container's last log lines
}

// UnhealthyError is a service that failed or did not become ready in time.
type UnhealthyError struct {
	Service  string
	Reason   string   // "not healthy after 2m0s: last check said: connection refused", "exited with code 1", "restarted"
	TimedOut bool     // it did not become ready in time, rather than failing
	Logs     []string // the container's last log lines, oldest first
}

func (e *UnhealthyError) Error() string { return e.Service + " " + e.Reason }

// logLines is how many of a failed container's log lines are kept.
const logLines = 20

// Wait waits until every service is ready, one fails, or the timeout
// passes. It returns the results of the services that became ready (and
// the one that failed), and for a failure or a timeout an *UnhealthyError.
// A cancelled ctx returns ctx.Err(), wrapped.
//
// Call it after `compose up` has returned, or while up runs with
// Options.UpDone: the project's containers once up has returned are the
// ones waited for, but a service whose new containers are ready before
// that is reported at once. A service that becomes ready is still watched
// until Wait returns, which is never before up has; one Wait at a time
// per Watch.
func (w *Watch) Wait(ctx context.Context, services []Service, o Options) ([]Result, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Settle <= 0 {
		o.Settle = DefaultSettle
	}
	wt := &waiter{
		w:      w,
		o:      o,
		begin:  time.Now(),
		byName: map[string]*service{},
		ctrs:   map[string]*ctr{},
		gone:   map[string]bool{},
	}
	if o.UpDone == nil {
		wt.upReturned(wt.begin)
	}
	for _, s := range services {
		sv := &service{Service: s}
		wt.svcs = append(wt.svcs, sv)
		wt.byName[s.Name] = sv
	}
	err := wt.run(ctx)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("wait for health: %w", ctx.Err())
	}
	return wt.results(), err
}

type waiter struct {
	w               *Watch
	o               Options
	begin, deadline time.Time // no deadline until up has returned
	returned        bool      // up has returned
	settled         bool      // and the containers have been looked at since
	svcs            []*service
	byName          map[string]*service
	ctrs            map[string]*ctr
	gone            map[string]bool // containers found removed
	cursor          int             // events read
	resyncs         int
	nextPoll        time.Time
}

type service struct {
	Service
	result  *Result
	culprit *ctr // the container that failed it
}

// ctr is one of a service's containers, as far as Wait knows.
type ctr struct {
	id, name  string
	svc       *service
	old       bool // it was there before up, which may replace it
	health    bool // it has a healthcheck
	tty       bool
	restarts  int   // its restart count when the deploy started
	startedAt int64 // when its current run started, Engine clock, ns; 0 if it never ran
	running   bool
	since     time.Time // running since, by this host's clock
	exact     bool      // since is when its start event arrived here
	healthy   bool
	oom       bool
}

func (wt *waiter) run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for first := true; ; first = false {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !wt.returned {
			select {
			case <-wt.o.UpDone:
				wt.upReturned(time.Now())
			default:
			}
		}
		evs, resyncs, streamErr := wt.w.next(wt.cursor)
		wt.cursor += len(evs)
		settle := wt.returned && !wt.settled
		if first || settle || resyncs != wt.resyncs || !time.Now().Before(wt.nextPoll) {
			wt.resyncs = resyncs
			// After the first look a failing poll is left to the next one:
			// the event stream is the main source, and it fails loudly.
			if err := wt.resync(ctx, settle); err != nil && first {
				return fmt.Errorf("wait for health: %w", err)
			}
			wt.nextPoll = time.Now().Add(pollEvery)
		}
		for _, e := range evs {
			wt.apply(ctx, e)
		}
		if err := wt.check(ctx); err != nil {
			return err
		}
		if wt.allReady() {
			return nil
		}
		if streamErr != nil {
			return fmt.Errorf("wait for health: %w", streamErr)
		}
		var upDone <-chan struct{} // nil, which never fires, once up has returned
		if !wt.returned {
			upDone = wt.o.UpDone
		}
		timer.Reset(time.Until(wt.wakeAt()))
		select {
		case <-ctx.Done():
		case <-wt.w.wake:
		case <-upDone:
		case <-timer.C:
		}
	}
}

// upReturned starts the clock on the services that are not ready yet; the
// next look at the containers settles what up left.
func (wt *waiter) upReturned(at time.Time) {
	wt.returned = true
	wt.deadline = at.Add(wt.o.Timeout)
}

// resync lists the project's containers and inspects those of services
// that are not ready yet: the first look, and the fallback for lost events.
// To settle is the first look after up has returned: every container is
// inspected, and from then on the old ones are judged like the new.
func (wt *waiter) resync(ctx context.Context, settle bool) error {
	list, err := wt.w.eng.ContainerList(ctx, container.ListOptions{All: true, Filters: projectFilter(wt.w.project)})
	if err != nil {
		return fmt.Errorf("list %s's containers: %w", wt.w.project, err)
	}
	present := map[string]bool{}
	for _, s := range list {
		present[s.ID] = true
	}
	// Before settling, so that an old container up has removed is not
	// taken for a failure.
	for id, c := range wt.ctrs {
		if !present[id] && !wt.gone[id] {
			wt.removed(c)
		}
	}
	if settle {
		wt.settled = true
	}
	for _, s := range list {
		sv := wt.byName[s.Labels[labelService]]
		if sv == nil {
			continue
		}
		if c := wt.ctrs[s.ID]; c == nil || sv.result == nil || settle {
			wt.inspect(ctx, s.ID, sv)
		}
	}
	return nil
}

// inspect looks at a container and updates what Wait knows of it.
func (wt *waiter) inspect(ctx context.Context, id string, sv *service) {
	in, err := wt.w.eng.ContainerInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		if c := wt.ctrs[id]; c != nil {
			wt.removed(c)
		}
		wt.gone[id] = true
		return
	}
	if err != nil || in.ContainerJSONBase == nil || in.State == nil {
		return // the next poll tries again
	}
	c := wt.ctrs[id]
	if c == nil {
		c = &ctr{id: id, svc: sv, old: wt.w.existing[id], restarts: wt.w.restarts[id]}
		if in.Config != nil {
			c.tty = in.Config.Tty
			hc := in.Config.Healthcheck
			c.health = hc != nil && len(hc.Test) > 0 && hc.Test[0] != "NONE"
		}
		wt.ctrs[id] = c
	}
	c.name = strings.TrimPrefix(in.Name, "/") // up creates a replacement under a temporary name
	st := in.State
	if in.RestartCount > c.restarts {
		wt.failed(c, "restarted")
		return
	}
	switch {
	case st.Restarting:
		c.running = false
		wt.failed(c, fmt.Sprintf("is restarting after exiting with code %d", st.ExitCode))
	case st.Running:
		started := parseTime(st.StartedAt)
		if started != c.startedAt {
			// A new run (or the first look): events before it are history.
			c.startedAt, c.running, c.healthy, c.exact = started, true, false, false
			// By the Engine's clock: only an estimate when it is not this
			// host's, until the start event (if any) gives this host's time.
			c.since = time.Unix(0, started)
			if now := time.Now(); c.since.After(now) {
				c.since = now
			}
		}
		if c.health && st.Health != nil {
			switch st.Health.Status {
			case container.Healthy:
				c.healthy = true
			case container.Unhealthy:
				wt.failed(c, "unhealthy: "+lastCheck(st.Health))
			}
		}
	case st.Status == container.StateExited || st.Status == container.StateDead:
		c.running = false
		wt.failed(c, exited(st.ExitCode, st.OOMKilled))
	}
}

// apply acts on one event. Each event is compared with the start of the
// container's current run, so that what happened before it (a restart by
// compose itself during up, say) is not taken for a failure.
func (wt *waiter) apply(ctx context.Context, e event) {
	if wt.gone[e.Actor.ID] {
		return
	}
	c := wt.ctrs[e.Actor.ID]
	if c == nil {
		// A container that appeared after the first look.
		sv := wt.byName[e.Actor.Attributes[labelService]]
		if sv != nil && !wt.gone[e.Actor.ID] && (e.Action == events.ActionCreate || e.Action == events.ActionStart) {
			wt.inspect(ctx, e.Actor.ID, sv)
		}
		return
	}
	if e.TimeNano <= c.startedAt && e.Action != events.ActionStart {
		return
	}
	switch e.Action {
	case events.ActionStart:
		if !c.running {
			wt.inspect(ctx, c.id, c.svc) // for the run's start time
		}
		if !c.exact && e.TimeNano >= c.startedAt {
			c.since, c.exact = e.seen, true
		}
	case events.ActionOOM:
		c.oom = true
	case events.ActionDie:
		code := -1
		if n, err := fmt.Sscan(e.Actor.Attributes["exitCode"], &code); n != 1 || err != nil {
			code = -1
		}
		c.running = false
		wt.failed(c, exited(code, c.oom))
	case events.ActionDestroy:
		wt.removed(c)
	case events.ActionHealthStatusHealthy:
		c.healthy = true
	case events.ActionHealthStatusUnhealthy:
		reason := "unhealthy"
		if in, err := wt.w.eng.ContainerInspect(ctx, c.id); err == nil && in.State != nil && in.State.Health != nil {
			reason += ": " + lastCheck(in.State.Health)
		}
		wt.failed(c, reason)
	}
}

func (wt *waiter) removed(c *ctr) {
	wt.gone[c.id] = true
	wt.failed(c, "container "+c.name+" was removed")
}

// failed records the first failure of a container's service. An old
// container that stops or goes while up runs is being replaced or
// restarted by up: only its state once up has returned counts.
func (wt *waiter) failed(c *ctr, reason string) {
	sv := c.svc
	if sv.result != nil && !sv.result.Healthy {
		return
	}
	if c.old && !wt.settled {
		return
	}
	sv.result = &Result{Service: sv.Name, Took: time.Since(wt.begin), Reason: reason}
	sv.culprit = c
}

// check turns a failed service into an error (with its container's logs),
// reports services that became ready, and fails those out of time.
func (wt *waiter) check(ctx context.Context) error {
	for _, sv := range wt.svcs {
		if r := sv.result; r != nil && !r.Healthy {
			r.Logs = wt.logs(ctx, sv.culprit)
			return &UnhealthyError{Service: sv.Name, Reason: r.Reason, Logs: r.Logs}
		}
	}
	now := time.Now()
	for _, sv := range wt.svcs {
		if sv.result != nil {
			continue
		}
		if reason, ok := wt.ready(sv, now); ok {
			sv.result = &Result{Service: sv.Name, Took: now.Sub(wt.begin), Healthy: true, Reason: reason}
			if wt.o.OnReady != nil {
				wt.o.OnReady(*sv.result)
			}
		}
	}
	if wt.deadline.IsZero() || now.Before(wt.deadline) {
		return nil
	}
	for _, sv := range wt.svcs {
		if sv.result != nil {
			continue
		}
		reason, c := wt.late(ctx, sv)
		sv.result = &Result{Service: sv.Name, Took: now.Sub(wt.begin), Reason: reason}
		sv.result.Logs = wt.logs(ctx, c)
		return &UnhealthyError{Service: sv.Name, Reason: reason, TimedOut: true, Logs: sv.result.Logs}
	}
	return nil
}

func (wt *waiter) containers(sv *service) []*ctr {
	var cs []*ctr
	for _, c := range wt.ctrs {
		if c.svc == sv && !wt.gone[c.id] {
			cs = append(cs, c)
		}
	}
	slices.SortFunc(cs, func(a, b *ctr) int { return strings.Compare(a.name, b.name) })
	return cs
}

// ready reports whether all of a service's containers are ready, and how.
// While up runs only the containers it created count, so that one it is
// about to replace is never taken for the service.
func (wt *waiter) ready(sv *service, now time.Time) (string, bool) {
	cs := wt.containers(sv)
	if !wt.settled {
		cs = slices.DeleteFunc(cs, func(c *ctr) bool { return c.old })
	}
	if len(cs) < max(sv.Replicas, 1) {
		return "", false
	}
	health := false
	for _, c := range cs {
		switch {
		case !c.running:
			return "", false
		case c.health:
			if !c.healthy {
				return "", false
			}
			health = true
		case now.Sub(c.since) < wt.o.Settle:
			return "", false
		}
	}
	if health {
		return "healthy", true
	}
	return fmt.Sprintf("running for %s", wt.o.Settle), true
}

// late says why a service is not ready at the deadline, and which
// container's logs tell more.
func (wt *waiter) late(ctx context.Context, sv *service) (string, *ctr) {
	after := wt.o.Timeout.String()
	cs := wt.containers(sv)
	if len(cs) == 0 {
		return fmt.Sprintf("not healthy after %s: it has no container in project %s", after, wt.w.project), nil
	}
	for _, c := range cs {
		switch {
		case !c.running:
			return fmt.Sprintf("not running after %s", after), c
		case c.health && !c.healthy:
			said := "no check has finished yet"
			if in, err := wt.w.eng.ContainerInspect(ctx, c.id); err == nil && in.State != nil && in.State.Health != nil {
				said = lastCheck(in.State.Health)
			}
			return fmt.Sprintf("not healthy after %s: %s", after, said), c
		case !c.health && time.Since(c.since) < wt.o.Settle:
			return fmt.Sprintf("not running for %s yet after %s", wt.o.Settle, after), c
		}
	}
	return fmt.Sprintf("not healthy after %s: %d of %d containers", after, len(cs), max(sv.Replicas, 1)), nil
}

func (wt *waiter) allReady() bool {
	if !wt.settled {
		return false
	}
	for _, sv := range wt.svcs {
		if sv.result == nil || !sv.result.Healthy {
			return false
		}
	}
	return true
}

// wakeAt is when Wait must look again without an event: the deadline, the
// next poll, or the moment a settling container has run long enough.
func (wt *waiter) wakeAt() time.Time {
	at := wt.nextPoll
	if !wt.deadline.IsZero() && wt.deadline.Before(at) {
		at = wt.deadline
	}
	now := time.Now()
	for _, c := range wt.ctrs {
		if t := c.since.Add(wt.o.Settle); c.svc.result == nil && c.running && !c.health && t.After(now) && t.Before(at) {
			at = t
		}
	}
	return at
}

func (wt *waiter) results() []Result {
	var out []Result
	for _, sv := range wt.svcs {
		if sv.result != nil {
			out = append(out, *sv.result)
		}
	}
	return out
}

// lastCheck says what a container's last finished healthcheck said.
func lastCheck(h *container.Health) string {
	if len(h.Log) == 0 {
		return "no check has finished yet"
	}
	last := h.Log[len(h.Log)-1]
	out := strings.TrimSpace(last.Output)
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = strings.TrimSpace(out[i+1:])
	}
	if r := []rune(out); len(r) > 200 {
		out = string(r[:200]) + "…"
	}
	if out == "" {
		return fmt.Sprintf("last check exited with code %d", last.ExitCode)
	}
	return "last check said: " + out
}

func exited(code int, oom bool) string {
	s := "exited"
	if code >= 0 {
		s = fmt.Sprintf("exited with code %d", code)
	}
	if oom {
		s += " (out of memory)"
	}
	return s
}

func parseTime(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 2000 { // "0001-01-01T00:00:00Z": never started
		return 0
	}
	return t.UnixNano()
}
