package deployer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/deployer/remote"
)

// fakeHost is a host in memory: a file tree with symlinks, the handful of
// commands the pipeline runs (ln, mv, rm, readlink, ls and compose's
// version, up and run), a lock, and a fakeEngine that up starts
// containers in.
type fakeHost struct {
	mu     sync.Mutex
	files  map[string][]byte
	perms  map[string]fs.FileMode
	links  map[string]string
	eng    *fakeEngine
	locked int  // locks taken
	held   bool // the lock is held: nothing changes on the host otherwise
	// onLock runs as the lock is taken: what another deploy did meanwhile.
	onLock func(*fakeHost)
	// migrate is what the migration does: nil succeeds.
	migrate error
	ran     []string // compose subcommands run: "up RELEASE", "run SERVICE"
	// fail makes a command (its first argument) fail.
	fail map[string]error
}

func newFakeHost() *fakeHost {
	return &fakeHost{files: map[string][]byte{}, perms: map[string]fs.FileMode{}, links: map[string]string{}, eng: newFakeEngine(), fail: map[string]error{}}
}

func (h *fakeHost) Name() string { return "fake@droplet:22" }

func (h *fakeHost) Engine(context.Context) (Engine, error) { return h.eng, nil }

func (h *fakeHost) WriteFile(_ context.Context, p string, data []byte, perm fs.FileMode) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.fail["write "+path.Base(p)]; err != nil {
		return err
	}
	if !h.held {
		return fmt.Errorf("fake host: %s written without the deploy lock", p)
	}
	h.files[p], h.perms[p] = slices.Clone(data), perm
	return nil
}

func (h *fakeHost) ReadFile(_ context.Context, p string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b, ok := h.files[p]; ok {
		return slices.Clone(b), nil
	}
	return nil, fmt.Errorf("read %s: %w", p, fs.ErrNotExist)
}

func (h *fakeHost) Output(_ context.Context, args ...string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case len(args) == 2 && args[0] == "readlink":
		if to, ok := h.links[args[1]]; ok {
			return []byte(to + "\n"), nil
		}
	case len(args) == 3 && args[0] == "ls" && args[1] == "-1":
		var names []string
		for _, p := range slices.Sorted(maps.Keys(h.files)) {
			if rest, ok := strings.CutPrefix(p, args[2]+"/"); ok {
				names = appendUnique(names, strings.SplitN(rest, "/", 2)[0])
			}
		}
		if len(names) > 0 {
			return []byte(strings.Join(names, "\n") + "\n"), nil
		}
		// A directory exists here only with files in it.
		return nil, &remote.ExitError{Args: args, Code: 2, Stderr: "ls: cannot access '" + args[2] + "': No such file or directory"}
	default:
		return nil, fmt.Errorf("fake host: unexpected command %q", args)
	}
	return nil, &remote.ExitError{Args: args, Code: 1}
}

func (h *fakeHost) Run(ctx context.Context, c remote.Cmd) error {
	a := c.Args
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.fail[a[0]]; err != nil {
		return err
	}
	if !h.held && !slices.Equal(a, []string{"docker", "compose", "version", "--short"}) {
		return fmt.Errorf("fake host: %q run without the deploy lock", a)
	}
	switch {
	case len(a) == 4 && a[0] == "ln" && a[1] == "-sfn":
		h.links[a[3]] = a[2]
	case len(a) == 4 && a[0] == "mv" && a[1] == "-T":
		to, ok := h.links[a[2]]
		if !ok {
			return &remote.ExitError{Args: a, Code: 1}
		}
		delete(h.links, a[2])
		h.links[a[3]] = to
	case len(a) == 4 && a[0] == "rm" && a[1] == "-rf" && a[2] == "--":
		for p := range h.files {
			if p == a[3] || strings.HasPrefix(p, a[3]+"/") {
				delete(h.files, p)
			}
		}
	case len(a) > 2 && a[0] == "docker" && a[1] == "compose":
		return h.compose(ctx, a[2:], c.Stdout)
	default:
		return fmt.Errorf("fake host: unexpected command %q", a)
	}
	return nil
}

