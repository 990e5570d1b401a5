// Command deploybench measures two of the design's performance targets
// end to end on this machine's Docker Engine, against their peers, in one
// run:
//
//   - no-op redeploy: `deployer deploy --local` of an unchanged stack,
//     interleaved with its peer, `docker compose -p NAME -f RENDERED up -d
//     --wait` run by hand on the live release's rendered compose file;
//     medians, each sample, the ratio deployer/peer, and where the
//     deployer's time goes, step by step (target ≤ 1.2×);
//   - health latency: from the Engine's `health_status: healthy` event of a
//     recreated container (its timeNano) to the moment the deployer's
//     "NAME healthy" line reaches this program's pipe (target ≤ 100 ms).
//
// It builds the deployer and the demo api from this checkout, deploys a
// copy of the demo stack (or deployer/testdata/stack) under a project name
// of its own, and removes everything it created when it ends: the
// project's containers, volumes and network, the images tagged for it,
// and its temporary directory. Run it from the repository:
//
//	go run ./bench/deploybench [-stack demo|testdata] [-n 5] [-health 5]
//
// See bench/README.md.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/semalink/deploy-action/bench/internal/benchenv"
)

const (
	modulePath    = "github.com/semalink/deploy-action"
	labelProject  = "com.docker.compose.project"
	labelService  = "com.docker.compose.service"
	labelOneoff   = "com.docker.compose.oneoff"
	healthyAction = "health_status: healthy"
	// migrateProfile is the profile deployer's rendered file puts the
	// migration service in (deployer/render.go).
	migrateProfile = "deployer-migrate"
	cmdTimeout     = 5 * time.Minute
)

// The images the demo stack runs besides its own api (scripts/demo-images).
var demoImages = []string{"deployer-demo/caddy:2.11.9", "deployer-demo/rabbitmq:3"}

type options struct {
	repo      string
	stack     string
	noop      int
	warmup    int
	breakdown int
	health    int
	trace     int
	keep      bool
}

func main() {
	var o options
	flag.StringVar(&o.repo, "repo", "", "the deploy-action checkout (default: found from the working directory)")
	flag.StringVar(&o.stack, "stack", "demo", "stack to deploy: demo (examples/demo: api, migrate, rabbitmq, caddy) or testdata (deployer/testdata/stack: api, migrate)")
	flag.IntVar(&o.noop, "n", 5, "no-op redeploy samples of each (deployer and peer), interleaved; 0 skips the figure")
	flag.IntVar(&o.warmup, "warmup", 1, "uncounted no-op runs of each before the samples")
	flag.IntVar(&o.breakdown, "breakdown", 3, "runs of each compose command the pipeline issues, timed by hand; 0 skips them")
	flag.IntVar(&o.health, "health", 5, "health latency samples (deploys that recreate the api); 0 skips the figure")
	flag.IntVar(&o.trace, "trace", 2, "extra deploys of each kind (no-op, api recreated) run with a timing shim around the docker command, to attribute their time; 0 skips them")
	flag.BoolVar(&o.keep, "keep", false, "leave the stack, its images and the temporary directory in place (for debugging)")
	flag.Parse()
	if o.stack != "demo" && o.stack != "testdata" {
		fmt.Fprintln(os.Stderr, "deploybench: -stack is demo or testdata")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploybench:", err)
		os.Exit(1)
	}
}

// bench is one run's state.
type bench struct {
	o      options
	repo   string
	tmp    string
	stack  string // the stack's directory: compose.yaml, api/, …
	root   string // deployer's --root
	name   string // the compose project
	bin    string // the built deployer
	port   string // DEMO_HTTP_PORT
	docker *client.Client
	rec    *recorder
}

