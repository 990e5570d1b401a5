// Command ship measures deployer/ship against its peers, side by side in
// one run, over the test sshd to this machine's Docker Engine:
//
//   - ship: ship.Ship from the image's docker save archive to the host's
//     Engine over SSH, carrying only the layers the host lacks;
//   - `docker save IMAGE | gzip | ssh HOST docker load`;
//   - `docker save IMAGE | ssh HOST docker load`.
//
// It builds a ~150 MB image (a dependency layer of random bytes, and the
// demo api as the app layer), deploys it to a host that lacks it, then
// deploys a code-only change (the api rebuilt with another release string:
// a new app layer, the same dependency layer), and reports bytes on the
// wire and wall time of each way for both, with the ratios the design
// targets: ship ≤ 1.05 × the changed layer's gzip size (plus a small
// constant for manifest and config), and ≥ 20× fewer bytes than the gzip
// peer.
//
// One Engine is both the build machine and the host here. To make "the
// host lacks the layers" real, the images are built, saved with the
// Engine's docker save into archives, and removed, layers and all (the
// random layer is shared with nothing else). The archives are then the
// source: ship reads them through ship.Archive, the peers pipe them (the
// same bytes `docker save` streams) into ssh. Before each measured run the
// host is put back into the same state: for the first deploy it has
// nothing of the image, for the code change it has the first version.
// docker save itself, which every way pays on a real build machine (ship
// twice for a code change: once to read the archive's table of contents),
// is timed separately.
//
// Bytes on the wire: for ship, the bytes written into the SSH channels of
// the Engine API connections (HTTP requests, the list and inspect queries
// and the archive, chunk framing included); for the peers, the bytes
// written into ssh's standard input. ssh runs with Compression=no.
//
// Run it from the repository, with the test sshd started
// (scripts/test-sshd):
//
//	go run ./bench/ship [-dep 140] [-n 3]
//
// It removes the images it created and its temporary directory when it ends.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/semalink/deploy-action/bench/internal/benchenv"
	"github.com/semalink/deploy-action/deployer/remote"
	"github.com/semalink/deploy-action/deployer/ship"
)

type options struct {
	depMiB int
	n      int
	keep   bool
}

func main() {
	var o options
	flag.IntVar(&o.depMiB, "dep", 140, "size of the dependency layer, in MiB of random bytes")
	flag.IntVar(&o.n, "n", 3, "measured runs of each way, interleaved; the report gives medians")
	flag.BoolVar(&o.keep, "keep", false, "leave the images and the temporary directory in place")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/ship:", err)
		os.Exit(1)
	}
}

// bench is one run's state.
type bench struct {
	o       options
	repo    string // the checkout
	tmp     string
	name    string // the images' repository
	local   *client.Client
	host    *remote.Client
	dst     *client.Client // the host's Engine, over SSH, counted
	wire    atomic.Int64   // bytes written into dst's connections
	sshArgs []string
	v       [2]version
	goGzip  int64  // the last layer gzipLayer measured, by compress/gzip
	engine  string // what the Engine is
}

type version struct {
	ref, id string
	archive string
	layers  []string
	size    int64 // the image's size, from inspect
}

func run(ctx context.Context, o options) error {
	repo, err := benchenv.FindRepo()
	if err != nil {
		return err
	}
	for _, cmd := range []string{"go", "ssh", "gzip"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
	}
	env, err := benchenv.SSHEnv(repo)
	if err != nil {
		return err
	}
	local, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer local.Close()
	if _, err := local.Ping(ctx); err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	tmp, err := os.MkdirTemp("", "shipbench-")
	if err != nil {
		return err
	}
	b := &bench{o: o, repo: repo, tmp: tmp, local: local, name: fmt.Sprintf("shipbench-%d", os.Getpid())}
	defer func() {
		if o.keep {
			benchenv.Logf("left in place (-keep): images %s:v1 and :v2, directory %s", b.name, tmp)
			return
		}
		b.cleanup()
	}()

	b.host, err = remote.Dial(ctx, remote.Config{
		Addr: net.JoinHostPort(env["TEST_SSH_HOST"], env["TEST_SSH_PORT"]), User: env["TEST_SSH_USER"],
		KeyFile: env["TEST_SSH_KEY"], KnownHosts: env["TEST_SSH_KNOWN_HOSTS"],
	})
	if err != nil {
		return fmt.Errorf("%w: start the test sshd with scripts/test-sshd", err)
	}
	defer b.host.Close()
	if b.dst, err = b.countedDocker(); err != nil {
		return err
	}
	defer b.dst.Close()
	b.sshArgs = []string{
		"-p", env["TEST_SSH_PORT"], "-i", env["TEST_SSH_KEY"],
		"-o", "UserKnownHostsFile=" + env["TEST_SSH_KNOWN_HOSTS"], "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "Compression=no",
		env["TEST_SSH_USER"] + "@" + env["TEST_SSH_HOST"],
	}

	if info, err := local.Info(ctx); err == nil {
		store := "classic image store"
		for _, kv := range info.DriverStatus {
			if kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1" {
				store = "containerd image store"
			}
		}
		b.engine = fmt.Sprintf("Engine %s, storage driver %s, %s", info.ServerVersion, info.Driver, store)
	}
	saveTook, err := b.setup(ctx)
	if err != nil {
		return err
	}
	return b.measure(ctx, saveTook)
}

