package ship

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	"github.com/semalink/deploy-action/deployer/remote"
	"github.com/semalink/deploy-action/deployer/remote/remotetest"
)

// The end-to-end tests need a source that has an image and a destination
// that lacks it, while this machine has one Docker Engine, which the test
// sshd reaches too. So the images are built on the Engine, saved with the
// Engine's own docker save into archives on disk, and removed from the
// Engine, layers and all: each has a layer of random bytes that nothing
// else shares, so once its images are gone the Engine really lacks it. The
// source is then an Archive of those files, and the destination is the
// real Engine over the real SSH connection, which must rebuild the images
// from what Ship sends it, with their original IDs.

// depSize is the size of the images' shared dependency layer.
const depSize = 16 << 20

type fixture struct {
	local *client.Client  // this machine's Engine, for building and cleaning up
	host  *remote.Client  // the test sshd
	dst   *client.Client  // the same Engine, over SSH
	repo  string          // the images' repository, unique to the run
	v     map[int]*built  // the builds, by version
	ctx   context.Context // the test's
}

// built is one version of the test image: the same dependency layer, and
// an app layer of its own.
type built struct {
	ref, id  string
	archive  string
	layers   []string // diff IDs
	appGzip  int64    // gzip size of the app layer's layer.tar
	fullGzip int64    // gzip size of both layers' layer.tar
}

func newFixture(t *testing.T, versions ...int) *fixture {
	t.Helper()
	ctx := t.Context()
	local, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	if _, err := local.Ping(ctx); err != nil {
		remotetest.Need(t, "no Docker Engine here: %v", err)
	}
	if _, err := exec.LookPath("go"); err != nil {
		remotetest.Need(t, "no go command to build the test program: %v", err)
	}
	env := remotetest.SSH(t)
	host, err := remote.Dial(ctx, remote.Config{
		Addr: net.JoinHostPort(env.Host, env.Port), User: env.User, KeyFile: env.Key, KnownHosts: env.KnownHosts,
	})
	if err != nil {
		remotetest.Need(t, "test sshd: %v: run scripts/test-sshd", err)
	}
	t.Cleanup(func() { host.Close() })
	dst, err := host.Docker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Close() })

	f := &fixture{local: local, host: host, dst: dst, ctx: ctx, v: map[int]*built{},
		repo: fmt.Sprintf("shiptest-%x", rand.Uint32())}
	dir := t.TempDir()
	dep := make([]byte, depSize)
	rng := rand.NewChaCha8([32]byte(randomBytes(32)))
	rng.Read(dep)
	for _, v := range versions {
		f.v[v] = f.build(t, dir, dep, v)
	}
	// Removed only once all are built, so that they share the dependency
	// layer through the builder's cache, as builds of one app do.
	for _, b := range f.v {
		f.remove(t, b.id)
	}
	for _, b := range f.v {
		if _, err := local.ImageInspect(ctx, b.id); !cerrdefs.IsNotFound(err) {
			t.Fatalf("image %s is still on the Engine after removal (err %v)", b.id, err)
		}
	}
	f.lacks(t, f.v[versions[0]].layers[0])
	t.Cleanup(func() {
		for _, b := range f.v {
			f.remove(t, b.id)
		}
	})
	return f
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}