func run(ctx context.Context, o options) (err error) {
	repo, err := findRepo(o.repo)
	if err != nil {
		return err
	}
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer docker.Close()
	if o.stack == "demo" {
		for _, ref := range demoImages {
			if _, err := docker.ImageInspect(ctx, ref); err != nil {
				return fmt.Errorf("image %s: %w (build the demo's images once with scripts/demo-images)", ref, err)
			}
		}
	}
	tmp, err := os.MkdirTemp("", "deploybench-")
	if err != nil {
		return err
	}
	b := &bench{
		o: o, repo: repo, tmp: tmp, docker: docker,
		stack: filepath.Join(tmp, "stack"), root: filepath.Join(tmp, "root"),
		name: fmt.Sprintf("deploybench-%d", os.Getpid()),
		bin:  filepath.Join(tmp, "bin", "deployer"),
	}
	defer func() {
		if o.keep {
			logf("left in place (-keep): project %s, root %s; clean up with docker compose -p %s down -v and rm -rf %s", b.name, b.root, b.name, tmp)
			return
		}
		b.cleanup()
	}()

	machine := b.machine(ctx)
	logf("project %s in %s", b.name, tmp)
	if err := b.setup(ctx); err != nil {
		return err
	}
	b.rec, err = record(ctx, docker, b.name)
	if err != nil {
		return err
	}
	defer b.rec.stop()

	logf("first deploy")
	first := b.deploy(ctx, nil)
	if first.err != nil {
		return first.failure("first deploy")
	}
	logf("first deploy took %s", secs(first.took()))

	var report bytes.Buffer
	fmt.Fprintf(&report, "machine: %s\n", machine.String())
	gate := ""
	if b.hasMigrate() {
		gate = " + migrate, the one-off gate"
	}
	fmt.Fprintf(&report, "stack: %s: %s%s; project %s\n\n", o.stack, strings.Join(b.services(ctx), ", "), gate, b.name)
	if o.noop > 0 {
		if err := b.noop(ctx, &report); err != nil {
			return err
		}
	}
	if o.health > 0 {
		if err := b.healthLatency(ctx, &report); err != nil {
			return err
		}
	}
	fmt.Fprintf(&report, "load average at the end: %s\n", benchenv.LoadAvg())
	if err := b.rec.failed(); err != nil {
		fmt.Fprintf(&report, "warning: the event stream ended early: %v\n", err)
	}
	fmt.Print(report.String())
	return nil
}

// ---- setup

func findRepo(dir string) (string, error) {
	if dir == "" {
		var err error
		if dir, err = os.Getwd(); err != nil {
			return "", err
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module "+modulePath+"\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%s is not inside the %s checkout: run from the repository or give -repo", dir, modulePath)
		}
	}
}

// setup builds the deployer and the api and writes the stack under a
// project name of its own. The name goes into the file's name: (not only
// -p): the loader derives the network's and volumes' names from it, so
// the copy never touches another project's volumes.
func (b *bench) setup(ctx context.Context) error {
	logf("building the deployer and the demo api")
	if err := b.goBuild(ctx, nil, b.bin, "./cmd/deployer"); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(b.stack, "api"), 0o755); err != nil {
		return err
	}
	if err := b.goBuild(ctx, []string{"CGO_ENABLED=0"}, filepath.Join(b.stack, "api", "api"), "-trimpath", "./examples/demo/api"); err != nil {
		return err
	}
	var compose []byte
	switch b.o.stack {
	case "demo":
		src := filepath.Join(b.repo, "examples", "demo")
		for _, f := range []string{"Caddyfile", ".env", filepath.Join("api", "Dockerfile")} {
			if err := copyFile(filepath.Join(src, f), filepath.Join(b.stack, f)); err != nil {
				return err
			}
		}
		var err error
		if compose, err = os.ReadFile(filepath.Join(src, "compose.yaml")); err != nil {
			return err
		}
	case "testdata":
		var err error
		if compose, err = os.ReadFile(filepath.Join(b.repo, "deployer", "testdata", "stack", "compose.yaml")); err != nil {
			return err
		}
		// As deployer/e2e_test.go writes it.
		dockerfile := "FROM scratch\nCOPY api /api\nENTRYPOINT [\"/api\"]\nCMD [\"serve\"]\n"
		if err := os.WriteFile(filepath.Join(b.stack, "api", "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
			return err
		}
	}
	nameLine := regexp.MustCompile(`(?m)^name:.*$`)
	if nameLine.Match(compose) {
		compose = nameLine.ReplaceAll(compose, []byte("name: "+b.name))
	} else {
		compose = append([]byte("name: "+b.name+"\n"), compose...)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	b.port = port
	return os.WriteFile(filepath.Join(b.stack, "compose.yaml"), compose, 0o644)
}

func (b *bench) goBuild(ctx context.Context, env []string, out string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", out}, args...)...)
	cmd.Dir = b.repo
	cmd.Env = append(os.Environ(), env...)
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", args[len(args)-1], err, o)
	}
	return nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// services lists the stack's long-running services (not one-off jobs).
func (b *bench) services(ctx context.Context) []string {
	var out []string
	for svc := range b.containers(ctx) {
		out = append(out, svc)
	}
	slices.Sort(out)
	return out
}

// ---- commands

// line is one line of a command's standard output and when it arrived.
type line struct {
	at   time.Time
	text string
}

type result struct {
	args       []string
	start, end time.Time
	lines      []line
	stderr     string
	err        error
}

func (r *result) took() time.Duration { return r.end.Sub(r.start) }

func (r *result) failure(what string) error {
	var out strings.Builder
	for _, l := range r.lines {
		out.WriteString(l.text + "\n")
	}
	return fmt.Errorf("%s (%s): %v\n%s%s", what, strings.Join(r.args, " "), r.err, out.String(), r.stderr)
}

// command runs a command, stamping each line of its standard output with
// the moment it arrived; the wall time runs from just before the start to
// just after the exit.
func command(ctx context.Context, dir string, env []string, args ...string) *result {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	r := &result{args: args}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir, cmd.Env = dir, env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		r.err = err
		return r
	}
	r.start = time.Now()
	if r.err = cmd.Start(); r.err != nil {
		r.end = time.Now()
		return r
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		r.lines = append(r.lines, line{at: time.Now(), text: sc.Text()})
	}
	r.err = cmd.Wait()
	r.end = time.Now()
	r.stderr = stderr.String()
	return r
}