// ---- setup

// countedDocker is a client of the host's Engine over SSH that counts the
// bytes it writes.
func (b *bench) countedDocker() (*client.Client, error) {
	return client.NewClientWithOpts(
		client.WithHost("unix:///var/run/docker.sock"),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := b.host.DialUnix(ctx, "/var/run/docker.sock")
			if err != nil {
				return nil, err
			}
			return &countConn{Conn: conn, n: &b.wire}, nil
		}),
		client.WithAPIVersionNegotiation(),
	)
}

type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// setup builds both versions, saves them and removes them from the
// Engine. It returns how long docker save of the first took.
func (b *bench) setup(ctx context.Context) (time.Duration, error) {
	benchenv.Logf("building the demo api twice and a %d MiB dependency layer in %s", b.o.depMiB, b.tmp)
	dep := benchenv.RandomBytes(b.o.depMiB << 20)
	var saveTook time.Duration
	for i := range b.v {
		bin := filepath.Join(b.tmp, fmt.Sprintf("api-%d", i+1))
		if err := benchenv.BuildAPI(ctx, b.repo, bin, fmt.Sprintf("shipbench-%d", i+1)); err != nil {
			return 0, err
		}
		v := &b.v[i]
		v.ref = fmt.Sprintf("%s:v%d", b.name, i+1)
		if err := b.build(ctx, v.ref, dep, bin); err != nil {
			return 0, err
		}
		img, err := b.local.ImageInspect(ctx, v.ref)
		if err != nil {
			return 0, err
		}
		v.id, v.layers, v.size = img.ID, img.RootFS.Layers, img.Size
		v.archive = filepath.Join(b.tmp, fmt.Sprintf("v%d.tar", i+1))
		took, err := b.save(ctx, v.ref, v.archive)
		if err != nil {
			return 0, err
		}
		if i == 0 {
			saveTook = took
		}
	}
	if !slices.Equal(b.v[0].layers[:1], b.v[1].layers[:1]) || b.v[0].layers[1] == b.v[1].layers[1] {
		return 0, fmt.Errorf("the two versions should share the dependency layer and differ in the app layer: %v, %v", b.v[0].layers, b.v[1].layers)
	}
	for _, v := range b.v {
		if err := b.remove(ctx, v.id); err != nil {
			return 0, err
		}
	}
	if err := b.lacks(ctx, b.v[0].layers[0]); err != nil {
		return 0, err
	}
	return saveTook, nil
}

func (b *bench) build(ctx context.Context, ref string, dep []byte, bin string) error {
	api, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		for _, f := range []struct {
			name string
			data []byte
			mode int64
		}{
			{"Dockerfile", []byte("FROM scratch\nCOPY deps.bin /usr/share/deps.bin\nCOPY api /usr/local/bin/api\n" +
				"USER 65534:65534\nENTRYPOINT [\"/usr/local/bin/api\"]\nCMD [\"serve\"]\n"), 0o644},
			{"deps.bin", dep, 0o644},
			{"api", api, 0o755},
		} {
			h := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(1e9, 0)}
			if err := tw.WriteHeader(h); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := tw.Write(f.data); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	resp, err := b.local.ImageBuild(ctx, pr, build.ImageBuildOptions{
		Tags: []string{ref}, Remove: true, ForceRemove: true, Dockerfile: "Dockerfile", Version: build.BuilderV1,
	})
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("build %s: %w", ref, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("build %s: %w", ref, err)
	}
	if bytes.Contains(out, []byte(`"errorDetail"`)) {
		return fmt.Errorf("build %s: %s", ref, out)
	}
	return nil
}

