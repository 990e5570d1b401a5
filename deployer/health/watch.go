package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// Engine is the part of the Docker Engine API that health uses; a
// *client.Client (with API version negotiation, for older engines) is one.
type Engine interface {
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ContainerLogs(ctx context.Context, container string, options container.LogsOptions) (io.ReadCloser, error)
}

// The labels compose puts on the containers it creates.
const (
	labelProject = "com.docker.compose.project"
	labelService = "com.docker.compose.service"
	labelOneoff  = "com.docker.compose.oneoff"
)

// resubscribeWithin is how long a broken event stream gets to come back
// (a restarting daemon takes a few seconds) before Wait fails.
const resubscribeWithin = 15 * time.Second

// Watch is a subscription to one compose project's container events,
// buffered from Start until Close for Wait to read.
type Watch struct {
	eng      Engine
	project  string
	started  time.Time
	cancel   context.CancelFunc
	done     chan struct{}   // closed when the stream has ended
	existing map[string]bool // the containers there were at Start
	restarts map[string]int

	mu      sync.Mutex
	events  []event
	keys    map[string]bool // of the buffered events, to drop repeats after a resubscription
	last    int64           // the latest event's TimeNano
	resyncs int             // resubscriptions: events may have been lost in between
	err     error           // the stream ended for good
	wake    chan struct{}
}

// event is an Engine event and when it arrived here.
type event struct {
	events.Message
	seen time.Time
}

// Start subscribes to the project's container events and records the
// project's existing containers and their restart counts. Call it before
// `compose up` so that Wait sees everything up does, and can tell the
// containers up creates from those it may replace.
func Start(ctx context.Context, eng Engine, project string) (*Watch, error) {
	sctx, cancel := context.WithCancel(ctx)
	w := &Watch{
		eng:      eng,
		project:  project,
		started:  time.Now(),
		cancel:   cancel,
		done:     make(chan struct{}),
		existing: map[string]bool{},
		restarts: map[string]int{},
		keys:     map[string]bool{},
		wake:     make(chan struct{}, 1),
	}
	msgs, errs := eng.Events(sctx, w.subscription(""))
	list, err := eng.ContainerList(ctx, container.ListOptions{All: true, Filters: projectFilter(project)})
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch %s's containers: %w", project, err)
	}
	// A restart count that grows during the deploy is a crash, but a
	// container that compose leaves alone may have restarted long before.
	for _, c := range list {
		w.existing[c.ID] = true
		in, err := eng.ContainerInspect(ctx, c.ID)
		if err == nil {
			w.restarts[c.ID] = in.RestartCount
		}
	}
	go w.stream(sctx, msgs, errs)
	return w, nil
}

// Close ends the subscription.
func (w *Watch) Close() {
	w.cancel()
	<-w.done
}

func projectFilter(project string) filters.Args {
	return filters.NewArgs(
		filters.Arg("label", labelProject+"="+project),
		filters.Arg("label", labelOneoff+"=False"), // not `compose run` containers
	)
}

// subscription asks for the events Wait acts on; "health_status" matches
// "health_status: healthy" and "health_status: unhealthy".
func (w *Watch) subscription(since string) events.ListOptions {
	f := projectFilter(w.project)
	f.Add("type", string(events.ContainerEventType))
	for _, a := range []events.Action{events.ActionCreate, events.ActionStart, events.ActionDie, events.ActionOOM,
		events.ActionDestroy, events.ActionHealthStatus} {
		f.Add("event", string(a))
	}
	return events.ListOptions{Since: since, Filters: f}
}

// stream buffers events until the context ends. When the stream breaks
// (the daemon restarted, the connection dropped), it subscribes once more
// from the last event it had; a second break ends the Watch with an error.
func (w *Watch) stream(ctx context.Context, msgs <-chan events.Message, errs <-chan error) {
	defer close(w.done)
	resubscribed := false
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-msgs:
			w.add(m)
		case err := <-errs:
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			if resubscribed {
				w.fail(fmt.Errorf("the Engine's event stream broke again after a resubscription: %w", err))
				return
			}
			resubscribed = true
			if msgs, errs, err = w.resubscribe(ctx); err != nil {
				w.fail(fmt.Errorf("the Engine's event stream broke and could not be resumed: %w", err))
				return
			}
		}
	}
}

func (w *Watch) resubscribe(ctx context.Context) (<-chan events.Message, <-chan error, error) {
	deadline := time.Now().Add(resubscribeWithin)
	for {
		_, err := w.eng.ContainerList(ctx, container.ListOptions{Limit: 1, Filters: projectFilter(w.project)})
		if err == nil {
			break
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("no answer for %s: %w", resubscribeWithin, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	w.mu.Lock()
	since := w.last
	w.mu.Unlock()
	if since == 0 {
		since = w.started.Add(-time.Second).UnixNano() // this host's clock: a second of slack
	}
	msgs, errs := w.eng.Events(ctx, w.subscription(fmt.Sprintf("%d.%09d", since/1e9, since%1e9)))
	w.mu.Lock()
	w.resyncs++
	w.mu.Unlock()
	w.signal()
	return msgs, errs, nil
}

func (w *Watch) add(m events.Message) {
	key := fmt.Sprintf("%d %s %s", m.TimeNano, m.Actor.ID, m.Action)
	w.mu.Lock()
	if w.keys[key] { // a repeat from a resubscription's Since
		w.mu.Unlock()
		return
	}
	w.keys[key] = true
	w.events = append(w.events, event{Message: m, seen: time.Now()})
	w.last = max(w.last, m.TimeNano)
	w.mu.Unlock()
	w.signal()
}

func (w *Watch) fail(err error) {
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
	w.signal()
}

func (w *Watch) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// next returns the events after the first n, how many resubscriptions
// there have been, and the stream's error if it has ended.
func (w *Watch) next(n int) ([]event, int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.err
	if err == nil {
		select {
		case <-w.done:
			err = errors.New("the watch was closed")
		default:
		}
	}
	// Events are only ever appended, so the slice can be read unlocked.
	return w.events[n:len(w.events):len(w.events)], w.resyncs, err
}