// env is this process's environment without the stack's variables, plus
// vars.
func (b *bench) env(vars ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "RELEASE", k == "DEMO_RELEASE", k == "DEMO_HTTP_PORT", k == "COMPOSE_PROJECT_NAME", k == "GITHUB_ACTIONS",
			strings.HasPrefix(k, "FAIL_"), k == "MIGRATE_SLEEP":
			continue
		}
		out = append(out, kv)
	}
	return append(append(out, "DEMO_HTTP_PORT="+b.port), vars...)
}

// deploy runs `deployer deploy --local` of the stack with extra variables.
func (b *bench) deploy(ctx context.Context, vars []string) *result {
	return command(ctx, b.stack, b.env(vars...), b.bin, "deploy", "--local",
		"-f", filepath.Join(b.stack, "compose.yaml"), "-p", b.name, "--root", b.root)
}

// release returns the live release's directory and rendered compose file.
func (b *bench) release() (dir, file string, err error) {
	cur := filepath.Join(b.root, b.name, "current")
	target, err := os.Readlink(cur)
	if err != nil {
		return "", "", fmt.Errorf("the live release: %w", err)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(cur), target)
	}
	return target, filepath.Join(target, "compose.yaml"), nil
}

// peer runs `docker compose -p NAME -f RENDERED up -d --wait` on the live
// release's rendered file, as one would by hand on the host.
func (b *bench) peer(ctx context.Context) *result {
	_, file, err := b.release()
	if err != nil {
		return &result{err: err}
	}
	return command(ctx, b.tmp, b.env(), "docker", "compose", "-p", b.name, "-f", file, "up", "-d", "--wait")
}

// containers maps the project's long-running services to their container
// IDs (sorted, joined).
func (b *bench) containers(ctx context.Context) map[string]string {
	list, err := b.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", labelProject+"="+b.name), filters.Arg("label", labelOneoff+"=False"))})
	if err != nil {
		return nil
	}
	ids := map[string][]string{}
	for _, c := range list {
		svc := c.Labels[labelService]
		ids[svc] = append(ids[svc], c.ID[:12])
	}
	out := map[string]string{}
	for svc, l := range ids {
		slices.Sort(l)
		out[svc] = strings.Join(l, ",")
	}
	return out
}

