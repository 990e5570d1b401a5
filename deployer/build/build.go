package build

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/system"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/tonistiigi/fsutil"

	// Registers docker-container:// with BuildKit's client.
	_ "github.com/moby/buildkit/client/connhelper/dockercontainer"
)

// Request is one service's image build.
type Request struct {
	Service    string
	Context    string            // local directory
	Dockerfile string            // path relative to Context (default "Dockerfile"), or absolute
	Target     string            // the stage to build; the last one when empty
	Args       map[string]string // build args
	Labels     map[string]string // labels on the image
	Secrets    map[string][]byte // id → value: read by the caller, which knows where from
	Tag        string            // image name:tag to give the result
	NoCache    bool              // build every step, use no cache
	// Platform is the image's os/arch (linux/arm64): the host's, when the
	// image is built elsewhere and shipped; "" builds for the builder's.
	Platform string
}

// Result is what a build made.
type Result struct {
	// ImageID is the image's ID as docker image inspect shows it: the
	// digest of its config in the classic image store (for a standalone
	// buildkitd's image, once loaded into such an Engine), the digest of
	// its manifest on the Engine's BuildKit with the containerd store.
	ImageID string
	// Digest is the digest of the image's manifest when the builder made
	// one; empty for the Engine's classic store, which keeps none. An
	// Engine with the containerd image store names a loaded image by it.
	Digest string
	// Steps is how many of the Dockerfile's steps the build went through;
	// Cached how many of them came from the cache. A rebuild with nothing
	// changed has Cached == Steps.
	Steps, Cached int
}

// Options are how a build runs: its cache and its progress output. They
// are the same for every service of a deploy; the cache of each service is
// kept apart (see docs/build.md).
type Options struct {
	CacheFrom []string  // BuildKit syntax: "type=local,src=DIR", "type=gha,scope=…", "type=registry,ref=…"
	CacheTo   []string  // BuildKit syntax: "type=local,dest=DIR", "type=gha", "type=inline", …
	Progress  io.Writer // where the progress display goes; nil for none
	Mode      string    // "auto" (or empty), "plain", "tty" or "quiet"
}

// LoadFunc puts an image tarball (docker save format) into a Docker
// Engine. A standalone buildkitd has no Engine of its own: what it builds
// reaches one through this.
type LoadFunc func(ctx context.Context, tarball io.Reader) error

// Option configures a Builder.
type Option func(*Builder)

// WithName names the builder in messages: "engine", "host", or the address
// the user gave with --builder.
func WithName(name string) Option { return func(b *Builder) { b.name = name } }

// WithLoad sets where a standalone buildkitd's images go. Dial needs it;
// EngineLoad gives one for a Docker Engine.
func WithLoad(load LoadFunc) Option { return func(b *Builder) { b.load = load } }

// Builder is a connection to one BuildKit.
type Builder struct {
	name   string
	engine bool // the Docker Engine's built-in BuildKit: the result is an image in that Engine
	caps   caps
	load   LoadFunc
	c      *bkclient.Client

	// inPlace exports a local cache into its destination, as BuildKit
	// does by itself: only for the test that shows what the swap prevents.
	inPlace bool
}

// Docker is the part of the Docker Engine API that Engine uses;
// *client.Client has it.
type Docker interface {
	DialHijack(ctx context.Context, url, proto string, meta map[string][]string) (net.Conn, error)
	Info(ctx context.Context) (system.Info, error)
}

// pingTimeout bounds the first call to a builder, which tells whether it
// answers at all.
const pingTimeout = 20 * time.Second

