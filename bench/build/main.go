// Command build measures deployer/build's BuildKit builds on this machine,
// side by side in one run:
//
//  1. A rebuild with nothing changed against the cold build before it, on
//     the Docker Engine's built-in BuildKit (build.Engine) and on the
//     standalone buildkitd of scripts/buildkitd (build.Dial with
//     build.WithLoad(build.EngineLoad(docker))): each sample's times, the
//     ratio rebuild/cold, and the steps taken from the cache
//     (Result.Cached of Result.Steps).
//  2. The local cache directory's size after each of five builds that
//     change the app layer, on the standalone buildkitd with
//     --cache-from type=local,src=DIR --cache-to type=local,dest=DIR,mode=max:
//     through package build, which exports to a new directory and swaps it
//     in (DIR/api), and, for contrast, through BuildKit's client alone,
//     exporting into the same directory every time as BuildKit does by
//     itself; the ratio of the size after five builds to the size after one
//     for both.
//
// The image is about 150 MB: FROM scratch, a dependency layer of random
// bytes (-dep MiB) and the demo api (examples/demo/api, a static Go
// binary) as the app layer. A change is the api linked with another
// -X main.release: a new app layer over the same dependency layer.
//
// A cold build is one for which BuildKit's cache holds nothing: every cold
// build gets a build context of its own, in a new directory, with fresh
// random dependency bytes and an api linked with a release string of its
// own, so no step's cache key can match a record of an earlier build on
// either builder (the first COPY's key is the checksum of the new bytes,
// and every later step's key depends on it), and BuildKit has no copy of
// the context from an earlier transfer (it keys those by the directory).
// The benchmark checks it: a cold build with a step from the cache is an
// error. The builders' other caches are left alone, as they would be on a
// CI runner that builds something new.
//
// It leaves the shared buildkitd running, and removes what it made: the
// images it tagged (buildbench-PID:*), the cache records its builds
// created on both builders (new records whose description names one of
// its steps, and build-context and COPY records created while one of its
// builds ran; never records in use; see prune), and its temporary
// directory, cache directories included. Run it from the repository:
//
//	go run ./bench/build [-dep 140] [-n 5] [-builds 5] [-addr unix://…]
//
// See bench/README.md.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	bkclient "github.com/moby/buildkit/client"
	"github.com/semalink/deploy-action/bench/internal/benchenv"
	"github.com/semalink/deploy-action/deployer/build"
	"github.com/sirupsen/logrus"
	"github.com/tonistiigi/fsutil"
)

// dockerfile is the benchmark's image: a big dependency layer, then the
// app. Its paths name the benchmark, so that its cache records can be told
// from others' when it cleans up.
const dockerfile = `FROM scratch
COPY deps.bin /opt/buildbench/deps.bin
COPY api /opt/buildbench/api
USER 65534:65534
ENTRYPOINT ["/opt/buildbench/api"]
`

type options struct {
	depMiB  int
	n       int
	builds  int
	addr    string
	verbose bool
	keep    bool
}

func main() {
	var o options
	flag.IntVar(&o.depMiB, "dep", 140, "size of the dependency layer, in MiB of random bytes")
	flag.IntVar(&o.n, "n", 5, "cold build and rebuild pairs on each builder, interleaved")
	flag.IntVar(&o.builds, "builds", 5, "builds with a changed app layer for the local cache's size")
	flag.StringVar(&o.addr, "addr", "", "the standalone buildkitd's address (default: the one scripts/buildkitd start prints)")
	flag.BoolVar(&o.verbose, "v", false, "show BuildKit's progress (plain) on stderr")
	flag.BoolVar(&o.keep, "keep", false, "leave the images, cache records and temporary directory in place")
	flag.Parse()
	if o.n < 1 || o.builds < 2 || o.depMiB < 1 {
		fmt.Fprintln(os.Stderr, "bench/build: -n ≥ 1, -builds ≥ 2 and -dep ≥ 1")
		os.Exit(2)
	}
	// BuildKit's client logs through logrus (a local cache store warns that
	// the filesystem has no fs-verity); cmd/deployer discards it too.
	logrus.SetOutput(io.Discard)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/build:", err)
		os.Exit(1)
	}
}

