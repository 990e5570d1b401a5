package health_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/semalink/deploy-action/deployer/compose"
	"github.com/semalink/deploy-action/deployer/compose/composetest"
	"github.com/semalink/deploy-action/deployer/health"
)

var _ health.Engine = (*client.Client)(nil)

func TestMain(m *testing.M) { composetest.Main(m) }

// engine returns a client of the local Engine, negotiating the API version
// (Engine 20.10 speaks 1.41).
func engine(t testing.TB) *client.Client {
	t.Helper()
	composetest.Need(t)
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// deploy starts a Watch and runs compose up and Wait side by side, as the
// deployer does; up must succeed.
func deploy(t testing.TB, ctx context.Context, eng health.Engine, c compose.CLI, services []health.Service, o health.Options) ([]health.Result, error) {
	t.Helper()
	r := deployAlong(t, ctx, eng, c, services, o)
	if r.upErr != nil {
		t.Fatal(r.upErr)
	}
	return r.results, r.err
}

// deployAfter starts a Watch, runs compose up, and waits once up has
// returned.
func deployAfter(t testing.TB, ctx context.Context, eng health.Engine, c compose.CLI, services []health.Service, o health.Options) ([]health.Result, error) {
	t.Helper()
	w, err := health.Start(ctx, eng, c.Project)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := c.Up(ctx); err != nil {
		t.Fatal(err)
	}
	return w.Wait(ctx, services, o)
}

// deployment is how compose up and Wait, run side by side, ended.
type deployment struct {
	results      []health.Result
	err          error // Wait's
	upErr        error
	upReturned   time.Time
	waitReturned time.Time
}

// deployAlong starts a Watch, then runs compose up and Wait side by side
// (Options.UpDone), and returns once both have.
func deployAlong(t testing.TB, ctx context.Context, eng health.Engine, c compose.CLI, services []health.Service, o health.Options) deployment {
	t.Helper()
	w, err := health.Start(ctx, eng, c.Project)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var d deployment
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		d.upErr = c.Up(ctx)
		d.upReturned = time.Now()
	}()
	o.UpDone = upDone
	results, err := w.Wait(ctx, services, o)
	waitReturned := time.Now()
	<-upDone
	d.results, d.err, d.waitReturned = results, err, waitReturned
	return d
}

// The test image's HEALTHCHECK probes every 500ms, three failures in a row
// are unhealthy.
const healthyProject = `
services:
  api:
    image: ${IMAGE}
  web:
    image: ${IMAGE}
    scale: 2
    healthcheck:
      test: ["CMD", "/api", "probe", "http://127.0.0.1:3000/health"]
      interval: 300ms
      retries: 2
  worker:
    image: ${IMAGE}
    healthcheck:
      disable: true
`

// deployers are the two ways to call Wait: alongside up, as the deployer
// does, and once up has returned.
var deployers = []struct {
	name   string
	deploy func(testing.TB, context.Context, health.Engine, compose.CLI, []health.Service, health.Options) ([]health.Result, error)
}{
	{"alongside up", deploy},
	{"after up", deployAfter},
}

