package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Deploy statuses.
const (
	Queued     = "queued"
	Running    = "running"
	Succeeded  = "succeeded"
	Failed     = "failed"
	Superseded = "superseded" // a newer request for the project came in while it waited
	Refused    = "refused"    // an older commit than the live one, from an automatic event
)

// Limits of the deploy records.
const (
	keepRecords = 500      // records kept in state/deploys, newest first
	maxLog      = 16 << 20 // bytes of a deploy's log
)

// Deploy is one request's deploy, as GET /deploys shows it and
// state/deploys/ID.json keeps it.
type Deploy struct {
	ID       string    `json:"id"`
	Project  string    `json:"project"`
	Action   string    `json:"action"`            // deploy, redeploy, rollback
	Ref      string    `json:"ref,omitempty"`     // what was asked for: a branch, tag or commit
	Commit   string    `json:"commit,omitempty"`  // the commit the ref named, once fetched
	Release  string    `json:"release,omitempty"` // the release made (or rolled back to)
	Hook     string    `json:"hook"`              // github, slack, standard
	Event    string    `json:"event,omitempty"`   // GitHub's event
	Sender   string    `json:"sender,omitempty"`  // GitHub login, Slack user; a standard request's own word
	Status   string    `json:"status"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Error    string    `json:"error,omitempty"`

	// Forward refuses a commit that the live release's commit already
	// contains (push, workflow_run): going back takes a rollback.
	Forward bool `json:"forward,omitempty"`
	// Repository and Deployment are the GitHub Deployment that hears of
	// this deploy (a deployment event).
	Repository string `json:"repository,omitempty"`
	Deployment int64  `json:"deployment,omitempty"`

	// respond is a Slack response_url: kept in memory only (it is a
	// credential to the channel), so a restart loses it.
	respond string
}

func (d *Deploy) done() bool {
	return d.Status != Queued && d.Status != Running
}

// Runner runs one deploy (a copy of its record), writing its progress to
// log. An error of type *RefusedError ends the deploy as refused.
type Runner func(ctx context.Context, d Deploy, log io.Writer) (Outcome, error)

// Outcome is what a run learned: the release it made or brought back,
// and the commit a ref named.
type Outcome struct{ Release, Commit string }

// RefusedError is a deploy that was not run because it would go back.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

// queue runs deploys one project at a time. A project has at most one
// running and one waiting: a newer request replaces the waiting one,
// which ends as superseded. Records and logs live in dir, so a restart
// finds the queue again.
type queue struct {
	dir      string
	run      Runner
	now      func() time.Time
	finished func(d Deploy) // hears of each deploy that ends

	mu       sync.Mutex
	deploys  map[string]*Deploy
	logs     map[string]*deployLog
	projects map[string]*lane
	started  bool            // deploys may start (start was called)
	closed   bool            // no more deploys start, and none is added
	ctx      context.Context // ends the running deploys at shutdown
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// lane is one project's turn-taking.
type lane struct {
	running *Deploy
	waiting *Deploy
}

// openQueue reads the records in dir: the deploys that were running when
// the server stopped are failed, and returned; those that waited wait
// again, until start.
func openQueue(dir string, run Runner, now func() time.Time, finished func(Deploy)) (*queue, []Deploy, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("deploy records: %w", err)
	}
	q := &queue{dir: dir, run: run, now: now, finished: finished,
		deploys: map[string]*Deploy{}, logs: map[string]*deployLog{}, projects: map[string]*lane{}}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("deploy records: %w", err)
	}
	var waiting []*Deploy
	var interrupted []Deploy
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !deployID.MatchString(id) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, nil, fmt.Errorf("deploy records: %w", err)
		}
		var d Deploy
		if json.Unmarshal(b, &d) != nil || d.ID != id {
			continue // cut short by a crash while written: the rename did not happen
		}
		switch d.Status {
		case Running:
			d.Status, d.Finished, d.Error = Failed, now(), "the server stopped while this deploy ran; see its log"
			if err := q.save(&d); err != nil {
				return nil, nil, err
			}
			interrupted = append(interrupted, d)
		case Queued:
			waiting = append(waiting, &d)
		}
		q.deploys[d.ID] = &d
	}
	// Of those that waited, the newest of each project runs.
	slices.SortFunc(waiting, func(a, b *Deploy) int { return a.Created.Compare(b.Created) })
	for _, d := range waiting {
		if err := q.enqueue(d, false); err != nil {
			return nil, nil, err
		}
	}
	q.prune()
	return q, interrupted, nil
}

// start lets deploys start: the ones that waited first.
func (q *queue) start() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.started = true
	for _, l := range q.projects {
		if l.running == nil {
			q.next(l)
		}
	}
}

// stopStarting lets no more deploys start (the running ones go on).
func (q *queue) stopStarting() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.started = false
}

// Add records d as queued and starts it when its project's turn comes.
func (q *queue) Add(d *Deploy) error {
	d.Status, d.Created = Queued, q.now()
	return q.enqueue(d, true)
}

func (q *queue) enqueue(d *Deploy, fresh bool) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return errors.New("the server is shutting down")
	}
	if fresh {
		if err := q.save(d); err != nil {
			return err
		}
		q.deploys[d.ID] = d
	}
	l := q.projects[d.Project]
	if l == nil {
		l = &lane{}
		q.projects[d.Project] = l
	}
	if old := l.waiting; old != nil {
		old.Status, old.Finished, old.Error = Superseded, q.now(), "superseded by "+d.ID
		_ = q.save(old)
		q.ended(old)
	}
	l.waiting = d
	if l.running == nil {
		q.next(l)
	}
	return nil
}

// next starts the lane's waiting deploy. Called with q.mu held.
func (q *queue) next(l *lane) {
	d := l.waiting
	if d == nil || q.closed || !q.started {
		return
	}
	l.waiting, l.running = nil, d
	d.Status, d.Started = Running, q.now()
	_ = q.save(d)
	log := newDeployLog(filepath.Join(q.dir, d.ID+".log"))
	q.logs[d.ID] = log
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		q.mu.Lock()
		asked := *d
		q.mu.Unlock()
		out, err := q.run(q.ctx, asked, log)
		q.mu.Lock()
		defer q.mu.Unlock()
		d.Release, d.Commit = out.Release, cmp.Or(out.Commit, d.Commit)
		var refused *RefusedError
		switch {
		case err == nil:
			d.Status = Succeeded
		case errors.As(err, &refused):
			d.Status, d.Error = Refused, err.Error()
		default:
			d.Status, d.Error = Failed, err.Error()
		}
		d.Finished = q.now()
		last := "\n" + d.ID + ": " + d.Status
		if d.Release != "" {
			last += ", release " + d.Release
		}
		if d.Error != "" {
			last += ": " + d.Error
		}
		log.end(last + "\n")
		if err := q.save(d); err != nil {
			fmt.Fprintf(log, "record the deploy: %v\n", err)
		}
		log.close()
		delete(q.logs, d.ID)
		l.running = nil
		q.ended(d)
		q.next(l)
		q.pruneLocked()
	}()
}

// ended tells of a finished deploy. Called with q.mu held.
func (q *queue) ended(d *Deploy) {
	if q.finished != nil {
		q.finished(*d)
	}
}

// save writes d's record, atomically. Called with q.mu held (or before
// the queue is shared).
func (q *queue) save(d *Deploy) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(q.dir, d.ID+".json")
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("deploy record: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	if err := errors.Join(werr, f.Sync(), f.Close(), os.Rename(tmp, path)); err != nil {
		return fmt.Errorf("deploy record: %w", err)
	}
	return nil
}

// prune removes the records (and logs) of all but the newest keepRecords
// finished deploys.
func (q *queue) prune() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pruneLocked()
}

func (q *queue) pruneLocked() {
	if len(q.deploys) <= keepRecords {
		return
	}
	list := q.listLocked()
	n := 0
	for _, d := range list {
		if !d.done() {
			continue
		}
		if n++; n > keepRecords {
			os.Remove(filepath.Join(q.dir, d.ID+".json"))
			os.Remove(filepath.Join(q.dir, d.ID+".log"))
			delete(q.deploys, d.ID)
		}
	}
}

// List is every recorded deploy, newest first.
func (q *queue) List() []Deploy {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.listLocked()
}

func (q *queue) listLocked() []Deploy {
	out := make([]Deploy, 0, len(q.deploys))
	for _, d := range q.deploys {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Deploy) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out
}

// Get is one deploy's record.
func (q *queue) Get(id string) (Deploy, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d, ok := q.deploys[id]
	if !ok {
		return Deploy{}, false
	}
	return *d, true
}

// Depth is how many deploys wait.
func (q *queue) Depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, l := range q.projects {
		if l.waiting != nil {
			n++
		}
	}
	return n
}

// Log opens a deploy's log, following it while the deploy runs.
func (q *queue) Log(id string) (io.ReadCloser, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d, ok := q.deploys[id]
	if !ok {
		return nil, false
	}
	if l := q.logs[id]; l != nil {
		return l.follow(), true
	}
	f, err := os.Open(filepath.Join(q.dir, d.ID+".log"))
	if err != nil {
		return io.NopCloser(strings.NewReader("")), true // it never ran
	}
	return f, true
}

// Close starts no more deploys and waits for the running ones until ctx
// ends, then cancels them and waits for them to stop. What waits stays
// queued on disk, for the next start.
func (q *queue) Close(ctx context.Context) {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		q.cancel()
		<-done
	}
	q.cancel()
}

// deployID is the shape of the IDs newDeployID makes.
var deployID = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}-[0-9a-f]{8}$`)

func newDeployID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}