// bench is one run's state.
type bench struct {
	o     options
	repo  string
	tmp   string
	name  string // the images' repository: buildbench-PID
	start time.Time

	docker *client.Client
	engine *build.Builder // the Engine's BuildKit
	alone  *build.Builder // the standalone buildkitd
	bkEng  *bkclient.Client
	bkAln  *bkclient.Client

	// before are the cache records each builder had when the benchmark
	// started: the cleanup never removes them.
	before map[*bkclient.Client]map[string]bool
	// windows are when each builder ran the benchmark's builds: on the
	// Engine's BuildKit 0.8 a COPY's record says only "fileop target",
	// so the cleanup goes by when a record was made.
	windows map[*bkclient.Client][][2]time.Time
	tags    []string
	loadT   time.Duration // the last standalone build's tarball export and docker load
	seq     int
}

func run(ctx context.Context, o options) error {
	repo, err := benchenv.FindRepo()
	if err != nil {
		return err
	}
	if o.addr == "" {
		out, err := exec.CommandContext(ctx, filepath.Join(repo, "scripts", "buildkitd"), "start").Output()
		if err != nil {
			return fmt.Errorf("scripts/buildkitd start: %w", err)
		}
		o.addr = strings.TrimSpace(string(out))
	}
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer docker.Close()
	if _, err := docker.Ping(ctx); err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	tmp, err := os.MkdirTemp("", "buildbench-")
	if err != nil {
		return err
	}
	b := &bench{o: o, repo: repo, tmp: tmp, docker: docker, name: fmt.Sprintf("buildbench-%d", os.Getpid()),
		start: time.Now(), before: map[*bkclient.Client]map[string]bool{}, windows: map[*bkclient.Client][][2]time.Time{}}
	// Runs after the clients' Close, deferred below: it closes them itself.
	defer func() {
		if o.keep {
			benchenv.Logf("left in place (-keep): images %s:*, directory %s, cache records", b.name, tmp)
			return
		}
		b.cleanup()
	}()

	if b.engine, err = build.Engine(ctx, docker); err != nil {
		return err
	}
	defer b.engine.Close()
	load := build.EngineLoad(docker)
	if b.alone, err = build.Dial(ctx, o.addr, build.WithName(o.addr), build.WithLoad(func(ctx context.Context, r io.Reader) error {
		t := time.Now()
		err := load(ctx, r)
		b.loadT = time.Since(t)
		return err
	})); err != nil {
		return err
	}
	defer b.alone.Close()
	if b.bkEng, err = bkclient.New(ctx, "",
		bkclient.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return docker.DialHijack(ctx, "/grpc", "h2c", nil)
		}),
		bkclient.WithSessionDialer(func(ctx context.Context, proto string, meta map[string][]string) (net.Conn, error) {
			return docker.DialHijack(ctx, "/session", proto, meta)
		})); err != nil {
		return err
	}
	if b.bkAln, err = bkclient.New(ctx, o.addr); err != nil {
		return err
	}
	for _, c := range []*bkclient.Client{b.bkEng, b.bkAln} {
		du, err := c.DiskUsage(ctx)
		if err != nil {
			return fmt.Errorf("list the builder's cache records: %w", err)
		}
		b.before[c] = map[string]bool{}
		for _, r := range du {
			b.before[c][r.ID] = true
		}
	}

	var report bytes.Buffer
	fmt.Fprintf(&report, "%s\n", b.machine(ctx))
	fmt.Fprintf(&report, "image: FROM scratch, %d MiB of random bytes (dependency layer), the demo api (app layer); 2 steps\n", o.depMiB)
	fmt.Fprintf(&report, "load average at the start: %s\n\n", benchenv.LoadAvg())
	if err := b.rebuilds(ctx, &report); err != nil {
		return err
	}
	if err := b.cacheSizes(ctx, &report); err != nil {
		return err
	}
	fmt.Fprintf(&report, "load average at the end: %s\n", benchenv.LoadAvg())
	fmt.Print(report.String())
	return nil
}