// save writes docker save of ref, by name, to file.
func (b *bench) save(ctx context.Context, ref, file string) (time.Duration, error) {
	start := time.Now()
	rc, err := b.local.ImageSave(ctx, []string{ref})
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	f, err := os.Create(file)
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return 0, fmt.Errorf("save %s: %w", ref, err)
	}
	return time.Since(start), f.Close()
}

func (b *bench) remove(ctx context.Context, id string) error {
	_, err := b.local.ImageRemove(ctx, id, image.RemoveOptions{Force: true, PruneChildren: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove image %s: %w", id, err)
	}
	return nil
}

// lacks checks that no image on the Engine has layer diffID.
func (b *bench) lacks(ctx context.Context, diffID string) error {
	list, err := b.local.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		return err
	}
	for _, sum := range list {
		img, err := b.local.ImageInspect(ctx, sum.ID)
		if err == nil && slices.Contains(img.RootFS.Layers, diffID) {
			return fmt.Errorf("image %s still has the dependency layer: the host would not lack it", sum.ID)
		}
	}
	return nil
}

func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, v := range b.v {
		if v.id != "" {
			if err := b.remove(ctx, v.id); err != nil {
				benchenv.Logf("cleanup: %v", err)
			}
		}
	}
	os.RemoveAll(b.tmp)
}

// ---- measuring

// sample is one run of one way.
type sample struct {
	wire int64 // bytes on the wire
	body int64 // ship only: the archive's compressed bytes
	took time.Duration
}

type way struct {
	name string
	run  func(ctx context.Context, v version) (sample, error)
}

func (b *bench) measure(ctx context.Context, saveTook time.Duration) error {
	ways := []way{
		{"ship", b.ship},
		{"docker save | gzip | ssh docker load", func(ctx context.Context, v version) (sample, error) { return b.peer(ctx, v, true) }},
		{"docker save | ssh docker load", func(ctx context.Context, v version) (sample, error) { return b.peer(ctx, v, false) }},
	}
	// The host's state before each run: nothing of the image for the
	// first deploy; version 1 for the code change.
	first := make([][]sample, len(ways))
	for r := range b.o.n {
		for _, w := range rotate(ways, r) {
			s, err := w.run(ctx, b.v[0])
			if err != nil {
				return fmt.Errorf("first deploy, %s: %w", w.name, err)
			}
			benchenv.Logf("first deploy, %s: %s bytes, %s", w.name, num(s.wire), benchenv.Secs(s.took))
			k := slices.IndexFunc(ways, func(x way) bool { return x.name == w.name })
			first[k] = append(first[k], s)
			if err := b.remove(ctx, b.v[0].id); err != nil {
				return err
			}
		}
	}
	if _, err := ship.Ship(ctx, b.archive(b.v[0]), b.dst, b.v[0].ref, ship.Options{}); err != nil {
		return err
	}
	change := make([][]sample, len(ways))
	for r := range b.o.n {
		for _, w := range rotate(ways, r) {
			s, err := w.run(ctx, b.v[1])
			if err != nil {
				return fmt.Errorf("code change, %s: %w", w.name, err)
			}
			benchenv.Logf("code change, %s: %s bytes, %s", w.name, num(s.wire), benchenv.Secs(s.took))
			k := slices.IndexFunc(ways, func(x way) bool { return x.name == w.name })
			change[k] = append(change[k], s)
			if err := b.remove(ctx, b.v[1].id); err != nil {
				return err
			}
		}
	}

	depGz, err := b.gzipLayer(ctx, b.v[1], 0)
	if err != nil {
		return err
	}
	layerGz, err := b.gzipLayer(ctx, b.v[1], 1)
	if err != nil {
		return err
	}
	b.report(ways, first, change, layerGz, depGz, saveTook)
	return nil
}