// recreated names the services whose containers differ between two looks.
func recreated(before, after map[string]string) []string {
	var out []string
	for svc, id := range after {
		if before[svc] != id {
			out = append(out, svc)
		}
	}
	for svc := range before {
		if _, ok := after[svc]; !ok {
			out = append(out, svc)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ---- figure 1: no-op redeploy

type sample struct {
	took      time.Duration
	recreated []string
	phases    []phase // the deployer's, from its output
}

func (b *bench) noop(ctx context.Context, w io.Writer) error {
	measure := func(deployer bool) (sample, error) {
		before := b.containers(ctx)
		var r *result
		if deployer {
			r = b.deploy(ctx, nil)
		} else {
			r = b.peer(ctx)
		}
		if r.err != nil {
			what := "peer"
			if deployer {
				what = "no-op deploy"
			}
			return sample{}, r.failure(what)
		}
		s := sample{took: r.took(), recreated: recreated(before, b.containers(ctx))}
		if deployer {
			s.phases = phases(r)
		}
		return s, nil
	}
	for i := range b.o.warmup {
		logf("warm-up %d/%d", i+1, b.o.warmup)
		for _, d := range []bool{true, false} {
			if _, err := measure(d); err != nil {
				return err
			}
		}
	}
	var dep, peer []sample
	for i := range b.o.noop {
		// Interleaved, alternating which goes first.
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, d := range order {
			s, err := measure(d)
			if err != nil {
				return err
			}
			if d {
				dep = append(dep, s)
			} else {
				peer = append(peer, s)
			}
		}
		logf("no-op %d/%d: deployer %s, peer %s", i+1, b.o.noop, secs(dep[i].took), secs(peer[i].took))
	}

	dm, pm := median(tooks(dep)), median(tooks(peer))
	fmt.Fprintf(w, "no-op redeploy, %d interleaved samples each (order alternating), after %d warm-up run(s) of each\n", b.o.noop, b.o.warmup)
	fmt.Fprintf(w, "  %-56s median %s  samples %s\n", "deployer deploy --local -f compose.yaml", secs(dm), list(tooks(dep)))
	fmt.Fprintf(w, "  %-56s median %s  samples %s\n", "peer: docker compose -p NAME -f RENDERED up -d --wait", secs(pm), list(tooks(peer)))
	verdict := "meets"
	ratio := float64(dm) / float64(pm)
	if ratio > 1.2 {
		verdict = "MISSES"
	}
	fmt.Fprintf(w, "  ratio deployer/peer: %.2f× (medians), %s the target ≤ 1.20×; %.2f× (fastest of each); per pair:",
		ratio, verdict, float64(slices.Min(tooks(dep)))/float64(slices.Min(tooks(peer))))
	for i := range dep {
		fmt.Fprintf(w, " %.2f", float64(dep[i].took)/float64(peer[i].took))
	}
	fmt.Fprintln(w)
	for i, s := range dep {
		if len(s.recreated) > 0 {
			fmt.Fprintf(w, "  warning: deployer sample %d recreated %s: not a no-op\n", i+1, strings.Join(s.recreated, ", "))
		}
	}
	for i, s := range peer {
		if len(s.recreated) > 0 {
			fmt.Fprintf(w, "  warning: peer sample %d recreated %s: not a no-op\n", i+1, strings.Join(s.recreated, ", "))
		}
	}

	fmt.Fprintf(w, "\n  where a no-op deploy's time goes (median of %d; from the arrival of its output lines):\n", len(dep))
	for _, ph := range phaseMedians(dep) {
		fmt.Fprintf(w, "    %-46s %s\n", ph.name, ms(ph.took))
	}
	fmt.Fprintf(w, "    %-46s %s\n", "total (median of the totals)", ms(dm))
	if b.o.trace > 0 {
		if err := b.tracedNoop(ctx, w); err != nil {
			return err
		}
	}

	if b.o.breakdown > 0 {
		if err := b.byHand(ctx, w); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	return nil
}

// byHand times the compose commands the pipeline runs on a no-op deploy,
// issued directly, to tell compose's share from the deployer's own.
func (b *bench) byHand(ctx context.Context, w io.Writer) error {
	dir, file, err := b.release()
	if err != nil {
		return err
	}
	base := []string{"docker", "compose", "-p", b.name, "--project-directory", dir, "-f", file}
	cmds := []struct {
		name string
		args []string
	}{
		{"docker compose version --short (inspect)", []string{"docker", "compose", "version", "--short"}},
		{"compose run --rm -T migrate (migrate gate)", append(slices.Clone(base), "run", "--rm", "-T", "--pull", "never", "migrate")},
		{"compose up -d --remove-orphans (start)", append(slices.Clone(base), "up", "-d", "--remove-orphans", "--no-build", "--pull", "never")},
		{"compose up -d --wait (the peer)", []string{"docker", "compose", "-p", b.name, "-f", file, "up", "-d", "--wait"}},
	}
	if !b.hasMigrate() {
		cmds = slices.Delete(cmds, 1, 2)
	}
	fmt.Fprintf(w, "\n  the compose commands a no-op deploy runs, timed by hand on the live release (median of %d):\n", b.o.breakdown)
	for _, c := range cmds {
		var took []time.Duration
		for range b.o.breakdown {
			r := command(ctx, dir, b.env(), c.args...)
			if r.err != nil {
				return r.failure(c.name)
			}
			took = append(took, r.took())
		}
		fmt.Fprintf(w, "    %-46s %s  (%s)\n", c.name, ms(median(took)), list(took))
	}
	return nil
}

func (b *bench) hasMigrate() bool {
	data, err := os.ReadFile(filepath.Join(b.stack, "compose.yaml"))
	return err == nil && bytes.Contains(data, []byte("migrate: migrate"))
}

// phase is a stretch of a deploy: a step ("==> NAME" to "NAME done in"),
// the time before its first line, between steps, or after its last line.
type phase struct {
	name string
	took time.Duration
}

var (
	stepStart = regexp.MustCompile(`^==> (.+)$`)
	stepEnd   = regexp.MustCompile(`^    (.+) (?:done in|failed after) \S+`)
	releaseID = regexp.MustCompile(`\d{8}-\d{6}(-[0-9a-f]{7})?-[0-9a-f]{4}`)
)

// phases splits a deploy's wall time by its output: process start to the
// first line (load, flags), each step, the gaps between steps, and the
// last line to the exit. A step that runs twice (preflight) is summed.
func phases(r *result) []phase {
	var out []phase
	add := func(name string, d time.Duration) {
		for i := range out {
			if out[i].name == name {
				out[i].took += d
				return
			}
		}
		out = append(out, phase{name, d})
	}
	if len(r.lines) == 0 {
		return []phase{{"process", r.took()}}
	}
	add("start-up: exec, load the project", r.lines[0].at.Sub(r.start))
	open := map[string]time.Time{}
	var lastEnd time.Time
	gaps := time.Duration(0)
	for _, l := range r.lines {
		if m := stepStart.FindStringSubmatch(l.text); m != nil {
			if !lastEnd.IsZero() {
				gaps += l.at.Sub(lastEnd)
			}
			open[m[1]] = l.at
			continue
		}
		if m := stepEnd.FindStringSubmatch(l.text); m != nil {
			if at, ok := open[m[1]]; ok {
				add("step: "+releaseID.ReplaceAllString(m[1], "ID"), l.at.Sub(at))
				delete(open, m[1])
				lastEnd = l.at
			}
		}
	}
	add("between steps (lock files, releases, drift)", gaps)
	add("after the last line: exit", r.end.Sub(r.lines[len(r.lines)-1].at))
	return out
}

func phaseMedians(samples []sample) []phase {
	var names []string
	for _, s := range samples {
		for _, p := range s.phases {
			if !slices.Contains(names, p.name) {
				names = append(names, p.name)
			}
		}
	}
	var out []phase
	for _, n := range names {
		var took []time.Duration
		for _, s := range samples {
			d := time.Duration(0)
			for _, p := range s.phases {
				if p.name == n {
					d = p.took
				}
			}
			took = append(took, d)
		}
		out = append(out, phase{n, median(took)})
	}
	return out
}

// ---- figure 2: health latency

var healthyLine = regexp.MustCompile(`^    (\S+) healthy, (\S+) after up began$`)

type latency struct {
	sample   int
	service  string
	lat      time.Duration // event (Engine clock) → line arrival
	lag      time.Duration // event → its arrival at this program's own subscription
	upToEv   time.Duration // "==> start" line → event
	batch    int           // other healthy lines printed within 2 ms of this one
	reported string        // the deployer's own "after up began"
}

func (b *bench) healthLatency(ctx context.Context, w io.Writer) error {
	variable := "DEMO_RELEASE"
	if b.o.stack == "testdata" {
		variable = "RELEASE"
	}
	var lats []latency
	quiet := map[string]int{} // services with no health event in a sample
	for k := 1; k <= b.o.health; k++ {
		before := b.containers(ctx)
		r := b.deploy(ctx, []string{fmt.Sprintf("%s=bench%d", variable, k)})
		if r.err != nil {
			return r.failure("deploy that recreates the api")
		}
		changed := recreated(before, b.containers(ctx))
		if !slices.Contains(changed, "api") {
			return fmt.Errorf("health sample %d: the deploy did not recreate the api (recreated: %v)", k, changed)
		}
		time.Sleep(300 * time.Millisecond) // for the last events to reach the recorder
		var upStart time.Time
		var healthy []line
		for _, l := range r.lines {
			if strings.HasPrefix(l.text, "==> start ") {
				upStart = l.at
			}
			if healthyLine.MatchString(l.text) {
				healthy = append(healthy, l)
			}
		}
		got := 0
		for _, l := range healthy {
			m := healthyLine.FindStringSubmatch(l.text)
			ev, ok := b.rec.lastBefore(m[1], healthyAction, r.start, l.at)
			if !ok {
				quiet[m[1]]++
				continue
			}
			batch := 0
			for _, o := range healthy {
				if o != l && absDur(o.at.Sub(l.at)) <= 2*time.Millisecond {
					batch++
				}
			}
			lats = append(lats, latency{
				sample: k, service: m[1], lat: l.at.Sub(time.Unix(0, ev.at)), lag: ev.seen.Sub(time.Unix(0, ev.at)),
				upToEv: time.Unix(0, ev.at).Sub(upStart), batch: batch, reported: m[2],
			})
			got++
		}
		if got == 0 {
			return fmt.Errorf("health sample %d: no healthy line matched a health event; output:\n%s", k, joinLines(r.lines))
		}
		logf("health %d/%d: recreated %s", k, b.o.health, strings.Join(changed, ", "))
	}

	var all, floor []time.Duration
	for _, l := range lats {
		all = append(all, l.lat)
		floor = append(floor, l.lag)
	}
	fmt.Fprintf(w, "health latency: Engine health_status: healthy event (timeNano) → the deployer's \"NAME healthy\" line on its stdout, %d deploys that recreate the api\n", b.o.health)
	fmt.Fprintf(w, "  %-7s %-9s %-10s %-12s %-16s %s\n", "deploy", "service", "latency", "event lag*", "up began→event", "line batch / deployer's own figure")
	for _, l := range lats {
		fmt.Fprintf(w, "  %-7d %-9s %-10s %-12s %-16s %d other line(s) within 2 ms / %s after up began\n",
			l.sample, l.service, ms(l.lat), ms(l.lag), ms(l.upToEv), l.batch, l.reported)
	}
	verdict := "meets"
	if slices.Max(all) > 100*time.Millisecond {
		verdict = "MISSES"
	}
	fmt.Fprintf(w, "  median %s, max %s, min %s: %s the target ≤ 100 ms (max)\n", ms(median(all)), ms(slices.Max(all)), ms(slices.Min(all)), verdict)
	fmt.Fprintf(w, "  * event lag: the same event's arrival at this program's own subscription, the floor for any subscriber (median %s)\n", ms(median(floor)))
	for _, svc := range slices.Sorted(maps.Keys(quiet)) {
		fmt.Fprintf(w, "  %s: no health event in %d of %d deploys (not recreated, already healthy): its line comes from the first look after up, not measured\n", svc, quiet[svc], b.o.health)
	}
	if b.o.trace > 0 {
		if err := b.tracedHealth(ctx, w, variable); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	return nil
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func joinLines(ls []line) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.text + "\n")
	}
	return b.String()
}

// ---- the Engine's events

type engineEvent struct {
	at      int64     // TimeNano, by the Engine's clock (this machine's)
	seen    time.Time // when it reached this program
	action  string
	service string
}

// recorder keeps the project's container events from the moment it starts.
type recorder struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	evs    []engineEvent
	err    error
}

func record(ctx context.Context, docker *client.Client, project string) (*recorder, error) {
	ctx, cancel := context.WithCancel(ctx)
	r := &recorder{cancel: cancel, done: make(chan struct{})}
	// Since a second ago: the Engine replays what happened between that and
	// the subscription taking effect.
	since := time.Now().Add(-time.Second)
	msgs, errs := docker.Events(ctx, events.ListOptions{
		Since: fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
		Filters: filters.NewArgs(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("label", labelProject+"="+project)),
	})
	go func() {
		defer close(r.done)
		for {
			select {
			case m := <-msgs:
				seen := time.Now()
				r.mu.Lock()
				r.evs = append(r.evs, engineEvent{at: m.TimeNano, seen: seen, action: string(m.Action), service: m.Actor.Attributes[labelService]})
				r.mu.Unlock()
			case err := <-errs:
				if ctx.Err() == nil {
					r.mu.Lock()
					r.err = cmp.Or(err, io.ErrUnexpectedEOF)
					r.mu.Unlock()
				}
				return
			}
		}
	}()
	// Make sure the stream is up before anything is measured.
	if _, err := docker.Ping(ctx); err != nil {
		cancel()
		return nil, err
	}
	return r, nil
}

func (r *recorder) stop() {
	r.cancel()
	<-r.done
}

func (r *recorder) failed() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// lastBefore returns the service's latest event of that action between
// from and to.
func (r *recorder) lastBefore(service, action string, from, to time.Time) (engineEvent, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found engineEvent
	ok := false
	for _, e := range r.evs {
		if e.service == service && e.action == action && e.at >= from.UnixNano() && e.at <= to.UnixNano() && (!ok || e.at > found.at) {
			found, ok = e, true
		}
	}
	return found, ok
}

// ---- cleanup

// cleanup removes what the run created: the project's containers,
// volumes and network, the images tagged for it, and the temp directory.
func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logf("cleaning up %s", b.name)
	args := []string{"docker", "compose", "-p", b.name}
	if _, file, err := b.release(); err == nil {
		args = append(args, "-f", file, "--profile", migrateProfile)
	}
	if r := command(ctx, b.tmp, b.env(), append(args, "down", "-v", "--remove-orphans", "-t", "2")...); r.err != nil {
		logf("warning: %v", r.failure("compose down"))
	}
	// Whatever compose down left (a one-off container of an interrupted run,
	// a first deploy that never wrote its release).
	label := filters.NewArgs(filters.Arg("label", labelProject+"="+b.name))
	if list, err := b.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: label}); err == nil {
		for _, c := range list {
			warn(b.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}))
		}
	}
	if vols, err := b.docker.VolumeList(ctx, volume.ListOptions{Filters: label}); err == nil {
		for _, v := range vols.Volumes {
			warn(b.docker.VolumeRemove(ctx, v.Name, true))
		}
	}
	if nets, err := b.docker.NetworkList(ctx, network.ListOptions{Filters: label}); err == nil {
		for _, n := range nets {
			warn(b.docker.NetworkRemove(ctx, n.ID))
		}
	}
	// The deployer tags every image <project>-<service>:…; removing the tags
	// (never by ID: other projects may share the image) deletes the images
	// only this run used.
	removed := 0
	if imgs, err := b.docker.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", b.name+"-*"))}); err == nil {
		for _, img := range imgs {
			for _, tag := range img.RepoTags {
				if strings.HasPrefix(tag, b.name+"-") {
					if _, err := b.docker.ImageRemove(ctx, tag, image.RemoveOptions{PruneChildren: true}); warn(err) == nil {
						removed++
					}
				}
			}
		}
	}
	warn(os.RemoveAll(b.tmp))
	logf("removed the project's containers, volumes, network, %d image tag(s) and %s", removed, b.tmp)
}