// Engine connects to the Docker Engine's built-in BuildKit through the
// Engine API (the /grpc and /session endpoints docker buildx's docker
// driver uses). What it builds is an image in that Engine.
func Engine(ctx context.Context, docker Docker, opts ...Option) (*Builder, error) {
	b := &Builder{name: "engine", engine: true}
	for _, o := range opts {
		o(b)
	}
	if b.load != nil {
		return nil, fmt.Errorf("builder %s: WithLoad is for a standalone buildkitd; the Engine's BuildKit puts the image in the Engine itself", b.name)
	}
	info, err := docker.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("builder %s: the Docker Engine does not answer: %w (start it, or check DOCKER_HOST)", b.name, err)
	}
	b.caps = engineCaps(info)
	c, err := bkclient.New(ctx, "",
		bkclient.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return docker.DialHijack(ctx, "/grpc", "h2c", nil)
		}),
		bkclient.WithSessionDialer(func(ctx context.Context, proto string, meta map[string][]string) (net.Conn, error) {
			return docker.DialHijack(ctx, "/session", proto, meta)
		}))
	if err != nil {
		return nil, fmt.Errorf("builder %s: %w", b.name, err)
	}
	b.c = c
	if err := b.ping(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("builder %s: the Docker Engine %s does not serve BuildKit: %w (BuildKit needs Engine 18.09 or later with the builder enabled; or run a standalone buildkitd and use --builder unix://…)", b.name, info.ServerVersion, err)
	}
	return b, nil
}

// Dial connects to a standalone buildkitd at addr: unix:///path/to/buildkitd.sock,
// tcp://host:port, or docker-container://NAME (a buildkitd running in a
// container, reached with docker exec). Its results are exported as a
// docker image tarball and handed to the LoadFunc given WithLoad.
func Dial(ctx context.Context, addr string, opts ...Option) (*Builder, error) {
	b := &Builder{name: addr, caps: standaloneCaps}
	for _, o := range opts {
		o(b)
	}
	scheme, _, ok := strings.Cut(addr, "://")
	if !ok || (scheme != "unix" && scheme != "tcp" && scheme != "docker-container") {
		return nil, fmt.Errorf("builder %q: want unix:///path/to/buildkitd.sock, tcp://HOST:PORT or docker-container://NAME (or engine for the Docker Engine's own BuildKit)", addr)
	}
	if b.load == nil {
		return nil, fmt.Errorf("builder %s: no Docker Engine to load images into: Dial needs WithLoad", b.name)
	}
	c, err := bkclient.New(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("builder %s: %w", b.name, err)
	}
	b.c = c
	if err := b.ping(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("builder %s does not answer: %w (start it, e.g. scripts/buildkitd start, or check the address given with --builder)", b.name, err)
	}
	return b, nil
}

// ping asks the builder for its workers: the cheapest call that proves it
// answers and can build.
func (b *Builder) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	ws, err := b.c.ListWorkers(ctx)
	if err != nil {
		return errors.New(strings.TrimPrefix(grpcMessage(err), "failed to list workers: "))
	}
	if len(ws) == 0 {
		return errors.New("it has no workers")
	}
	return nil
}

// Close ends the connection to the builder.
func (b *Builder) Close() error { return b.c.Close() }

// Name is how messages name the builder.
func (b *Builder) Name() string { return b.name }

// Build builds req's image: on the Engine's BuildKit it ends up in that
// Engine under req.Tag; on a standalone buildkitd it is loaded through
// the builder's LoadFunc. Nothing is built when the request or the cache
// options cannot work: those errors come first.
func (b *Builder) Build(ctx context.Context, req Request, o Options) (Result, error) {
	if req.Service == "" {
		return Result{}, errors.New("build: the request names no service")
	}
	res, err := b.build(ctx, req, o)
	if err != nil {
		return Result{}, fmt.Errorf("build %s: %w", req.Service, err)
	}
	return res, nil
}