// build builds version v of the test image, saves it to an archive and
// measures its layers' gzip sizes.
func (f *fixture) build(t *testing.T, dir string, dep []byte, v int) *built {
	t.Helper()
	app := filepath.Join(dir, fmt.Sprintf("app-%d", v))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", fmt.Sprintf("-X main.release=v%d", v), "-o", app, "./testdata/app")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test program: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, file := range []struct {
		name string
		data []byte
		mode int64
	}{
		{"Dockerfile", []byte("FROM scratch\nCOPY dep.bin /dep.bin\nCOPY app /app\nENTRYPOINT [\"/app\"]\n"), 0o644},
		{"dep.bin", dep, 0o644},
		{"app", bin, 0o755},
	} {
		h := &tar.Header{Name: file.name, Mode: file.mode, Size: int64(len(file.data)), ModTime: time.Unix(1e9, 0)}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(file.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ref := fmt.Sprintf("%s:v%d", f.repo, v)
	resp, err := f.local.ImageBuild(f.ctx, &ctxTar, build.ImageBuildOptions{
		Tags: []string{ref}, Remove: true, ForceRemove: true, Dockerfile: "Dockerfile", Version: build.BuilderV1,
	})
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	_, err = readLoad(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	img, err := f.local.ImageInspect(f.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	b := &built{ref: ref, id: img.ID, layers: img.RootFS.Layers, archive: filepath.Join(dir, fmt.Sprintf("v%d.tar", v))}
	if len(b.layers) != 2 {
		t.Fatalf("%s has %d layers, want 2", ref, len(b.layers))
	}
	// Saved by name, so the archive carries RepoTags and repositories,
	// which Ship must strip.
	rc, err := f.local.ImageSave(f.ctx, []string{ref})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out, err := os.Create(b.archive)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, rc); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	layerFiles := layerFiles(t, b.archive, b.id)
	b.appGzip = gzipSize(t, layerFiles[1])
	b.fullGzip = gzipSize(t, layerFiles[0], layerFiles[1])
	return b
}

// layerFiles returns each layer's layer.tar from a docker save archive.
func layerFiles(t *testing.T, archive, id string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	l, err := scan(bytes.NewReader(data), id, 2)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			files[path.Clean(h.Name)], _ = io.ReadAll(tr)
		}
	}
	var out [][]byte
	for _, d := range l.data {
		out = append(out, files[d])
	}
	return out
}

func gzipSize(t *testing.T, parts ...[]byte) int64 {
	t.Helper()
	var n int64
	for _, p := range parts {
		var buf bytes.Buffer
		gz, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
		gz.Write(p)
		gz.Close()
		n += int64(buf.Len())
	}
	return n
}