// ---- 1. rebuild against cold build

type builder struct {
	name string
	b    *build.Builder
	load bool // its image is a tarball loaded into the Engine
}

type pair struct {
	cold, warm       time.Duration
	coldRes, warmRes build.Result
	coldLoad         time.Duration
	warmLoad         time.Duration
}

func (b *bench) rebuilds(ctx context.Context, report *bytes.Buffer) error {
	builders := []builder{
		{name: "Engine's BuildKit", b: b.engine},
		{name: "standalone buildkitd", b: b.alone, load: true},
	}
	pairs := make([][]pair, len(builders))
	for r := range b.o.n {
		for k := range builders {
			k := (k + r) % len(builders) // alternate which goes first
			bd := builders[k]
			dir, err := b.context(ctx, fmt.Sprintf("cold-%d-%d", r+1, k))
			if err != nil {
				return err
			}
			tag := b.tag(fmt.Sprintf("r%d-%d", r+1, k))
			req := build.Request{Service: "api", Context: dir, Tag: tag}
			var p pair
			if p.cold, p.coldRes, err = b.build(ctx, bd.b, req, build.Options{}); err != nil {
				return err
			}
			p.coldLoad = b.loadT
			if p.coldRes.Cached != 0 {
				return fmt.Errorf("%s: the cold build took %d of its %d steps from the cache: it was not cold", bd.name, p.coldRes.Cached, p.coldRes.Steps)
			}
			if p.warm, p.warmRes, err = b.build(ctx, bd.b, req, build.Options{}); err != nil {
				return err
			}
			p.warmLoad = b.loadT
			if p.warmRes.ImageID != p.coldRes.ImageID {
				return fmt.Errorf("%s: the rebuild made %s, the cold build %s", bd.name, p.warmRes.ImageID, p.coldRes.ImageID)
			}
			benchenv.Logf("%s, round %d: cold %s (%d/%d cached), rebuild %s (%d/%d cached)", bd.name, r+1,
				benchenv.Secs(p.cold), p.coldRes.Cached, p.coldRes.Steps, benchenv.Secs(p.warm), p.warmRes.Cached, p.warmRes.Steps)
			pairs[k] = append(pairs[k], p)
			// The image goes now: the next round's contexts are new anyway.
			b.removeTag(ctx, tag)
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
	}

	fmt.Fprintf(report, "1. rebuild with nothing changed against the cold build (%d pairs per builder, builders alternating)\n", b.o.n)
	fmt.Fprintf(report, "   cold: a new context (new directory, fresh random bytes, api with a release of its own): 0 steps cached, checked\n")
	for k, bd := range builders {
		ps := pairs[k]
		var cold, warm, ratio []float64
		for _, p := range ps {
			cold, warm = append(cold, p.cold.Seconds()), append(warm, p.warm.Seconds())
			ratio = append(ratio, p.warm.Seconds()/p.cold.Seconds())
		}
		fmt.Fprintf(report, "   %s\n", bd.name)
		fmt.Fprintf(report, "     cold build   median %6.2f s  samples %s  cached %s\n", median(cold), list(cold, "%.2f"), cachedList(ps, true))
		fmt.Fprintf(report, "     rebuild      median %6.2f s  samples %s  cached %s\n", median(warm), list(warm, "%.2f"), cachedList(ps, false))
		fmt.Fprintf(report, "     rebuild/cold %6.3f× (medians); per pair %s\n", median(warm)/median(cold), list(ratio, "%.3f"))
		if bd.load {
			var cl, wl []float64
			for _, p := range ps {
				cl, wl = append(cl, p.coldLoad.Seconds()), append(wl, p.warmLoad.Seconds())
			}
			fmt.Fprintf(report, "     of which the image tarball's export and docker load: cold %s s, rebuild %s s\n", list(cl, "%.2f"), list(wl, "%.2f"))
		}
	}
	fmt.Fprintln(report)
	return nil
}

func cachedList(ps []pair, cold bool) string {
	var s []string
	for _, p := range ps {
		r := p.warmRes
		if cold {
			r = p.coldRes
		}
		s = append(s, fmt.Sprintf("%d/%d", r.Cached, r.Steps))
	}
	return strings.Join(s, " ")
}

// ---- 2. the local cache's size

func (b *bench) cacheSizes(ctx context.Context, report *bytes.Buffer) error {
	dir, err := b.context(ctx, "cache-1")
	if err != nil {
		return err
	}
	swapped := filepath.Join(b.tmp, "cache-swapped") // package build: DIR/api
	inPlace := filepath.Join(b.tmp, "cache-inplace", "api")
	o := build.Options{
		CacheFrom: []string{"type=local,src=" + swapped},
		CacheTo:   []string{"type=local,dest=" + swapped + ",mode=max"},
	}
	var sw, ip []int64
	for i := range b.o.builds {
		if i > 0 {
			if err := b.app(ctx, dir, fmt.Sprintf("cache-%d", i+1)); err != nil {
				return err
			}
		}
		tag := b.tag(fmt.Sprintf("cache-%d", i+1))
		took, res, err := b.build(ctx, b.alone, build.Request{Service: "api", Context: dir, Tag: tag}, o)
		if err != nil {
			return err
		}
		n, err := dirSize(filepath.Join(swapped, "api"))
		if err != nil {
			return err
		}
		sw = append(sw, n)
		benchenv.Logf("cache, build %d, swapped (package build): %s, %d/%d cached, cache %s", i+1, benchenv.Secs(took), res.Cached, res.Steps, mib(n))

		took, err = b.buildInPlace(ctx, dir, inPlace)
		if err != nil {
			return err
		}
		if n, err = dirSize(inPlace); err != nil {
			return err
		}
		ip = append(ip, n)
		benchenv.Logf("cache, build %d, in place (BuildKit alone): %s, cache %s", i+1, benchenv.Secs(took), mib(n))
		b.removeTag(ctx, tag)
	}
	swFiles, _ := blobs(filepath.Join(swapped, "api"))
	ipFiles, _ := blobs(inPlace)

	last := len(sw) - 1
	fmt.Fprintf(report, "2. local cache size after each of %d builds, each with a new app layer (standalone buildkitd, mode=max, imported from and exported to the same DIR)\n", b.o.builds)
	fmt.Fprintf(report, "   %-36s", "build")
	for i := range sw {
		fmt.Fprintf(report, " %11d", i+1)
	}
	fmt.Fprintf(report, "  %d vs 1\n", b.o.builds)
	row := func(name string, s []int64, files int) {
		fmt.Fprintf(report, "   %-36s", name)
		for _, n := range s {
			fmt.Fprintf(report, " %11s", mib(n))
		}
		fmt.Fprintf(report, "  %.3f×  (+%s; %d blobs at the end)\n", float64(s[last])/float64(s[0]), mib(s[last]-s[0]), files)
		fmt.Fprintf(report, "   %-36s", "  bytes")
		for _, n := range s {
			fmt.Fprintf(report, " %11d", n)
		}
		fmt.Fprintln(report)
	}
	row("swapped (package build, DIR/api)", sw, swFiles)
	row("in place (BuildKit's client alone)", ip, ipFiles)
	fmt.Fprintf(report, "   growth per build in place: %s\n\n", growth(ip))
	return nil
}

// buildInPlace is the contrast: the same build through BuildKit's client
// alone, importing the local cache from dir and exporting it into dir,
// as BuildKit does by itself (and buildx, and docker/build-push-action).
// No image is exported: only the cache matters here.
func (b *bench) buildInPlace(ctx context.Context, ctxDir, dir string) (time.Duration, error) {
	ctxFS, err := fsutil.NewFS(ctxDir)
	if err != nil {
		return 0, err
	}
	solve := bkclient.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: map[string]string{"filename": "Dockerfile"},
		LocalMounts:   map[string]fsutil.FS{"context": ctxFS, "dockerfile": ctxFS},
		CacheExports:  []bkclient.CacheOptionsEntry{{Type: "local", Attrs: map[string]string{"dest": dir, "mode": "max"}}},
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
		solve.CacheImports = []bkclient.CacheOptionsEntry{{Type: "local", Attrs: map[string]string{"src": dir}}}
	}
	start := time.Now()
	_, err = b.bkAln.Solve(ctx, nil, solve, nil)
	b.windows[b.bkAln] = append(b.windows[b.bkAln], [2]time.Time{start, time.Now()})
	if err != nil {
		return 0, fmt.Errorf("build in place with BuildKit's client: %w", err)
	}
	return time.Since(start), nil
}