// rotate orders the ways differently in each round, so that none always
// runs first or last.
func rotate(ways []way, r int) []way {
	k := r % len(ways)
	return append(slices.Clone(ways[k:]), ways[:k]...)
}

func (b *bench) archive(v version) *ship.Archive {
	a, err := ship.OpenArchive(v.archive)
	if err != nil {
		panic(err) // opened fine when saved
	}
	return a
}

// ship ships version v with deployer/ship.
func (b *bench) ship(ctx context.Context, v version) (sample, error) {
	before := b.wire.Load()
	start := time.Now()
	st, err := ship.Ship(ctx, b.archive(v), b.dst, v.ref, ship.Options{Host: b.host.Name()})
	took := time.Since(start)
	if err != nil {
		return sample{}, err
	}
	if st.Retries != 0 {
		return sample{}, fmt.Errorf("ship retried %d times: the figures would not be one transfer", st.Retries)
	}
	return sample{wire: b.wire.Load() - before, body: st.Sent, took: took}, b.loaded(ctx, v)
}

// peer pipes version v's docker save archive, gzipped or not, into
// `ssh HOST docker load`.
func (b *bench) peer(ctx context.Context, v version, gz bool) (sample, error) {
	start := time.Now()
	f, err := os.Open(v.archive)
	if err != nil {
		return sample{}, err
	}
	defer f.Close()
	var src io.Reader = f
	var zip *exec.Cmd
	if gz {
		zip = exec.CommandContext(ctx, "gzip", "-c")
		zip.Stdin = f
		if src, err = zip.StdoutPipe(); err != nil {
			return sample{}, err
		}
		if err := zip.Start(); err != nil {
			return sample{}, err
		}
	}
	load := exec.CommandContext(ctx, "ssh", append(slices.Clone(b.sshArgs), "docker", "load")...)
	var out bytes.Buffer
	load.Stdout, load.Stderr = &out, &out
	stdin, err := load.StdinPipe()
	if err != nil {
		return sample{}, err
	}
	if err := load.Start(); err != nil {
		return sample{}, err
	}
	n, cerr := io.Copy(stdin, src)
	stdin.Close()
	lerr := load.Wait()
	var zerr error
	if zip != nil {
		zerr = zip.Wait()
	}
	took := time.Since(start)
	if err := errors.Join(cerr, lerr, zerr); err != nil {
		return sample{}, fmt.Errorf("%w: %s", err, strings.TrimSpace(out.String()))
	}
	return sample{wire: n, took: took}, b.loaded(ctx, v)
}

// loaded checks that the host has version v under its name.
func (b *bench) loaded(ctx context.Context, v version) error {
	img, err := b.dst.ImageInspect(ctx, v.ref)
	if err != nil {
		return err
	}
	if img.ID != v.id {
		return fmt.Errorf("%s on the host is %s, want %s", v.ref, img.ID, v.id)
	}
	return nil
}