func (b *Builder) build(ctx context.Context, req Request, o Options) (Result, error) {
	df, err := locateDockerfile(req)
	if err != nil {
		return Result{}, err
	}
	if err := df.check(req); err != nil {
		return Result{}, err
	}
	disp, err := newDisplay(o)
	if err != nil {
		return Result{}, err
	}
	from, to, err := b.cacheOptions(req.Service, o)
	if err != nil {
		return Result{}, err
	}
	from = skipMissingLocal(from, func(msg string) { note(o.Progress, msg) })

	ctxFS, err := contextFS(req.Context)
	if err != nil {
		return Result{}, fmt.Errorf("build context %s: %w", req.Context, err)
	}
	dfFS, err := dockerfileFS(df.path)
	if err != nil {
		return Result{}, fmt.Errorf("dockerfile %s: %w", df.path, err)
	}

	attrs := map[string]string{"filename": filepath.Base(df.path)}
	if req.Target != "" {
		attrs["target"] = req.Target
	}
	if req.NoCache {
		attrs["no-cache"] = ""
	}
	for k, v := range req.Args {
		attrs["build-arg:"+k] = v
	}
	for k, v := range req.Labels {
		attrs["label:"+k] = v
	}
	if req.Platform != "" {
		attrs["platform"] = req.Platform
	}

	// A local cache is exported next to its destination and swapped in
	// only once the build has succeeded.
	var swaps []*localSwap
	defer func() {
		for _, s := range swaps {
			s.abort()
		}
	}()
	cacheTo := make([]bkclient.CacheOptionsEntry, 0, len(to))
	for _, e := range to {
		if e.Type == "local" && !b.inPlace {
			s, err := newLocalSwap(e.Attrs["dest"])
			if err != nil {
				return Result{}, err
			}
			swaps = append(swaps, s)
			e = e.with("dest", s.next)
		}
		cacheTo = append(cacheTo, e.entry())
	}
	cacheFrom := make([]bkclient.CacheOptionsEntry, 0, len(from))
	for _, e := range from {
		cacheFrom = append(cacheFrom, e.entry())
	}

	solve := bkclient.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		LocalMounts:   map[string]fsutil.FS{"context": ctxFS, "dockerfile": dfFS},
		CacheImports:  cacheFrom,
		CacheExports:  cacheTo,
		SharedKey:     sharedKey(req.Context),
		Session:       []session.Attachable{secretsprovider.FromMap(req.Secrets)},
	}
	var load *loader
	if b.engine {
		ex := bkclient.ExportEntry{Type: "moby", Attrs: map[string]string{}}
		if req.Tag != "" {
			ex.Attrs["name"] = req.Tag
		}
		solve.Exports = []bkclient.ExportEntry{ex}
	} else {
		load = newLoader(ctx, b.load)
		solve.Exports = []bkclient.ExportEntry{load.export(req.Tag)}
	}

	status := make(chan *bkclient.SolveStatus)
	shown := make(chan struct{})
	var steps stepCounter
	go func() {
		defer close(shown)
		disp.show(ctx, &steps, status)
	}()
	resp, solveErr := b.c.Solve(ctx, nil, solve, status) // closes status
	<-shown
	if load != nil {
		if err := load.wait(solveErr); err != nil {
			return Result{}, fmt.Errorf("load the image into the Docker Engine: %w", err)
		}
	}
	if solveErr != nil {
		return Result{}, b.explain(ctx, solveErr, req, df, &steps, disp.d != nil)
	}
	for _, s := range swaps {
		if err := s.commit(); err != nil {
			return Result{}, err
		}
	}
	swaps = nil

	r := Result{Steps: steps.steps(), Cached: steps.cached()}
	config := resp.ExporterResponse[exptypes.ExporterImageConfigDigestKey]
	manifest := resp.ExporterResponse[exptypes.ExporterImageDigestKey]
	switch {
	case b.engine && !b.caps.containerdStore:
		// The classic store names an image by its config; the moby
		// exporter of Engine 20.10 gives only that, as the image digest.
		r.ImageID = cmp.Or(config, manifest)
	case b.engine:
		// The containerd store names an image by its manifest.
		r.ImageID, r.Digest = manifest, manifest
	default:
		r.ImageID, r.Digest = config, manifest
	}
	return r, nil
}

// dockerfile is a build's Dockerfile, parsed when it parses: the
// checks made from it are a courtesy, and BuildKit has the last word.
type dockerfile struct {
	path    string // absolute
	display string // as messages show it: relative to the working directory when that is shorter
	stages  []string
	secrets []string // ids of secrets the Dockerfile requires (required=true mounts)
	parsed  bool
}