// ---- builds and contexts

func (b *bench) build(ctx context.Context, bd *build.Builder, req build.Request, o build.Options) (time.Duration, build.Result, error) {
	if b.o.verbose {
		o.Progress, o.Mode = os.Stderr, "plain"
	}
	b.loadT = 0
	start := time.Now()
	res, err := bd.Build(ctx, req, o)
	took := time.Since(start)
	c := b.bkAln
	if bd == b.engine {
		c = b.bkEng
	}
	b.windows[c] = append(b.windows[c], [2]time.Time{start, time.Now()})
	if err != nil {
		return 0, res, fmt.Errorf("%s: %w", bd.Name(), err)
	}
	return took, res, nil
}

// context writes a build context of its own into a new directory: the
// Dockerfile, fresh random dependency bytes and the api linked with a
// release string of its own.
func (b *bench) context(ctx context.Context, name string) (string, error) {
	dir := filepath.Join(b.tmp, "ctx-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "deps.bin"), benchenv.RandomBytes(b.o.depMiB<<20), 0o644); err != nil {
		return "", err
	}
	return dir, b.app(ctx, dir, name)
}

// app links the demo api into dir/api with a release string of its own: a
// new app layer.
func (b *bench) app(ctx context.Context, dir, release string) error {
	b.seq++
	return benchenv.BuildAPI(ctx, b.repo, filepath.Join(dir, "api"), fmt.Sprintf("%s-%s-%d", b.name, release, b.seq))
}