func (f *fixture) remove(t *testing.T, id string) {
	t.Helper()
	_, err := f.local.ImageRemove(context.WithoutCancel(f.ctx), id, image.RemoveOptions{Force: true, PruneChildren: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("remove image %s: %v", id, err)
	}
}

// lacks fails the test if an image on the Engine still has layer diffID.
func (f *fixture) lacks(t *testing.T, diffID string) {
	t.Helper()
	list, err := f.local.ImageList(f.ctx, image.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, sum := range list {
		img, err := f.local.ImageInspect(f.ctx, sum.ID)
		if err != nil {
			continue
		}
		for _, l := range img.RootFS.Layers {
			if l == diffID {
				t.Fatalf("image %s on the Engine still has the test's dependency layer %s", sum.ID, diffID)
			}
		}
	}
}

// onHost checks that the destination has the image b, tagged.
func (f *fixture) onHost(t *testing.T, b *built) {
	t.Helper()
	img, err := f.dst.ImageInspect(f.ctx, b.ref)
	if err != nil {
		t.Fatalf("%s on the host: %v", b.ref, err)
	}
	if img.ID != b.id {
		t.Fatalf("%s on the host is %s, want %s", b.ref, img.ID, b.id)
	}
}

// notOnHost checks that the destination has neither the image nor its tag.
func (f *fixture) notOnHost(t *testing.T, b *built) {
	t.Helper()
	for _, ref := range []string{b.id, b.ref} {
		if img, err := f.dst.ImageInspect(f.ctx, ref); !cerrdefs.IsNotFound(err) {
			t.Fatalf("%s is on the host (%s, err %v): a half-sent image must not be there", ref, img.ID, err)
		}
	}
}

func (f *fixture) source(t *testing.T, b *built) *Archive {
	t.Helper()
	a, err := OpenArchive(b.archive)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// near fails unless got is within 5% (plus slack bytes) of want.
func near(t *testing.T, what string, got, want, slack int64) {
	t.Helper()
	if d := got - want; d > want/20+slack || -d > want/20+slack {
		t.Errorf("%s: sent %d bytes, want about %d (±5%% + %d)", what, got, want, slack)
	}
}

// metaSlack is what a shipped archive carries besides layer data: tar
// headers, the config, manifest.json, each layer's json, gzip framing.
const metaSlack = 16 << 10

func TestShip(t *testing.T) {
	f := newFixture(t, 1, 2, 3, 4, 5)
	t.Logf("images built in %s", f.repo)

	t.Run("New", func(t *testing.T) {
		b := f.v[1]
		var rec progressLog
		st, err := Ship(t.Context(), f.source(t, b), f.dst, b.ref, Options{Progress: rec.add})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", st)
		if st.Layers != 2 || st.Skipped != 0 || st.Full || st.Retries != 0 || st.ID != b.id {
			t.Errorf("stats %+v, want 2 layers, none skipped, not full, no retries, ID %s", st, b.id)
		}
		near(t, "whole image", st.Sent, b.fullGzip, metaSlack)
		f.onHost(t, b)
		rec.check(t, st)
	})

	t.Run("CodeChange", func(t *testing.T) {
		b := f.v[2]
		var rec progressLog
		st, err := Ship(t.Context(), f.source(t, b), f.dst, b.ref, Options{Progress: rec.add})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v; app layer gzipped: %d bytes; whole image gzipped: %d", st, b.appGzip, b.fullGzip)
		if st.Layers != 2 || st.Skipped != 1 || st.Full {
			t.Errorf("stats %+v, want the dependency layer skipped", st)
		}
		near(t, "code-only change", st.Sent, b.appGzip, metaSlack)
		f.onHost(t, b)
		rec.check(t, st)
	})

	t.Run("AlreadyThere", func(t *testing.T) {
		b := f.v[2]
		st, err := Ship(t.Context(), f.source(t, b), f.dst, b.ref, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Sent != 0 || st.Skipped != 2 {
			t.Errorf("stats %+v, want nothing sent", st)
		}
		f.onHost(t, b)
	})

	t.Run("CutMidLoad", func(t *testing.T) {
		b := f.v[3]
		cut := &cutter{after: 256 << 10}
		dst := cutDocker(t, f.host, cut)

		cut.arm(1)
		st, err := Ship(t.Context(), f.source(t, b), dst, b.ref, Options{Retries: -1, Host: "test-host"})
		if err == nil {
			t.Fatalf("a cut load succeeded: %+v", st)
		}
		t.Logf("without retries: %v", err)
		for _, want := range []string{b.ref, "test-host", "deploy again"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if cut.left() != 0 {
			t.Fatal("the connection was not cut")
		}
		f.notOnHost(t, b)

		cut.arm(1)
		var rec progressLog
		st, err = Ship(t.Context(), f.source(t, b), dst, b.ref, Options{Progress: rec.add})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("with retries: %+v", st)
		if st.Retries != 1 || st.Skipped != 1 {
			t.Errorf("stats %+v, want one retry and the dependency layer skipped", st)
		}
		if st.Sent <= b.appGzip {
			t.Errorf("sent %d bytes over two attempts, want more than the app layer's %d", st.Sent, b.appGzip)
		}
		f.onHost(t, b)
		rec.check(t, st)
	})

	t.Run("SSHConnectionLost", func(t *testing.T) {
		// The whole SSH connection goes, not one stream on it: the deploy
		// lock went with it, so Ship must not reconnect; its retries fail
		// fast and the error says what to do.
		b := f.v[5]
		cut := &cutter{after: 256 << 10}
		env := remotetest.SSH(t)
		h, err := remote.Dial(t.Context(), remote.Config{
			Addr: net.JoinHostPort(env.Host, env.Port), User: env.User, KeyFile: env.Key, KnownHosts: env.KnownHosts,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return &cutConn{Conn: conn, c: cut}, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		dst, err := h.Docker(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		cut.arm(1)
		st, err := Ship(t.Context(), f.source(t, b), dst, b.ref, Options{Host: h.Name()})
		if err == nil {
			t.Fatalf("shipped over a lost connection: %+v", st)
		}
		t.Logf("%v", err)
		for _, want := range []string{b.ref, h.Name(), "SSH connection to the host is gone", "deploy again"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if st.Retries > 1 {
			t.Errorf("%d retries on a lost SSH connection, want it noticed at the first", st.Retries)
		}
		f.notOnHost(t, b)
	})

	t.Run("ContainerdStoreFallback", func(t *testing.T) {
		// The classic store takes a full archive too, so the fallback can
		// run here: only the store's name is faked.
		b := f.v[4]
		dst := containerdLike{f.dst}
		st, err := Ship(t.Context(), f.source(t, b), dst, b.ref, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", st)
		if !st.Full || !strings.Contains(st.FullReason, "containerd") || st.Skipped != 0 {
			t.Errorf("stats %+v, want a full archive and why", st)
		}
		near(t, "full fallback", st.Sent, b.fullGzip, metaSlack)
		f.onHost(t, b)
	})
}

func TestArchive(t *testing.T) {
	f := newFixture(t, 1)
	b := f.v[1]
	a := f.source(t, b)
	img, err := a.ImageInspect(t.Context(), b.ref)
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != b.id || strings.Join(img.RootFS.Layers, " ") != strings.Join(b.layers, " ") {
		t.Errorf("archive says %s %v, the Engine said %s %v", img.ID, img.RootFS.Layers, b.id, b.layers)
	}
	if img.Size < depSize {
		t.Errorf("size %d, want at least %d", img.Size, depSize)
	}
	for _, ref := range []string{b.id, strings.TrimPrefix(b.id, "sha256:")[:12]} {
		if _, err := a.ImageInspect(t.Context(), ref); err != nil {
			t.Errorf("inspect %s: %v", ref, err)
		}
	}
	if _, err := a.ImageInspect(t.Context(), f.repo+":other"); !cerrdefs.IsNotFound(err) {
		t.Errorf("inspect of another image: %v, want not found", err)
	}
	st, err := Ship(t.Context(), a, f.dst, f.repo+":other", Options{})
	if err == nil || !strings.Contains(err.Error(), "build it first") {
		t.Errorf("shipping an image the source lacks: %v (%+v), want an error with a fix", err, st)
	}
}

// progressLog records Progress calls.
type progressLog struct {
	mu    sync.Mutex
	calls []Progress
	at    []time.Time
}

func (p *progressLog) add(pr Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls, p.at = append(p.calls, pr), append(p.at, time.Now())
}

// check: Sent never goes down and never passes Total, the last report is
// exact, and reports come at most about four a second.
func (p *progressLog) check(t *testing.T, st Stats) {
	t.Helper()
	if len(p.calls) < 2 {
		t.Fatalf("%d progress reports, want at least a first and a last", len(p.calls))
	}
	for i, c := range p.calls {
		if c.Sent > c.Total || c.Rate < 0 || c.Left < 0 {
			t.Errorf("report %d: %+v: Sent above Total, or negative", i, c)
		}
		if i > 0 && c.Sent < p.calls[i-1].Sent {
			t.Errorf("report %d: Sent went down from %d to %d", i, p.calls[i-1].Sent, c.Sent)
		}
	}
	last := p.calls[len(p.calls)-1]
	if last.Sent != st.Sent || last.Total != st.Sent || last.Left != 0 {
		t.Errorf("last report %+v, want Sent = Total = %d and nothing left", last, st.Sent)
	}
	span := p.at[len(p.at)-1].Sub(p.at[0])
	if max := int(span/reportEvery) + 3 + 2*st.Retries; len(p.calls) > max {
		t.Errorf("%d reports in %s, want at most %d", len(p.calls), span, max)
	}
}

// cutter closes an Engine connection once it has written more than after
// bytes, as many times as it is armed.
type cutter struct {
	after int64
	cuts  atomic.Int32
}

func (c *cutter) arm(n int32) { c.cuts.Store(n) }
func (c *cutter) left() int32 { return c.cuts.Load() }

type cutConn struct {
	net.Conn
	c       *cutter
	written atomic.Int64
}

func (cc *cutConn) Write(p []byte) (int, error) {
	if cc.written.Add(int64(len(p))) > cc.c.after && cc.c.cuts.Load() > 0 && cc.c.cuts.Add(-1) >= 0 {
		cc.Conn.Close()
		return 0, net.ErrClosed
	}
	return cc.Conn.Write(p)
}

// cutDocker is a client of the host's Engine whose connections go through
// the cutter.
func cutDocker(t *testing.T, h *remote.Client, c *cutter) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(
		client.WithHost("unix:///var/run/docker.sock"),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := h.DialUnix(ctx, "/var/run/docker.sock")
			if err != nil {
				return nil, err
			}
			return &cutConn{Conn: conn, c: c}, nil
		}),
		client.WithAPIVersionNegotiation(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// containerdLike is an Engine that says it keeps images in containerd.
type containerdLike struct{ Engine }

func (c containerdLike) Info(ctx context.Context) (system.Info, error) {
	info, err := c.Engine.Info(ctx)
	info.DriverStatus = append(info.DriverStatus, [2]string{"driver-type", containerdStore})
	return info, err
}