// compose plays docker compose: version, up (every service of the
// release's release.json gets a container in the engine) and run (the
// migration).
func (h *fakeHost) compose(_ context.Context, a []string, stdout io.Writer) error {
	if slices.Equal(a, []string{"version", "--short"}) {
		_, err := io.WriteString(stdout, "2.40.3\n")
		return err
	}
	var dir string
	for i := 0; i+1 < len(a); i++ {
		if a[i] == "--project-directory" {
			dir = a[i+1]
		}
	}
	id := path.Base(dir)
	switch {
	case slices.Contains(a, "up"):
		h.ran = append(h.ran, "up "+id)
		rel, err := parseRelease(h.files[path.Join(dir, "release.json")])
		if err != nil {
			return err
		}
		h.eng.up(a[slices.Index(a, "-p")+1], rel)
	case slices.Contains(a, "run"):
		h.ran = append(h.ran, "run "+a[len(a)-1])
		if h.migrate != nil {
			return &remote.ExitError{Args: a, Code: 1, Stderr: h.migrate.Error()}
		}
	default:
		return fmt.Errorf("fake compose: unexpected %q", a)
	}
	return nil
}

func (h *fakeHost) Lock(context.Context, string, []byte, time.Duration, func([]byte)) (remote.Unlocker, error) {
	h.mu.Lock()
	if h.held {
		h.mu.Unlock()
		return nil, errors.New("fake host: the lock is taken twice")
	}
	h.locked++
	h.held = true
	onLock := h.onLock
	h.mu.Unlock()
	if onLock != nil {
		onLock(h)
	}
	return fakeLock{h}, nil
}

type fakeLock struct{ h *fakeHost }

func (l fakeLock) Unlock() error {
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	l.h.held = false
	return nil
}

func (fakeLock) Lost() <-chan struct{} { return nil }

// current is the release current points at, "" for none.
func (h *fakeHost) current(root string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if to, ok := h.links[path.Join(root, "current")]; ok {
		return path.Base(to)
	}
	return ""
}

// fakeEngine holds images and containers. Services whose image is in
// broken exit as soon as up starts them; the others are healthy.
type fakeEngine struct {
	Engine // the methods a test needs but this does not have panic
	mu     sync.Mutex
	images map[string]image.InspectResponse // by reference and by ID
	pulls  []string
	broken map[string]bool
	ctrs   []container.Summary
	states map[string]container.State
	vols   map[string]bool
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{images: map[string]image.InspectResponse{}, broken: map[string]bool{}, states: map[string]container.State{}, vols: map[string]bool{}}
}

// addImage puts an image on the engine as ref.
func (e *fakeEngine) addImage(ref, id string, size int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	img := image.InspectResponse{ID: id, Size: size, RepoTags: []string{ref}}
	e.images[ref], e.images[id] = img, img
}

func (e *fakeEngine) has(ref string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.images[ref]
	return ok
}

func (e *fakeEngine) Info(context.Context) (system.Info, error) {
	return system.Info{ServerVersion: "28.5.1", MemTotal: 4 << 30, Driver: "overlay2"}, nil
}

func (e *fakeEngine) Close() error { return nil }

func (e *fakeEngine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if img, ok := e.images[ref]; ok {
		return img, nil
	}
	return image.InspectResponse{}, cerrdefs.ErrNotFound.WithMessage("No such image: " + ref)
}

func (e *fakeEngine) ImageTag(_ context.Context, src, ref string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	img, ok := e.images[src]
	if !ok {
		return cerrdefs.ErrNotFound.WithMessage("No such image: " + src)
	}
	e.images[ref] = img
	return nil
}

// ImagePull finds any reference under registry.example/.
func (e *fakeEngine) ImagePull(_ context.Context, ref string, _ image.PullOptions) (io.ReadCloser, error) {
	e.mu.Lock()
	e.pulls = append(e.pulls, ref)
	e.mu.Unlock()
	if !strings.HasPrefix(ref, "registry.example/") {
		return io.NopCloser(strings.NewReader(`{"error":"pull access denied for ` + ref + `"}`)), nil
	}
	sum := sha256.Sum256([]byte(ref))
	e.addImage(ref, "sha256:"+hex.EncodeToString(sum[:]), 50<<20)
	return io.NopCloser(strings.NewReader(`{"status":"Downloaded newer image"}`)), nil
}

func (e *fakeEngine) ImageRemove(_ context.Context, ref string, _ image.RemoveOptions) ([]image.DeleteResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.images[ref]; !ok {
		return nil, cerrdefs.ErrNotFound.WithMessage("No such image: " + ref)
	}
	delete(e.images, ref)
	return []image.DeleteResponse{{Untagged: ref}}, nil
}