func TestHealthy(t *testing.T) {
	eng := engine(t)
	for _, d := range deployers {
		t.Run(d.name, func(t *testing.T) {
			c := composetest.Project(t, healthyProject)
			var mu sync.Mutex
			ready := map[string]time.Duration{}
			start := time.Now()
			results, err := d.deploy(t, t.Context(), eng, c, []health.Service{
				{Name: "api"}, // the image's healthcheck, which the caller may not know of
				{Name: "web", Healthcheck: true, Replicas: 2},
				{Name: "worker", Healthcheck: false},
			}, health.Options{Settle: time.Second, OnReady: func(r health.Result) { mu.Lock(); ready[r.Service] = time.Since(start); mu.Unlock() }})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("all ready in %s: %+v", time.Since(start).Round(time.Millisecond), results)
			want := map[string]string{"api": "healthy", "web": "healthy", "worker": "running for 1s"}
			for _, r := range results {
				if !r.Healthy || r.Reason != want[r.Service] {
					t.Errorf("%s: healthy %v, reason %q, want %q", r.Service, r.Healthy, r.Reason, want[r.Service])
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(ready) != 3 {
				t.Errorf("OnReady for %v, want api, web and worker", ready)
			}
			if ready["worker"] < time.Second {
				t.Errorf("worker ready %s after up began, before it can have run for Settle", ready["worker"])
			}
		})
	}
}

func TestUnhealthy(t *testing.T) {
	eng := engine(t)
	c := composetest.Project(t, `
services:
  api:
    image: ${IMAGE}
    environment:
      FAIL_HEALTH: "1"
`)
	start := time.Now()
	_, err := deploy(t, t.Context(), eng, c, []health.Service{{Name: "api", Healthcheck: true}}, health.Options{Timeout: time.Minute})
	took := time.Since(start)
	var ue *health.UnhealthyError
	if !errors.As(err, &ue) {
		t.Fatalf("error %T %v, want *health.UnhealthyError", err, err)
	}
	t.Logf("after %s: %v; logs %q", took.Round(time.Millisecond), err, ue.Logs)
	if ue.TimedOut || !strings.HasPrefix(err.Error(), "api unhealthy: last check said: api: http://127.0.0.1:3000/health answered 503") {
		t.Errorf("error %q", err)
	}
	if !slices.ContainsFunc(ue.Logs, func(l string) bool { return strings.Contains(l, "listening on :3000") }) {
		t.Errorf("logs %q do not show the container's output", ue.Logs)
	}
	if took > 20*time.Second {
		t.Errorf("took %s to see three failed checks 500ms apart", took)
	}
}

func TestCrash(t *testing.T) {
	eng := engine(t)
	services := map[string]string{
		// Failing checks, so that it cannot turn healthy before the crash.
		"api": `
    environment:
      CRASH_AFTER: 1s
      FAIL_HEALTH: "1"`,
		"worker": `
    healthcheck:
      disable: true
    environment:
      CRASH_AFTER: 1s`,
	}
	for _, policy := range []string{"no", "unless-stopped"} {
		for _, svc := range []string{"api", "worker"} {
			t.Run(svc+" restart "+policy, func(t *testing.T) {
				c := composetest.Project(t, "services:\n  "+svc+":\n    image: ${IMAGE}\n    restart: "+policy+services[svc]+"\n")
				start := time.Now()
				_, err := deploy(t, t.Context(), eng, c, []health.Service{{Name: svc}}, health.Options{Timeout: time.Minute, Settle: 30 * time.Second})
				took := time.Since(start)
				var ue *health.UnhealthyError
				if !errors.As(err, &ue) {
					t.Fatalf("error %T %v, want *health.UnhealthyError", err, err)
				}
				t.Logf("after %s: %v; logs %q", took.Round(time.Millisecond), err, ue.Logs)
				if err.Error() != svc+" exited with code 1" {
					t.Errorf("error %q", err)
				}
				if !slices.ContainsFunc(ue.Logs, func(l string) bool { return strings.Contains(l, "crashing on purpose") }) {
					t.Errorf("logs %q do not say why", ue.Logs)
				}
				if ue.TimedOut {
					t.Errorf("the crash was noticed only when the wait timed out")
				}
			})
		}
	}
}

func TestNoopUpIsQuick(t *testing.T) {
	eng := engine(t)
	c := composetest.Project(t, healthyProject)
	services := []health.Service{{Name: "api"}, {Name: "web", Replicas: 2}, {Name: "worker"}}
	o := health.Options{Settle: time.Second}
	if _, err := deploy(t, t.Context(), eng, c, services, o); err != nil {
		t.Fatal(err)
	}
	before := containerIDs(t, eng, c.Project)

	t.Run("after up", func(t *testing.T) {
		start := time.Now()
		results, err := deployAfter(t, t.Context(), eng, c, services, o)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		t.Logf("no-op up and wait: %s", took.Round(time.Millisecond))
		if after := containerIDs(t, eng, c.Project); !slices.Equal(before, after) {
			t.Fatalf("compose recreated containers: %q, then %q", before, after)
		}
		for _, r := range results {
			if !r.Healthy {
				t.Errorf("%s: %s, want healthy", r.Service, r.Reason)
			}
		}
	})

	// Up recreated nothing: the containers that were there count, once up
	// has returned.
	t.Run("alongside up", func(t *testing.T) {
		var mu sync.Mutex
		ready := map[string]time.Time{}
		o := o
		o.OnReady = func(r health.Result) { mu.Lock(); ready[r.Service] = time.Now(); mu.Unlock() }
		start := time.Now()
		d := deployAlong(t, t.Context(), eng, c, services, o)
		if d.upErr != nil || d.err != nil {
			t.Fatalf("up: %v; wait: %v", d.upErr, d.err)
		}
		t.Logf("no-op up %s, wait returned %s after it", d.upReturned.Sub(start).Round(time.Millisecond), d.waitReturned.Sub(d.upReturned).Round(time.Millisecond))
		if after := containerIDs(t, eng, c.Project); !slices.Equal(before, after) {
			t.Fatalf("compose recreated containers: %q, then %q", before, after)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range d.results {
			at := ready[r.Service]
			if !r.Healthy || at.Before(d.upReturned) {
				t.Errorf("%s: healthy %v, ready %s after up returned, want healthy and not before", r.Service, r.Healthy, at.Sub(d.upReturned))
			}
		}
	})
}

func TestTimeoutAndCancel(t *testing.T) {
	eng := engine(t)
	// Failing checks that never reach their retries: starting for ever.
	c := composetest.Project(t, `
services:
  api:
    image: ${IMAGE}
    environment:
      FAIL_HEALTH: "1"
    healthcheck:
      test: ["CMD", "/api", "probe", "http://127.0.0.1:3000/health"]
      interval: 300ms
      retries: 10000
`)
	services := []health.Service{{Name: "api", Healthcheck: true}}

	// Waited for once up has returned, so that the timeout runs while the
	// container's checks fail, however slowly up went.
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		_, err := deployAfter(t, t.Context(), eng, c, services, health.Options{Timeout: 10 * time.Second})
		var ue *health.UnhealthyError
		if !errors.As(err, &ue) || !ue.TimedOut {
			t.Fatalf("error %T %v, want a timed-out *health.UnhealthyError", err, err)
		}
		t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
		if !strings.HasPrefix(err.Error(), "api not healthy after 10s: last check said: api: http://127.0.0.1:3000/health answered 503") {
			t.Errorf("error %q", err)
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			t.Errorf("a timeout reads as a cancellation: %v", err)
		}
		if len(ue.Logs) == 0 {
			t.Error("no logs")
		}
	})

	// Cancelled while Wait waits, once up has returned: the service cannot
	// be judged before (its checks fail 10,000 times first), so the
	// cancel, not a verdict, ends Wait, whatever the machine's speed.
	t.Run("cancel", func(t *testing.T) {
		w, err := health.Start(t.Context(), eng, c.Project)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if err := c.Up(t.Context()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		_, err = w.Wait(ctx, services, health.Options{Timeout: time.Hour})
		if !errors.Is(err, context.Canceled) || errors.As(err, new(*health.UnhealthyError)) {
			t.Fatalf("error %T %v, want context.Canceled and no UnhealthyError", err, err)
		}
		if err.Error() != "wait for health: context canceled" {
			t.Errorf("error %q", err)
		}
	})
}

func TestMissingService(t *testing.T) {
	eng := engine(t)
	c := composetest.Project(t, healthyProject)
	results, err := deploy(t, t.Context(), eng, c, []health.Service{{Name: "worker"}, {Name: "nosuch"}},
		health.Options{Timeout: time.Second, Settle: 200 * time.Millisecond})
	if err == nil || err.Error() != "nosuch not healthy after 1s: it has no container in project "+c.Project {
		t.Errorf("error %v", err)
	}
	if len(results) != 2 || !results[0].Healthy || results[1].Healthy {
		t.Errorf("results %+v, want worker ready and nosuch not", results)
	}
}

func containerIDs(t *testing.T, eng *client.Client, project string) []string {
	t.Helper()
	list, err := eng.ContainerList(t.Context(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "com.docker.compose.project="+project))})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

// readyLatency deploys a new container of a healthchecked service and
// measures how long after the Engine's health_status event (its own
// timestamp) OnReady ran.
func readyLatency(t testing.TB, eng *client.Client, c compose.CLI, generation string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", "com.docker.compose.project="+c.Project), filters.Arg("event", "health_status"))
	msgs, errs := eng.Events(ctx, events.ListOptions{Filters: f})

	var (
		mu      sync.Mutex
		readyAt time.Time
	)
	t.Setenv("GENERATION", generation) // a changed environment: compose recreates api
	_, err := deploy(t, ctx, eng, c, []health.Service{{Name: "api", Healthcheck: true}}, health.Options{
		OnReady: func(health.Result) { mu.Lock(); readyAt = time.Now(); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case m := <-msgs:
			if m.Action == events.ActionHealthStatusHealthy {
				mu.Lock()
				defer mu.Unlock()
				return readyAt.Sub(time.Unix(0, m.TimeNano))
			}
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(5 * time.Second):
			t.Fatal("no healthy event")
		}
	}
}

const latencyProject = `
services:
  api:
    image: ${IMAGE}
    environment:
      GENERATION: ${GENERATION:-0}
`

// TestReadyLatency reports how soon after the Engine's health event a
// service is seen ready (target: within 100ms).
func TestReadyLatency(t *testing.T) {
	eng := engine(t)
	c := composetest.Project(t, latencyProject)
	var all []time.Duration
	for i := range 5 {
		all = append(all, readyLatency(t, eng, c, string(rune('a'+i))))
	}
	slices.Sort(all)
	// A figure, not an assertion (BenchmarkReadyLatency measures it).
	t.Logf("health event to OnReady: median %s, max %s (%v)", all[len(all)/2], all[len(all)-1], all)
}

// BenchmarkReadyLatency reports the same figure as ms-event-to-ready.
func BenchmarkReadyLatency(b *testing.B) {
	eng := engine(b)
	c := composetest.Project(b, latencyProject)
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		total += readyLatency(b, eng, c, "gen"+string(rune('a'+i%26))+time.Now().Format("150405.000"))
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-event-to-ready")
}

// alongsideProject's proxy is started by compose only once api and slow
// are healthy. Slow's first check comes 3s after it starts, so up returns
// seconds after the api is healthy. While up recreates the api, it stops
// the proxy and starts it again at the end (restart: true). Stopped with
// SIGKILL, a container that up replaces or stops dies with code 137, as a
// crash would.
const alongsideProject = `
services:
  api:
    image: ${IMAGE}
    stop_signal: SIGKILL
    environment:
      GENERATION: ${GENERATION:-0}
      FAIL_HEALTH: ${FAIL_HEALTH:-0}
  slow:
    image: ${IMAGE}
    stop_signal: SIGKILL
    environment:
      GENERATION: ${GENERATION:-0}
    healthcheck:
      test: ["CMD", "/api", "probe", "http://127.0.0.1:3000/health"]
      interval: 3s
  proxy:
    image: ${IMAGE}
    stop_signal: SIGKILL
    healthcheck:
      disable: true
    depends_on:
      api:
        condition: service_healthy
        restart: true
      slow:
        condition: service_healthy
`

// TestAlongsideUp runs Wait alongside an up that blocks on the api's
// health for a dependent: the api is reported on its own event, before up
// returns, while the containers up stops or replaces are not reported and
// do not fail the wait.
func TestAlongsideUp(t *testing.T) {
	eng := engine(t)
	c := composetest.Project(t, alongsideProject)
	services := []health.Service{{Name: "api", Healthcheck: true}, {Name: "slow", Healthcheck: true}, {Name: "proxy"}}
	o := health.Options{Timeout: time.Minute, Settle: time.Second}
	t.Setenv("GENERATION", "a")
	t.Setenv("FAIL_HEALTH", "0")
	if _, err := deploy(t, t.Context(), eng, c, services, o); err != nil {
		t.Fatal(err)
	}

	t.Run("recreate", func(t *testing.T) {
		before := serviceIDs(t, eng, c.Project)
		deaths := recordDeaths(t, eng, c.Project)
		var mu sync.Mutex
		ready := map[string]time.Time{}
		o := o
		o.OnReady = func(r health.Result) { mu.Lock(); ready[r.Service] = time.Now(); mu.Unlock() }
		t.Setenv("GENERATION", "b")
		start := time.Now()
		d := deployAlong(t, t.Context(), eng, c, services, o)
		if d.upErr != nil || d.err != nil {
			t.Fatalf("up: %v; wait: %v", d.upErr, d.err)
		}
		after := serviceIDs(t, eng, c.Project)
		if after["api"] == before["api"] || after["proxy"] != before["proxy"] {
			t.Fatalf("containers %v, then %v: want the api recreated and the proxy kept", before, after)
		}
		for _, r := range d.results {
			if !r.Healthy {
				t.Errorf("%s: %s", r.Service, r.Reason)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		t.Logf("api ready %s after up began; up returned %s after it; wait %s after that",
			ready["api"].Sub(start).Round(time.Millisecond), d.upReturned.Sub(ready["api"]).Round(time.Millisecond),
			d.waitReturned.Sub(d.upReturned).Round(time.Millisecond))
		if !ready["api"].Before(d.upReturned) {
			t.Errorf("api ready %s after up returned, want before: up waited for it to be healthy", ready["api"].Sub(d.upReturned))
		}
		// What the wait had to let pass: the old api and the proxy killed
		// by up while it ran.
		died := deaths(before["api"], before["proxy"])
		for _, svc := range []string{"api", "proxy"} {
			at, ok := died[before[svc]]
			if !ok || !at.Before(d.upReturned) {
				t.Errorf("the old %s did not die while up ran (deaths %v)", svc, died)
			}
		}
	})

	// The old api is healthy and the new one is not: the service fails,
	// and is never reported ready on the old container's health.
	t.Run("new unhealthy", func(t *testing.T) {
		var mu sync.Mutex
		var ready []string
		o := o
		o.OnReady = func(r health.Result) { mu.Lock(); ready = append(ready, r.Service); mu.Unlock() }
		t.Setenv("GENERATION", "c")
		t.Setenv("FAIL_HEALTH", "1")
		start := time.Now()
		d := deployAlong(t, t.Context(), eng, c, services, o)
		t.Logf("wait failed after %s: %v; up returned %s after that: %v", d.waitReturned.Sub(start).Round(time.Millisecond),
			d.err, d.upReturned.Sub(d.waitReturned).Round(time.Millisecond), d.upErr)
		var ue *health.UnhealthyError
		if !errors.As(d.err, &ue) || !strings.HasPrefix(d.err.Error(), "api unhealthy: last check said: api: http://127.0.0.1:3000/health answered 503") {
			t.Errorf("error %v, want the new api's failed check", d.err)
		}
		mu.Lock()
		defer mu.Unlock()
		if slices.Contains(ready, "api") {
			t.Error("OnReady for the api, whose only healthy container was the one being replaced")
		}
	})
}

// serviceIDs maps each service of the project to its container's ID.
func serviceIDs(t *testing.T, eng *client.Client, project string) map[string]string {
	t.Helper()
	list, err := eng.ContainerList(t.Context(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "com.docker.compose.project="+project))})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, c := range list {
		ids[c.Labels["com.docker.compose.service"]] = c.ID
	}
	return ids
}

// recordDeaths records the project's die events until the returned func
// is called, which waits for the deaths of the containers it is given (up
// to two minutes, a net for a broken promise) and returns when each
// container died.
func recordDeaths(t *testing.T, eng *client.Client, project string) func(ids ...string) map[string]time.Time {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	msgs, errs := eng.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.compose.project="+project), filters.Arg("event", "die"))})
	var mu sync.Mutex
	died := map[string]time.Time{}
	arrived := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case m := <-msgs:
				mu.Lock()
				died[m.Actor.ID] = time.Unix(0, m.TimeNano)
				mu.Unlock()
				select {
				case arrived <- struct{}{}:
				default:
				}
			case <-errs:
				return
			}
		}
	}()
	return func(ids ...string) map[string]time.Time {
		defer cancel()
		net := time.After(2 * time.Minute)
		for {
			mu.Lock()
			all := true
			for _, id := range ids {
				_, ok := died[id]
				all = all && ok
			}
			got := maps.Clone(died)
			mu.Unlock()
			if all {
				return got
			}
			select {
			case <-arrived:
			case <-net:
				return got
			}
		}
	}
}
