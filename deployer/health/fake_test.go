package health_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/semalink/deploy-action/deployer/health"
)

// fakeEngine is one running container of service api in project p, and
// event streams the test feeds by hand.
type fakeEngine struct {
	mu      sync.Mutex
	state   container.State
	streams []stream // one per Events call
	since   []string // each call's Since
	opened  chan int // the number of the stream just opened
}

type stream struct {
	msgs chan events.Message
	errs chan error
}

func newFake(started time.Time, health container.HealthStatus) *fakeEngine {
	return &fakeEngine{
		state: container.State{Status: container.StateRunning, Running: true, StartedAt: started.UTC().Format(time.RFC3339Nano),
			Health: &container.Health{Status: health}},
		opened: make(chan int, 10),
	}
}

func (f *fakeEngine) Events(ctx context.Context, o events.ListOptions) (<-chan events.Message, <-chan error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := stream{make(chan events.Message), make(chan error, 1)}
	f.streams = append(f.streams, s)
	f.since = append(f.since, o.Since)
	f.opened <- len(f.streams)
	return s.msgs, s.errs
}

func (f *fakeEngine) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return []container.Summary{{ID: "c1", Labels: map[string]string{"com.docker.compose.service": "api"}}}, nil
}

func (f *fakeEngine) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.state
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: id, Name: "/p-api-1", State: &st},
		Config:            &container.Config{Healthcheck: &container.HealthConfig{Test: []string{"CMD", "probe"}}},
	}, nil
}

func (f *fakeEngine) ContainerLogs(context.Context, string, container.LogsOptions) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("")), nil // a TTY container's plain stream
}

func (f *fakeEngine) stream(n int) stream {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.streams[n-1]
}

func ev(action events.Action, at time.Time, attrs ...string) events.Message {
	a := map[string]string{"com.docker.compose.service": "api"}
	for i := 0; i+1 < len(attrs); i += 2 {
		a[attrs[i]] = attrs[i+1]
	}
	return events.Message{Type: events.ContainerEventType, Action: action, Actor: events.Actor{ID: "c1", Attributes: a}, TimeNano: at.UnixNano()}
}

// waitAsync runs Wait in the background.
func waitAsync(ctx context.Context, w *health.Watch) chan error {
	done := make(chan error, 1)
	go func() {
		_, err := w.Wait(ctx, []health.Service{{Name: "api", Healthcheck: true}}, health.Options{Timeout: 10 * time.Second})
		done <- err
	}()
	return done
}

func TestResubscribe(t *testing.T) {
	started := time.Now().Add(-time.Second)
	f := newFake(started, container.Starting)
	w, err := health.Start(t.Context(), f, "p")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	done := waitAsync(t.Context(), w)
	<-f.opened

	last := started.Add(500 * time.Millisecond)
	f.stream(1).msgs <- ev(events.ActionStart, last)
	f.stream(1).errs <- io.ErrUnexpectedEOF // the daemon went away
	<-f.opened
	if want := fmt.Sprintf("%d.%09d", last.Unix(), last.Nanosecond()); f.since[1] != want {
		t.Errorf("resubscribed since %q, want the last event's time %q", f.since[1], want)
	}
	f.stream(2).msgs <- ev(events.ActionStart, last) // a repeat, because Since is inclusive
	f.stream(2).msgs <- ev(events.ActionHealthStatusHealthy, last.Add(time.Second))
	if err := <-done; err != nil {
		t.Fatalf("wait after a resubscription: %v", err)
	}
}

func TestStreamBreaksTwice(t *testing.T) {
	f := newFake(time.Now(), container.Starting)
	w, err := health.Start(t.Context(), f, "p")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	done := waitAsync(t.Context(), w)
	<-f.opened
	f.stream(1).errs <- io.ErrUnexpectedEOF
	<-f.opened
	f.stream(2).errs <- errors.New("connection reset by peer")
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "wait for health: the Engine's event stream broke again after a resubscription: connection reset by peer") {
			t.Errorf("error %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not notice the stream had ended")
	}
}