func locateDockerfile(req Request) (*dockerfile, error) {
	if req.Context == "" {
		return nil, errors.New("no build context: give the service a build context directory")
	}
	if strings.Contains(req.Context, "://") {
		return nil, fmt.Errorf("build context %s: remote contexts are not supported; check the source out in CI and build from the directory", req.Context)
	}
	fi, err := os.Stat(req.Context)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("build context %s does not exist: check the service's build.context (it is relative to the compose file)", req.Context)
	} else if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s is not a directory", req.Context)
	}
	name := req.Dockerfile
	if name == "" {
		name = "Dockerfile"
	}
	if !filepath.IsAbs(name) {
		name = filepath.Join(req.Context, name)
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, err
	}
	df := &dockerfile{path: abs, display: displayPath(abs)}
	data, err := readDockerfile(abs)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no Dockerfile at %s: write one, or point the service's build.dockerfile at it", df.display)
	} else if err != nil {
		return nil, fmt.Errorf("read the Dockerfile: %w", err)
	}
	df.parse(data)
	return df, nil
}

// maxDockerfile bounds the Dockerfile read to check it; BuildKit's own
// frontend refuses much less.
const maxDockerfile = 4 << 20

// readDockerfile reads a Dockerfile that is a regular file of a bounded
// size: it may come from a pull request, as a named pipe or a huge file.
func readDockerfile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", displayPath(path))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxDockerfile+1))
	if err == nil && len(data) > maxDockerfile {
		err = fmt.Errorf("%s is larger than %d MiB", displayPath(path), maxDockerfile>>20)
	}
	return data, err
}

// check refuses, before anything is sent to the builder, a target the
// Dockerfile lacks and a secret it requires that the service does not give.
func (df *dockerfile) check(req Request) error {
	if !df.parsed {
		return nil
	}
	if req.Target != "" && !containsFold(df.stages, req.Target) {
		return targetError(req.Target, df)
	}
	var missing []string
	for _, id := range df.secrets {
		if _, ok := req.Secrets[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return missingSecretError(missing, df)
	}
	return nil
}

func targetError(target string, df *dockerfile) error {
	if len(df.stages) == 0 {
		return fmt.Errorf("target %q not found in %s: it has no named stages; name one with FROM … AS %s, or drop the service's build.target", target, df.display, target)
	}
	return fmt.Errorf("target %q not found in %s: the stages are %s", target, df.display, strings.Join(df.stages, ", "))
}

func missingSecretError(ids []string, df *dockerfile) error {
	sort.Strings(ids)
	return fmt.Errorf("%s needs build secret %s (RUN --mount=type=secret,…,required) and none is given: add it to the service's build.secrets and define it under the top-level secrets: with file: or environment:", df.display, quoteList(ids))
}

// sharedKey lets BuildKit send only what changed in a context it has seen
// from this machine and directory before.
func sharedKey(dir string) string {
	abs, _ := filepath.Abs(dir)
	host, _ := os.Hostname()
	sum := sha256.Sum256([]byte(host + "\x00" + abs))
	return hex.EncodeToString(sum[:16])
}

// note writes a line about the build that is not BuildKit's progress.
func note(w io.Writer, msg string) {
	if w != nil {
		fmt.Fprintf(w, "note: %s\n", msg)
	}
}

func displayPath(abs string) string {
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, abs); err == nil && len(rel) < len(abs) && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return abs
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

func quoteList(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	return strings.Join(q, ", ")
}

// contextFS is a build context as BuildKit reads it, without any .git: a
// checkout's .git/config may hold the workflow's token
// (actions/checkout's persist-credentials; a second checkout under a
// subdirectory may hold another), and a Dockerfile from a pull request
// must not reach it, whatever .dockerignore says.
func contextFS(dir string) (fsutil.FS, error) {
	fs, err := fsutil.NewFS(dir)
	if err != nil {
		return nil, err
	}
	return fsutil.NewFilterFS(fs, &fsutil.FilterOpt{ExcludePatterns: []string{".git", "**/.git"}})
}

// dockerfileFS is the Dockerfile's directory as BuildKit reads it: only the
// Dockerfile and its own .dockerignore, since a frontend the Dockerfile
// names (# syntax=) may ask this mount for any file.
func dockerfileFS(path string) (fsutil.FS, error) {
	fs, err := fsutil.NewFS(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	name := filepath.Base(path)
	return fsutil.NewFilterFS(fs, &fsutil.FilterOpt{IncludePatterns: []string{name, name + ".dockerignore"}})
}