// up replaces the project's service containers with the release's.
func (e *fakeEngine) up(project string, rel *Release) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ctrs = slices.DeleteFunc(e.ctrs, func(c container.Summary) bool { return c.Labels["com.docker.compose.oneoff"] == "False" })
	for _, s := range rel.Services {
		id := fmt.Sprintf("%s-%s-%s", project, s.Name, rel.ID)
		e.ctrs = append(e.ctrs, container.Summary{ID: id, Image: rel.Images[s.Name], Labels: map[string]string{
			"com.docker.compose.project": project, "com.docker.compose.service": s.Name, "com.docker.compose.oneoff": "False"}})
		st := container.State{Status: container.StateRunning, Running: true, StartedAt: time.Now().UTC().Format(time.RFC3339Nano),
			Health: &container.Health{Status: container.Healthy}}
		if e.broken[rel.Images[s.Name]] {
			st = container.State{Status: container.StateExited, ExitCode: 1}
		}
		e.states[id] = st
	}
}

// running is the images of the running service containers, by service;
// with all, of the stopped ones too.
func (e *fakeEngine) running(all ...bool) map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]string{}
	for _, c := range e.ctrs {
		if e.states[c.ID].Running || len(all) > 0 && all[0] {
			out[c.Labels["com.docker.compose.service"]] = c.Image
		}
	}
	return out
}

// ImageList lists the tags that match a reference filter.
func (e *fakeEngine) ImageList(_ context.Context, o image.ListOptions) ([]image.Summary, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []image.Summary
	for ref, img := range e.images {
		for _, pattern := range o.Filters.Get("reference") {
			if ok, _ := path.Match(pattern, ref); ok {
				out = append(out, image.Summary{ID: img.ID, RepoTags: []string{ref}})
			}
		}
	}
	return out, nil
}

func (e *fakeEngine) ContainerList(_ context.Context, o container.ListOptions) ([]container.Summary, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []container.Summary
	for _, c := range e.ctrs {
		if matches(c.Labels, o.Filters) && (o.All || e.states[c.ID].Running) {
			out = append(out, c)
		}
	}
	return out, nil
}

// matches applies label filters: "key=value" or "key".
func matches(labels map[string]string, f filters.Args) bool {
	for _, l := range f.Get("label") {
		k, v, hasValue := strings.Cut(l, "=")
		if got, ok := labels[k]; !ok || hasValue && got != v {
			return false
		}
	}
	return true
}

func (e *fakeEngine) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, ok := e.states[id]
	if !ok {
		return container.InspectResponse{}, cerrdefs.ErrNotFound.WithMessage("No such container: " + id)
	}
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: id, Name: "/" + id, State: &st},
		Config:            &container.Config{Healthcheck: &container.HealthConfig{Test: []string{"CMD", "probe"}}},
	}, nil
}

func (e *fakeEngine) ContainerRemove(_ context.Context, id string, _ container.RemoveOptions) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ctrs = slices.DeleteFunc(e.ctrs, func(c container.Summary) bool { return c.ID == id })
	delete(e.states, id)
	return nil
}

func (e *fakeEngine) ContainerLogs(context.Context, string, container.LogsOptions) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("")), nil
}

// Events is a stream with nothing on it: Wait sees the containers when
// it lists them once up has returned.
func (e *fakeEngine) Events(context.Context, events.ListOptions) (<-chan events.Message, <-chan error) {
	return make(chan events.Message), make(chan error)
}

func (e *fakeEngine) VolumeInspect(_ context.Context, name string) (volume.Volume, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.vols[name] {
		return volume.Volume{Name: name}, nil
	}
	return volume.Volume{}, cerrdefs.ErrNotFound.WithMessage("no such volume: " + name)
}

// fakePlan is the plan of the project in dir for h, made as every front
// door makes one.
func fakePlan(t *testing.T, dir string, h *fakeHost, env ...string) *Plan {
	t.Helper()
	p, err := NewPlan(t.Context(), Options{
		Load:        project.Options{WorkingDir: dir, Env: env},
		Hosts:       []string{"deploy@droplet"},
		Fingerprint: "SHA256:" + strings.Repeat("A", 43),
		Root:        "/srv/deployer", Commit: "3f2a9c1d",
		HealthTimeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Settle = time.Millisecond
	p.connect = func(context.Context, remote.Config) (Host, func() error, error) {
		return h, func() error { return nil }, nil
	}
	return p
}

var errFake = errors.New("fake failure")

func (e *fakeEngine) ContainerStop(_ context.Context, id string, _ container.StopOptions) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.states[id] = container.State{Status: container.StateExited}
	return nil
}

func (e *fakeEngine) VolumeRemove(_ context.Context, name string, _ bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.vols[name] {
		return cerrdefs.ErrNotFound.WithMessage("no such volume: " + name)
	}
	delete(e.vols, name)
	return nil
}