func (b *bench) tag(suffix string) string {
	t := b.name + ":" + suffix
	b.tags = append(b.tags, t)
	return t
}

func (b *bench) removeTag(ctx context.Context, tag string) {
	_, err := b.docker.ImageRemove(ctx, tag, image.RemoveOptions{Force: true, PruneChildren: true})
	if err != nil && !strings.Contains(err.Error(), "No such image") {
		benchenv.Logf("remove %s: %v", tag, err)
	}
}

// ---- cleanup

func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, tag := range b.tags {
		b.removeTag(ctx, tag)
	}
	for _, c := range []struct {
		name string
		c    *bkclient.Client
	}{{"the Engine's BuildKit", b.bkEng}, {b.o.addr, b.bkAln}} {
		if c.c == nil {
			continue
		}
		if b.before[c.c] != nil {
			n, size, err := b.prune(ctx, c.c)
			if err != nil {
				benchenv.Logf("cleanup: prune the cache records of %s: %v", c.name, err)
			} else {
				benchenv.Logf("cleanup: removed %d cache records (%s) from %s", n, mib(size), c.name)
			}
		}
		c.c.Close()
	}
	if err := os.RemoveAll(b.tmp); err != nil {
		benchenv.Logf("cleanup: %v", err)
	}
}

// prune removes the cache records the benchmark made on one builder:
// not there when it started, not in use, and either one of its steps by
// their description (they name /opt/buildbench; buildkitd 0.34 says
// "[1/2] COPY deps.bin /opt/buildbench/deps.bin"), or a step's or a build
// context's record made while one of its builds ran on that builder (the
// Engine's BuildKit 0.8 calls every COPY's record "fileop target"). A
// record someone else's build made on the same builder in those seconds
// may go too: it is only cache. Removing a record can free its parent, so
// it goes round until nothing more is removed.
func (b *bench) prune(ctx context.Context, c *bkclient.Client) (int, int64, error) {
	var total int
	var size int64
	for range 5 {
		du, err := c.DiskUsage(ctx)
		if err != nil {
			return total, size, err
		}
		var filter []string
		for _, r := range du {
			if b.before[c][r.ID] || r.InUse || r.CreatedAt.Before(b.start) {
				continue
			}
			generic := r.RecordType == bkclient.UsageRecordTypeLocalSource || r.Description == "fileop target" ||
				strings.HasPrefix(r.Description, "local source for ")
			if strings.Contains(r.Description, "/opt/buildbench") || generic && b.during(c, r.CreatedAt) {
				filter = append(filter, "id=="+r.ID)
			}
		}
		if len(filter) == 0 {
			return total, size, nil
		}
		ch := make(chan bkclient.UsageInfo)
		done := make(chan struct{})
		n := 0
		go func() {
			defer close(done)
			for r := range ch {
				n++
				size += r.Size
			}
		}()
		err = c.Prune(ctx, ch, bkclient.WithFilter(filter))
		close(ch)
		<-done
		total += n
		if err != nil {
			return total, size, err
		}
		if n == 0 {
			return total, size, nil
		}
	}
	return total, size, nil
}