// Compose may stop and start a container during up (depends_on with
// restart: true); that die is before the run Wait looks at, not a crash.
func TestEventsBeforeTheCurrentRun(t *testing.T) {
	started := time.Now().Add(-200 * time.Millisecond)
	f := newFake(started, container.Starting)
	w, err := health.Start(t.Context(), f, "p")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	<-f.opened
	s := f.stream(1)
	go func() {
		s.msgs <- ev(events.ActionDie, started.Add(-50*time.Millisecond), "exitCode", "0")
		s.msgs <- ev(events.ActionStart, started.Add(time.Millisecond))
		s.msgs <- ev(events.ActionHealthStatusHealthy, started.Add(time.Second))
	}()
	if err := <-waitAsync(t.Context(), w); err != nil {
		t.Fatalf("a die before the current run failed the wait: %v", err)
	}
}

func TestDieInTheCurrentRun(t *testing.T) {
	started := time.Now().Add(-200 * time.Millisecond)
	f := newFake(started, container.Starting)
	w, err := health.Start(t.Context(), f, "p")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	<-f.opened
	done := waitAsync(t.Context(), w)
	s := f.stream(1)
	s.msgs <- ev(events.ActionOOM, started.Add(time.Second))
	s.msgs <- ev(events.ActionDie, started.Add(time.Second), "exitCode", "137")
	if err := <-done; err == nil || err.Error() != "api exited with code 137 (out of memory)" {
		t.Errorf("error %v, want api exited with code 137 (out of memory)", err)
	}
}

// While up runs, a container that was there before it is one up may be
// replacing or restarting: its stop is no failure and its health no
// readiness. Once up has returned, its state then decides.
func TestOldContainerDuringUp(t *testing.T) {
	started := time.Now().Add(-time.Minute)
	restarted := time.Now().Add(time.Second)
	for _, tc := range []struct {
		name  string
		after container.State // once up has returned
		want  string          // Wait's error
	}{
		{"restarted by up", container.State{Status: container.StateRunning, Running: true,
			StartedAt: restarted.UTC().Format(time.RFC3339Nano), Health: &container.Health{Status: container.Healthy}}, ""},
		{"left stopped by up", container.State{Status: container.StateExited, ExitCode: 137}, "api exited with code 137"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(started, container.Healthy)
			w, err := health.Start(t.Context(), f, "p")
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			upDone := make(chan struct{})
			var mu sync.Mutex
			var ready []health.Result
			done := make(chan error, 1)
			go func() {
				_, err := w.Wait(t.Context(), []health.Service{{Name: "api", Healthcheck: true}}, health.Options{
					Timeout: 10 * time.Second,
					OnReady: func(r health.Result) { mu.Lock(); ready = append(ready, r); mu.Unlock() },
					UpDone:  upDone,
				})
				done <- err
			}()
			<-f.opened
			running := func(what string) {
				t.Helper()
				select {
				case err := <-done:
					t.Fatalf("Wait returned while up ran, %s: %v", what, err)
				case <-time.After(200 * time.Millisecond):
				}
				mu.Lock()
				defer mu.Unlock()
				if len(ready) > 0 {
					t.Fatalf("OnReady(%+v) while up ran, %s", ready, what)
				}
			}
			running("the container before it healthy")
			f.mu.Lock()
			f.state = container.State{Status: container.StateExited, ExitCode: 137}
			f.mu.Unlock()
			f.stream(1).msgs <- ev(events.ActionDie, started.Add(30*time.Second), "exitCode", "137")
			running("the container before it killed")

			f.mu.Lock()
			f.state = tc.after
			f.mu.Unlock()
			close(upDone)
			err = <-done
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Errorf("error %v, want %s", err, tc.want)
			}
			mu.Lock()
			defer mu.Unlock()
			if tc.want == "" && len(ready) != 1 {
				t.Errorf("OnReady %+v, want api once up has returned", ready)
			}
		})
	}
}