// gzipLayer is the size of `gzip -c` (level 6) of layer i's layer.tar in
// v's archive. It sets b.goGzip to the size Go's compress/gzip makes of it
// at its default level, the compressor ship uses.
func (b *bench) gzipLayer(ctx context.Context, v version, i int) (int64, error) {
	f, err := os.Open(v.archive)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	manifest, err := entry(f, "manifest.json")
	if err != nil {
		return 0, err
	}
	var ms []struct{ Layers []string }
	if err := json.Unmarshal(manifest, &ms); err != nil || len(ms) != 1 || len(ms[0].Layers) <= i {
		return 0, fmt.Errorf("manifest.json of %s: %v", v.archive, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		h, err := tr.Next()
		if err != nil {
			return 0, fmt.Errorf("find %s in %s: %w", ms[0].Layers[i], v.archive, err)
		}
		if h.Name != ms[0].Layers[i] {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return 0, err
		}
		cmd := exec.CommandContext(ctx, "gzip", "-c")
		cmd.Stdin = bytes.NewReader(data)
		var n countWriter
		cmd.Stdout = &n
		if err := cmd.Run(); err != nil {
			return 0, err
		}
		var g countWriter
		zw, _ := gzip.NewWriterLevel(&g, gzip.DefaultCompression)
		zw.Write(data)
		zw.Close()
		b.goGzip = int64(g)
		return int64(n), nil
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

func entry(f *os.File, name string) ([]byte, error) {
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("find %s: %w", name, err)
		}
		if h.Name == name {
			return io.ReadAll(tr)
		}
	}
}

// ---- report

func (b *bench) report(ways []way, first, change [][]sample, layerGz, depGz int64, saveTook time.Duration) {
	var r bytes.Buffer
	fmt.Fprintf(&r, "image %s: 2 layers, %s bytes (dependency layer: %d MiB of random bytes, gzip -6 %s bytes; app layer: the demo api)\n",
		b.name, num(b.v[0].size), b.o.depMiB, num(depGz))
	fmt.Fprintf(&r, "host: %s (this machine's Engine over the test sshd: %s); %d CPUs; medians of %d runs, ways interleaved\n",
		b.host.Name(), b.engine, runtime.NumCPU(), b.o.n)
	fmt.Fprintf(&r, "docker save of the whole image (Engine API, to a file): %s, not in the times below\n\n", benchenv.Secs(saveTook))

	table := func(title string, samples [][]sample) (wire []int64, took []time.Duration) {
		fmt.Fprintf(&r, "%s\n", title)
		fmt.Fprintf(&r, "  %-40s %15s %10s\n", "way", "bytes on wire", "time")
		for i, w := range ways {
			ws, ts := medianWire(samples[i]), medianTook(samples[i])
			wire, took = append(wire, ws), append(took, ts)
			extra := ""
			if w.name == "ship" {
				extra = fmt.Sprintf("   (archive %s, API queries and HTTP framing %s)", num(medianBody(samples[i])), num(ws-medianBody(samples[i])))
			}
			fmt.Fprintf(&r, "  %-40s %15s %10s%s\n", w.name, num(ws), benchenv.Secs(ts), extra)
		}
		fmt.Fprintln(&r)
		return wire, took
	}
	fw, ft := table("first deploy (the host has nothing of the image)", first)
	cw, ct := table("code-only change (the host has version 1)", change)

	fmt.Fprintf(&r, "changed layer (the api) gzipped: %s bytes by gzip -6, %s by Go's compress/gzip (default level, what ship uses)\n", num(layerGz), num(b.goGzip))
	fmt.Fprintf(&r, "ratios, code-only change:\n")
	fmt.Fprintf(&r, "  ship bytes / changed layer gzipped     %6.3f×  (ship sends %+d bytes besides it; target ≤ 1.05× + a small constant)\n",
		float64(cw[0])/float64(layerGz), cw[0]-layerGz)
	fmt.Fprintf(&r, "  ship bytes / the same by compress/gzip %6.3f×  (%+d bytes: manifest, config, tar headers, API queries, HTTP framing)\n",
		float64(cw[0])/float64(b.goGzip), cw[0]-b.goGzip)
	fmt.Fprintf(&r, "  save|gzip|ssh bytes / ship bytes       %6.1f×  (target ≥ 20×)\n", float64(cw[1])/float64(cw[0]))
	fmt.Fprintf(&r, "  save|ssh bytes / ship bytes            %6.1f×\n", float64(cw[2])/float64(cw[0]))
	fmt.Fprintf(&r, "  save|gzip|ssh time / ship time         %6.1f×\n", ct[1].Seconds()/ct[0].Seconds())
	fmt.Fprintf(&r, "  save|ssh time / ship time              %6.1f×\n", ct[2].Seconds()/ct[0].Seconds())
	fmt.Fprintf(&r, "ratios, first deploy:\n")
	fmt.Fprintf(&r, "  ship bytes / save|gzip|ssh bytes       %6.3f×\n", float64(fw[0])/float64(fw[1]))
	fmt.Fprintf(&r, "  ship time / save|gzip|ssh time         %6.2f×\n", ft[0].Seconds()/ft[1].Seconds())
	fmt.Fprintf(&r, "  ship time / save|ssh time              %6.2f×\n", ft[0].Seconds()/ft[2].Seconds())
	fmt.Print(r.String())
}

func medianWire(s []sample) int64 {
	v := make([]int64, len(s))
	for i := range s {
		v[i] = s[i].wire
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func medianBody(s []sample) int64 {
	v := make([]int64, len(s))
	for i := range s {
		v[i] = s[i].body
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func medianTook(s []sample) time.Duration {
	v := make([]time.Duration, len(s))
	for i := range s {
		v[i] = s[i].took
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func num(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