func warn(err error) error {
	if err != nil {
		logf("warning: %v", err)
	}
	return err
}

// ---- the machine

type machineInfo struct{ cpus, model, kernel, engine, compose, load string }

func (m machineInfo) String() string {
	return fmt.Sprintf("%s cores (%s), Linux %s, Docker Engine %s, Compose %s; load average at the start %s",
		m.cpus, m.model, m.kernel, m.engine, m.compose, m.load)
}

func (b *bench) machine(ctx context.Context) machineInfo {
	m := machineInfo{cpus: fmt.Sprint(runtime.NumCPU()), model: benchenv.CPUModel(), kernel: "?", engine: "?", compose: "?", load: benchenv.LoadAvg()}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(data))
	}
	if v, err := b.docker.ServerVersion(ctx); err == nil {
		m.engine = v.Version
	}
	if out, err := exec.CommandContext(ctx, "docker", "compose", "version", "--short").Output(); err == nil {
		m.compose = strings.TrimSpace(string(out))
	}
	return m
}

// ---- numbers

func tooks(s []sample) []time.Duration {
	var out []time.Duration
	for _, x := range s {
		out = append(out, x.took)
	}
	return out
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	n := len(s)
	if n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[n/2]
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func list(d []time.Duration) string {
	var s []string
	for _, x := range d {
		s = append(s, fmt.Sprintf("%.3f", x.Seconds()))
	}
	return strings.Join(s, " ") + " s"
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "deploybench: "+format+"\n", args...)
}