// during tells whether t falls within one of the benchmark's builds on c.
func (b *bench) during(c *bkclient.Client, t time.Time) bool {
	for _, w := range b.windows[c] {
		if !t.Before(w[0]) && !t.After(w[1]) {
			return true
		}
	}
	return false
}

// ---- helpers

func (b *bench) machine(ctx context.Context) string {
	engine := "?"
	if info, err := b.docker.Info(ctx); err == nil {
		engine = fmt.Sprintf("Engine %s (%s)", info.ServerVersion, info.Driver)
	}
	alone := "?"
	if ws, err := b.bkAln.ListWorkers(ctx); err == nil && len(ws) > 0 {
		alone = "snapshotter " + ws[0].Labels["org.mobyproject.buildkit.worker.snapshotter"]
	}
	version := "?"
	if v, err := b.bkAln.Info(ctx); err == nil {
		version = v.BuildkitVersion.Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && (version == "?" || strings.HasPrefix(version, "v0.0.0")) {
		// scripts/buildkitd builds it without version stamps, at the
		// version go.mod requires.
		for _, m := range bi.Deps {
			if m.Path == "github.com/moby/buildkit" {
				version = m.Version + " (go.mod's)"
			}
		}
	}
	alone = "buildkitd " + version + ", " + alone
	return fmt.Sprintf("machine: %d CPUs (%s); %s; standalone %s at %s", runtime.NumCPU(), benchenv.CPUModel(), engine, alone, b.o.addr)
}

// dirSize is the bytes in the files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// blobs counts the blobs in a local cache directory.
func blobs(dir string) (int, error) {
	es, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	return len(es), err
}

func growth(s []int64) string {
	var g []string
	for i := 1; i < len(s); i++ {
		g = append(g, "+"+mib(s[i]-s[i-1]))
	}
	return strings.Join(g, ", ")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func list(v []float64, format string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(s, " ")
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }
