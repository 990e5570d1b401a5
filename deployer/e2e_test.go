package deployer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/deployer"
	"github.com/semalink/deploy-action/deployer/compose"
	"github.com/semalink/deploy-action/deployer/compose/composetest"
	"github.com/semalink/deploy-action/deployer/remote"
	"github.com/semalink/deploy-action/deployer/remote/remotetest"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

func TestMain(m *testing.M) { composetest.Main(m) }

// stack is one test's copy of testdata/stack, with the api binary built
// into its build context, under a project name of its own.
type stack struct {
	t    *testing.T
	dir  string
	name string
	// root is deployer's directory on the host: this machine, over SSH or
	// not. Deploys over SSH log in as an unprivileged user, whom plan makes
	// its owner.
	root string
	// results are what the last deploy returned.
	results []deployer.Result
}

var (
	apiOnce sync.Once
	apiBin  string
	apiErr  error
)

// apiBinary builds the demo api once per test run.
func apiBinary(t *testing.T) string {
	t.Helper()
	apiOnce.Do(func() {
		dir, err := os.MkdirTemp("", "deployer-e2e-")
		if err != nil {
			apiErr = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		apiBin = filepath.Join(dir, "api")
		build := exec.Command("go", "build", "-trimpath", "-o", apiBin, "./examples/demo/api")
		build.Dir = filepath.Join(filepath.Dir(file), "..")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			apiErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if apiErr != nil {
		t.Fatal(apiErr)
	}
	return apiBin
}

func newStack(t *testing.T) *stack {
	t.Helper()
	composetest.Need(t)
	root, err := os.MkdirTemp("", "deployer-root-") // not t.TempDir: its parent is private
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(root) })
	s := &stack{t: t, dir: t.TempDir(), name: composetest.ProjectName(t), root: root}
	must(t, os.MkdirAll(filepath.Join(s.dir, "api"), 0o755))
	compose, err := os.ReadFile("testdata/stack/compose.yaml")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(s.dir, "compose.yaml"), compose, 0o644))
	must(t, os.WriteFile(filepath.Join(s.dir, "api", "Dockerfile"), []byte("FROM scratch\nCOPY api /api\nENTRYPOINT [\"/api\"]\nCMD [\"serve\"]\n"), 0o644))
	bin, err := os.ReadFile(apiBinary(t))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(s.dir, "api", "api"), bin, 0o755))
	t.Cleanup(s.down)
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// plan loads the stack with the given variables (RELEASE=v2,
// FAIL_HEALTH=1…) into a plan for the given hosts, or --local.
func (s *stack) plan(hosts []remote.Config, vars ...string) *deployer.Plan {
	s.t.Helper()
	env := append([]string{"PATH=" + os.Getenv("PATH")}, vars...)
	p, err := project.Load(s.t.Context(), project.Options{Files: []string{filepath.Join(s.dir, "compose.yaml")}, Env: env})
	must(s.t, err)
	for _, h := range hosts {
		remotetest.Chown(s.t, s.root, h.User)
	}
	return &deployer.Plan{
		Project: p, Name: s.name, Hosts: hosts, Local: len(hosts) == 0, Root: s.root,
		Migrate: p.Settings.Migrate, HealthTimeout: 30 * time.Second, Settle: time.Second,
		LockTimeout: time.Minute, Trigger: "test",
	}
}

// deploy runs a plan and returns its error and what it printed.
func (s *stack) deploy(ctx context.Context, p *deployer.Plan) (string, error) {
	return s.deployHooked(ctx, p, hooks{})
}

// deployHooked is deploy with hooks that the pipeline's progress calls:
// the named steps at which a test injects what it tests.
func (s *stack) deployHooked(ctx context.Context, p *deployer.Plan, h hooks) (string, error) {
	var out syncBuffer
	h.Reporter = &deployer.TextReporter{W: &out}
	results, err := deployer.Run(ctx, p, h)
	s.results = results
	s.t.Logf("deploy %s:\n%s", s.name, out.String())
	return out.String(), err
}

// hooks is a Reporter that calls step as each step starts, before the
// step does anything, line for each line of progress, and output with
// what a command on the host prints (a migration's output).
type hooks struct {
	deployer.Reporter
	step   func(name string)
	line   func(line string)
	output func(text string)
}

func (h hooks) Output() io.Writer {
	w := h.Reporter.Output()
	if h.output == nil {
		return w
	}
	return writerFunc(func(p []byte) (int, error) {
		h.output(string(p))
		return w.Write(p)
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (h hooks) Step(name string) func(error) {
	if h.step != nil {
		h.step(name)
	}
	return h.Reporter.Step(name)
}

func (h hooks) Printf(format string, args ...any) {
	if h.line != nil {
		h.line(fmt.Sprintf(format, args...))
	}
	h.Reporter.Printf(format, args...)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// oneOffs lists the project's one-off containers of a service (compose
// run), running or not.
func (s *stack) oneOffs(service string) []string {
	list, err := dockerClient(s.t).ContainerList(s.t.Context(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.compose.project="+s.name),
		filters.Arg("label", "com.docker.compose.service="+service),
		filters.Arg("label", "com.docker.compose.oneoff=True"))})
	if err != nil {
		s.t.Errorf("list one-off containers: %v", err) // not Fatal: called from hooks too
		return nil
	}
	var names []string
	for _, c := range list {
		names = append(names, strings.Join(c.Names, ",")+" "+c.State)
	}
	return names
}

// published is http://127.0.0.1:PORT of a running container of service
// that publishes its port private.
func (s *stack) published(service string, private uint16) string {
	s.t.Helper()
	list, err := dockerClient(s.t).ContainerList(s.t.Context(), container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.compose.project="+s.name),
		filters.Arg("label", "com.docker.compose.service="+service))})
	must(s.t, err)
	for _, c := range list {
		for _, port := range c.Ports {
			if port.PrivatePort == private && port.PublicPort != 0 {
				return "http://" + net.JoinHostPort("127.0.0.1", fmt.Sprint(port.PublicPort))
			}
		}
	}
	s.t.Fatalf("no running %s container with port %d published in %s", service, private, s.name)
	return ""
}

// answers returns the release the running api reports.
func (s *stack) answers() string {
	s.t.Helper()
	hc := http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get(s.published("api", 3000) + "/")
	if err != nil {
		s.t.Fatalf("the api does not answer: %v", err)
	}
	defer resp.Body.Close()
	var v struct{ Release string }
	must(s.t, json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&v))
	return v.Release
}

// releases reads release.json of every release on the host, oldest first.
func (s *stack) releases() []deployer.Release {
	s.t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(s.root, s.name, "releases", "*", "release.json"))
	var out []deployer.Release
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		must(s.t, err)
		var r deployer.Release
		must(s.t, json.Unmarshal(b, &r))
		out = append(out, r)
	}
	return out
}

func (s *stack) statuses() string {
	var st []string
	for _, r := range s.releases() {
		st = append(st, string(r.Status))
	}
	return strings.Join(st, " ")
}

func (s *stack) down() {
	if err := composetest.RemoveProject(s.name); err != nil {
		s.t.Log(err)
	}
}

var (
	dockerOnce sync.Once
	dockerCli  *client.Client
)

func dockerClient(t *testing.T) *client.Client {
	dockerOnce.Do(func() {
		dockerCli, _ = client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	})
	return dockerCli
}

// sshConfig connects to the test sshd as production does: key file and
// known_hosts.
func sshConfig(t *testing.T) remote.Config {
	e := remotetest.SSH(t)
	return remote.Config{Addr: net.JoinHostPort(e.Host, e.Port), User: e.User, KeyFile: e.Key, KnownHosts: e.KnownHosts}
}

func TestDeployOverSSH(t *testing.T) {
	host := sshConfig(t)
	s := newStack(t)

	if _, err := s.deploy(t.Context(), s.plan([]remote.Config{host}, "RELEASE=v1")); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	if got := s.answers(); got != "v1" {
		t.Fatalf("api answers %q, want v1", got)
	}
	first := s.results
	out, err := s.deploy(t.Context(), s.plan([]remote.Config{host}, "RELEASE=v2"))
	if err != nil {
		t.Fatalf("second deploy: %v", err)
	}
	if got := s.answers(); got != "v2" {
		t.Fatalf("api answers %q, want v2", got)
	}
	if got := s.statuses(); got != "superseded live" {
		t.Errorf("releases: %s, want superseded live", got)
	}
	// What Run returns says the same.
	if len(first) != 1 || len(s.results) != 1 {
		t.Fatalf("results %+v then %+v, want one per deploy", first, s.results)
	}
	r := s.results[0]
	steps := map[string]bool{}
	for _, st := range r.Steps {
		steps[st.Name] = st.Error == "" && st.Duration > 0
	}
	if r.Host != host.User+"@"+host.Addr || r.Release == "" || r.Previous != first[0].Release || r.Status != deployer.StatusLive ||
		r.Images["api"].Ref == "" || r.Images["api"].Size <= 0 || r.Migration != "ran" || r.FailedStep != "" || r.Error != "" || !steps["commit"] || !steps["upload release"] {
		t.Errorf("result %+v, want the new live release after %s, its images, the migration run and the steps", r, first[0].Release)
	}
	for _, want := range []string{"migrate (migrate)", "api healthy, "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The release files hold the environment: owner only.
	for _, f := range []string{"compose.yaml", ".env", "release.json"} {
		files, _ := filepath.Glob(filepath.Join(s.root, s.name, "releases", "*", f))
		if len(files) == 0 {
			t.Errorf("no release holds a %s", f)
		}
		for _, file := range files {
			if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600 (%v)", file, st.Mode().Perm(), err)
			}
		}
	}
}

// TestDeployOverSlowShell deploys twice as a user whose login shell takes
// a second to start each command, as nvm, rbenv or conda in a .bashrc do:
// every step works, only slower.
func TestDeployOverSlowShell(t *testing.T) {
	host := sshConfig(t)
	host.User = remotetest.SSH(t).SlowUser
	s := newStack(t)
	for _, v := range []string{"v1", "v2"} {
		if _, err := s.deploy(t.Context(), s.plan([]remote.Config{host}, "RELEASE="+v)); err != nil {
			t.Fatalf("deploy %s: %v", v, err)
		}
		if got := s.answers(); got != v {
			t.Fatalf("api answers %q, want %s", got, v)
		}
	}
	if got := s.statuses(); got != "superseded live" {
		t.Errorf("releases: %s, want superseded live", got)
	}
}

func TestFailingMigrationKeepsTheOldVersion(t *testing.T) {
	s := newStack(t)
	if _, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v1")); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	out, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v2", "FAIL_MIGRATION=1"))
	if err == nil || !strings.Contains(err.Error(), "migration migrate failed") {
		t.Fatalf("deploy with a failing migration: err = %v", err)
	}
	if !strings.Contains(out, "migration 0002_add_orders failed on purpose") {
		t.Errorf("the migration's own output is not shown")
	}
	if got := s.answers(); got != "v1" {
		t.Errorf("api answers %q after a failed migration, want the old v1", got)
	}
	if got := s.statuses(); got != "live failed" {
		t.Errorf("releases: %s, want live failed", got)
	}
	if r := s.results; len(r) != 1 || r[0].Status != deployer.StatusFailed || r[0].FailedStep != "migrate (migrate)" || !strings.Contains(r[0].Error, "migration migrate failed") {
		t.Errorf("results %+v, want the failed release and its failed step", r)
	}
}

func TestUnhealthyReleaseRollsBack(t *testing.T) {
	s := newStack(t)
	if _, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v1")); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	_, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v2", "FAIL_HEALTH=1"))
	if err == nil || !strings.Contains(err.Error(), "rolled back to") {
		t.Fatalf("deploy of an unhealthy release: err = %v", err)
	}
	if got := s.answers(); got != "v1" {
		t.Errorf("api answers %q after the rollback, want v1", got)
	}
	if got := s.statuses(); got != "live rolled-back" {
		t.Errorf("releases: %s, want live rolled-back", got)
	}
	// The next good deploy goes through.
	if _, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v3")); err != nil {
		t.Fatalf("deploy after a rollback: %v", err)
	}
	if got := s.answers(); got != "v3" {
		t.Errorf("api answers %q, want v3", got)
	}
}

func TestWrongHostKeyChangesNothing(t *testing.T) {
	host := sshConfig(t)
	wrong := filepath.Join(t.TempDir(), "known_hosts")
	must(t, os.WriteFile(wrong, []byte(remotetest.OtherHostKeyLine(t, host.Addr)), 0o600))
	host.KnownHosts = wrong
	s := newStack(t)
	_, err := s.deploy(t.Context(), s.plan([]remote.Config{host}, "RELEASE=v1"))
	if err == nil || !strings.Contains(err.Error(), "SHA256:") {
		t.Fatalf("deploy to a host with the wrong key: err = %v, want a refusal naming the fingerprint", err)
	}
	if _, err := os.Stat(filepath.Join(s.root, s.name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the host changed: %s exists (%v)", filepath.Join(s.root, s.name), err)
	}
}

// TestConcurrentDeploysTakeTurns starts a second deploy while the first
// holds the lock (at its migration, which waits until the second says it
// waits): the second waits, then deploys after the first.
func TestConcurrentDeploysTakeTurns(t *testing.T) {
	host := sshConfig(t)
	s := newStack(t)
	var wg sync.WaitGroup
	outs, errs := make([]string, 2), make([]error, 2)
	secondWaits, secondDone := make(chan struct{}), make(chan struct{})
	var once sync.Once
	second := func() {
		defer close(secondDone)
		outs[1], errs[1] = s.deployHooked(t.Context(), s.plan([]remote.Config{host}, "RELEASE=v2"), hooks{line: func(line string) {
			if strings.Contains(line, "another deploy holds the lock") {
				once.Do(func() { close(secondWaits) })
			}
		}})
	}
	outs[0], errs[0] = s.deployHooked(t.Context(), s.plan([]remote.Config{host}, "RELEASE=v1"), hooks{step: func(name string) {
		if strings.HasPrefix(name, "migrate") {
			wg.Go(second)
			select {
			case <-secondWaits:
			case <-secondDone: // it failed without waiting: its error says why
			}
		}
	}})
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("deploy %d: %v", i+1, err)
		}
	}
	if got := s.answers(); got != "v2" {
		t.Errorf("api answers %q, want v2, the deploy that waited", got)
	}
	if got := s.statuses(); got != "superseded live" {
		t.Errorf("releases: %s, want superseded live", got)
	}
}

func TestDroppedConnectionMidDeploy(t *testing.T) {
	host := sshConfig(t)
	s := newStack(t)
	if _, err := s.deploy(t.Context(), s.plan([]remote.Config{host}, "RELEASE=v1")); err != nil {
		t.Fatalf("first deploy: %v", err)
	}

	// Cut the connection while the migration runs on the host: the
	// release is uploaded and pending, the lock held.
	network := remotetest.NewNetwork(t)
	cut := host
	cut.Dial = network.Dial
	var once sync.Once
	cutting := hooks{output: func(text string) {
		if strings.Contains(text, "applying migrations") {
			once.Do(network.CutAll)
		}
	}}
	_, err := s.deployHooked(t.Context(), s.plan([]remote.Config{cut}, "RELEASE=v2", "MIGRATE_SLEEP=3s"), cutting)
	if err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("a deploy whose connection was cut: err = %v, want connection lost", err)
	}
	if got := s.answers(); got != "v1" {
		t.Errorf("api answers %q, want v1 still", got)
	}

	// The lock went with the connection: the next deploy runs, and records
	// the interrupted one.
	if _, err := s.deploy(t.Context(), s.plan([]remote.Config{host}, "RELEASE=v3")); err != nil {
		t.Fatalf("deploy after the cut: %v", err)
	}
	if got := s.answers(); got != "v3" {
		t.Errorf("api answers %q, want v3", got)
	}
	if got := s.statuses(); got != "superseded interrupted live" {
		t.Errorf("releases: %s, want superseded interrupted live", got)
	}
}

// TestFrozenConnectionMidMigration stops every packet of a deploy's
// connection, without closing it, while a migration that would never end
// by itself runs: the deploy fails once its keepalives go unanswered, the
// host notices (sshd's ClientAliveInterval) and ends what the deploy ran,
// and the next deploy, which waited for the lock, removes the migration
// container that outlived its compose command before running its own:
// two migrations never run at once.
func TestFrozenConnectionMidMigration(t *testing.T) {
	host := sshConfig(t)
	s := newStack(t)
	if _, err := s.deploy(t.Context(), s.plan([]remote.Config{host}, "RELEASE=v1")); err != nil {
		t.Fatalf("first deploy: %v", err)
	}

	network := remotetest.NewNetwork(t)
	frozen := host
	frozen.KeepAlive = time.Second
	frozen.Dial = network.Dial
	var once sync.Once
	freezing := hooks{output: func(text string) {
		if strings.Contains(text, "applying migrations") {
			once.Do(network.FreezeAll)
		}
	}}
	_, err := s.deployHooked(t.Context(), s.plan([]remote.Config{frozen}, "RELEASE=v2", "MIGRATE_SLEEP=1h"), freezing)
	if err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("a deploy whose packets stopped: err = %v, want connection lost", err)
	}

	// A migration container that outlived its compose command (compose
	// removes its own on TERM; one KILLed leaves it), made here as a deploy
	// makes it; and one that someone runs by hand, which is left alone.
	live := filepath.Join(s.root, s.name, "current")
	run := func(args ...string) {
		cmd := exec.CommandContext(t.Context(), "docker", append([]string{"compose", "-p", s.name, "--project-directory", live,
			"-f", filepath.Join(live, "compose.yaml"), "--env-file", filepath.Join(live, ".env"),
			"run", "-d", "-e", "MIGRATE_SLEEP=1h"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("start a migration: %v\n%s", err, out)
		}
	}
	run("--label", compose.RunLabel+"=1", "migrate")
	run("--name", s.name+"-by-hand", "migrate")
	if n := len(s.oneOffs("migrate")); n < 2 {
		t.Fatal("no leftover migration container before the next deploy")
	}

	// The next deploy's migration is the only one of a deploy running
	// when it prints (beside the one run by hand).
	others := -1
	counting := hooks{output: func(text string) {
		if others < 0 && strings.Contains(text, "applying migrations") {
			others = len(s.oneOffs("migrate")) - 2
		}
	}}
	out, err := s.deployHooked(t.Context(), s.plan([]remote.Config{host}, "RELEASE=v3"), counting)
	if err != nil {
		t.Fatalf("deploy after the freeze: %v", err)
	}
	if others != 0 {
		t.Errorf("%d other migration container(s) ran beside the new deploy's", others)
	}
	if got := s.answers(); got != "v3" {
		t.Errorf("api answers %q, want v3", got)
	}
	if got := s.statuses(); got != "superseded interrupted live" {
		t.Errorf("releases: %s, want superseded interrupted live", got)
	}
	if !regexp.MustCompile(`removed [1-9][0-9]* migration container\(s\) left by an interrupted deploy`).MatchString(out) {
		t.Errorf("the next deploy did not say it removed the leftover migration")
	}
	if left := s.oneOffs("migrate"); len(left) != 1 || !strings.Contains(left[0], s.name+"-by-hand") {
		t.Errorf("migration containers after the deploy: %v, want only the one run by hand", left)
	}
}

// TestLockLostStopsTheDeploy kills the process that holds the deploy lock
// on the host while a migration runs that would never end by itself: the
// deploy notices, stops with "lock lost", and changes nothing more; the
// old version serves and the next deploy goes through.
func TestLockLostStopsTheDeploy(t *testing.T) {
	host := sshConfig(t)
	s := newStack(t)
	if _, err := s.deploy(t.Context(), s.plan([]remote.Config{host}, "RELEASE=v1")); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	lockFile := filepath.Join(s.root, s.name, "deploy.lock")
	killed := 0
	kill := hooks{output: func(text string) {
		if killed == 0 && strings.Contains(text, "applying migrations") {
			for _, pid := range remotetest.Running(lockFile) {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed++
				}
			}
		}
	}}
	_, err := s.deployHooked(t.Context(), s.plan([]remote.Config{host}, "RELEASE=v2", "MIGRATE_SLEEP=1h"), kill)
	if killed == 0 {
		t.Fatal("found no lock process to kill")
	}
	if err == nil || !strings.Contains(err.Error(), "deploy lock lost") {
		t.Fatalf("deploy whose lock was killed: err = %v, want lock lost", err)
	}
	if got := s.answers(); got != "v1" {
		t.Errorf("api answers %q, want v1 still", got)
	}
	if _, err := s.deploy(t.Context(), s.plan([]remote.Config{host}, "RELEASE=v3")); err != nil {
		t.Fatalf("deploy after the lost lock: %v", err)
	}
	if got := s.answers(); got != "v3" {
		t.Errorf("api answers %q, want v3", got)
	}
}

func TestRollbackByHand(t *testing.T) {
	s := newStack(t)
	for _, v := range []string{"RELEASE=v1", "RELEASE=v2"} {
		if _, err := s.deploy(t.Context(), s.plan(nil, v)); err != nil {
			t.Fatalf("deploy %s: %v", v, err)
		}
	}
	var out syncBuffer
	if _, err := deployer.Rollback(t.Context(), s.plan(nil), "", &deployer.TextReporter{W: &out}); err != nil {
		t.Fatalf("rollback: %v\n%s", err, out.String())
	}
	if got := s.answers(); got != "v1" {
		t.Errorf("api answers %q after the rollback, want v1", got)
	}
	if got := s.statuses(); got != "live rolled-back" {
		t.Errorf("releases: %s, want live rolled-back", got)
	}
	hosts, err := deployer.Releases(t.Context(), s.plan(nil), &deployer.TextReporter{W: io.Discard})
	if err != nil || len(hosts) != 1 || hosts[0].Current != s.releases()[0].ID {
		t.Errorf("Releases: %+v, %v; want the first release current", hosts, err)
	}
	// Rolling back to the live release is refused; to an unknown one too.
	if _, err := deployer.Rollback(t.Context(), s.plan(nil), hosts[0].Current, &deployer.TextReporter{W: io.Discard}); err == nil || !strings.Contains(err.Error(), "already live") {
		t.Errorf("rollback to the live release: %v", err)
	}
	if _, err := deployer.Rollback(t.Context(), s.plan(nil), "20200101-000000-beef", &deployer.TextReporter{W: io.Discard}); err == nil || !strings.Contains(err.Error(), "no release") {
		t.Errorf("rollback to an unknown release: %v", err)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	s := newStack(t)
	p := s.plan(nil, "RELEASE=v1")
	p.DryRun = true
	out, err := s.deploy(t.Context(), p)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if !strings.Contains(out, "nothing changed") {
		t.Errorf("dry run output:\n%s", out)
	}
	if rel := s.releases(); len(rel) != 0 {
		t.Errorf("a dry run made releases: %v", rel)
	}
	if _, err := os.Stat(filepath.Join(s.root, s.name)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a dry run made the project's directory on the host (%v)", err)
	}
}

func TestPreflightErrorStopsBeforeTheHost(t *testing.T) {
	s := newStack(t)
	compose := filepath.Join(s.dir, "compose.yaml")
	b, err := os.ReadFile(compose)
	must(t, err)
	// A proxy routing to a service that does not exist is an error finding.
	b = append(b, []byte("  proxy:\n    image: deployer-demo/caddy:2.11.9\n    volumes: [\"./Caddyfile:/etc/caddy/Caddyfile:ro\"]\n")...)
	must(t, os.WriteFile(compose, b, 0o644))
	must(t, os.WriteFile(filepath.Join(s.dir, "Caddyfile"), []byte(":80 {\n\treverse_proxy apii:3000\n}\n"), 0o644))
	_, err = s.deploy(t.Context(), s.plan(nil, "RELEASE=v1"))
	var cf *deployer.CheckFailed
	if !errors.As(err, &cf) || !strings.Contains(err.Error(), "proxy-upstream-unknown") {
		t.Fatalf("deploy with an error finding: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.root, s.name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the host changed although the checks failed")
	}
}

func TestUnchangedMigrationIsNotRerun(t *testing.T) {
	s := newStack(t)
	if _, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v1")); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	out, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v1"))
	if err != nil {
		t.Fatalf("redeploy: %v", err)
	}
	if !strings.Contains(out, "not run again") || strings.Contains(out, "applying migrations") {
		t.Errorf("an unchanged migration ran again:\n%s", out)
	}
	if r := s.results; len(r) != 1 || r[0].Migration != "skipped" {
		t.Errorf("results %+v, want the migration skipped", r)
	}
	// A changed one runs.
	out, err = s.deploy(t.Context(), s.plan(nil, "RELEASE=v2"))
	if err != nil || !strings.Contains(out, "migrate v2: applying migrations") {
		t.Errorf("a changed migration did not run: %v\n%s", err, out)
	}
}

// TestLocalBuilderShips builds on this machine's BuildKit and ships the
// result to the host over SSH. The host here is the same Engine, so what
// this proves is the path end to end; package ship's tests prove the
// layers it leaves out.
func TestLocalBuilderShips(t *testing.T) {
	host := sshConfig(t)
	s := newStack(t)
	p := s.plan([]remote.Config{host}, "RELEASE=v1")
	p.Builder = deployer.BuilderLocal
	out, err := s.deploy(t.Context(), p)
	if err != nil {
		t.Fatalf("deploy with --builder local: %v", err)
	}
	if !strings.Contains(out, "were on the host already") {
		t.Errorf("no shipping reported:\n%s", out)
	}
	if got := s.answers(); got != "v1" {
		t.Errorf("api answers %q, want v1", got)
	}
}

func TestBuildFailureChangesNothing(t *testing.T) {
	s := newStack(t)
	must(t, os.WriteFile(filepath.Join(s.dir, "api", "Dockerfile"), []byte("FROM scratch\nCOPY missing-file /api\n"), 0o644))
	_, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v1"))
	if err == nil || !strings.Contains(err.Error(), "api") {
		t.Fatalf("deploy with a broken Dockerfile: %v", err)
	}
	if rel := s.releases(); len(rel) != 0 {
		t.Errorf("a failed build left releases: %v", rel)
	}
}

func TestOldReleasesArePruned(t *testing.T) {
	s := newStack(t)
	for _, v := range []string{"RELEASE=v1", "RELEASE=v2", "RELEASE=v3"} {
		p := s.plan(nil, v)
		p.Keep = 2
		if _, err := s.deploy(t.Context(), p); err != nil {
			t.Fatalf("deploy %s: %v", v, err)
		}
	}
	if got := s.statuses(); got != "superseded live" {
		t.Errorf("releases after three deploys with keep 2: %s, want superseded live", got)
	}
	// Failures do not push out the releases that worked: after three
	// failed deploys and a good one, the one before the good one is kept
	// for a rollback, and the two newest failures to look at.
	for i := range 3 {
		p := s.plan(nil, fmt.Sprintf("RELEASE=f%d", i), "FAIL_MIGRATION=1")
		p.Keep = 2
		if _, err := s.deploy(t.Context(), p); err == nil {
			t.Fatalf("deploy with a failing migration succeeded")
		}
	}
	p := s.plan(nil, "RELEASE=v4")
	p.Keep = 2
	if _, err := s.deploy(t.Context(), p); err != nil {
		t.Fatalf("deploy v4: %v", err)
	}
	if got := s.statuses(); got != "superseded failed failed live" {
		t.Errorf("releases after three failures and a good deploy with keep 2: %s, want superseded failed failed live", got)
	}
}

// TestHostsOneAtATime deploys to two hosts, the second of which cannot be
// verified: the first is deployed, the second refused, and the error names
// it.
func TestHostsOneAtATime(t *testing.T) {
	good := sshConfig(t)
	bad := good
	bad.Fingerprint = "SHA256:" + strings.Repeat("A", 43)
	s := newStack(t)
	_, err := s.deploy(t.Context(), s.plan([]remote.Config{good, bad}, "RELEASE=v1"))
	if err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Fatalf("deploy to a good and a bad host: %v", err)
	}
	if got := s.statuses(); got != "live" {
		t.Errorf("the first host's releases: %q, want live", got)
	}
}

// startFirst makes the stack's api ask for start-first.
func (s *stack) startFirst() {
	s.t.Helper()
	file := filepath.Join(s.dir, "compose.yaml")
	b, err := os.ReadFile(file)
	must(s.t, err)
	out := strings.Replace(string(b), "    deploy:\n", "    deploy:\n      update_config:\n        order: start-first\n", 1)
	if out == string(b) {
		s.t.Fatal("the stack's api has no deploy: block")
	}
	must(s.t, os.WriteFile(file, []byte(out), 0o644))
}

// apiContainers are the IDs of the stack's api containers, running or not.
func (s *stack) apiContainers() []string {
	s.t.Helper()
	list, err := dockerClient(s.t).ContainerList(s.t.Context(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.compose.project="+s.name),
		filters.Arg("label", "com.docker.compose.service=api"),
		filters.Arg("label", "com.docker.compose.oneoff=False"))})
	must(s.t, err)
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID+" "+c.State)
	}
	slices.Sort(ids)
	return ids
}

// TestStartFirstSwap: a start-first api is replaced by a new container
// that started beside the old one; a new one that never turns healthy is
// removed while the old one serves on, untouched; an unchanged api is
// left alone.
func TestStartFirstSwap(t *testing.T) {
	s := newStack(t)
	s.startFirst()
	if _, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v1")); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	v1 := s.apiContainers()

	// A broken v2: its container is removed, v1's was never stopped.
	out, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v2", "FAIL_HEALTH=1"))
	if err == nil || !strings.Contains(err.Error(), "the old api containers still serve") {
		t.Fatalf("a broken release: %v\n%s", err, out)
	}
	if got := s.apiContainers(); !slices.Equal(got, v1) {
		t.Errorf("api containers after the broken release: %v, want v1's %v", got, v1)
	}
	if got := s.answers(); got != "v1" {
		t.Errorf("api answers %q, want v1", got)
	}

	// A good v3 replaces it, start-first.
	out, err = s.deploy(t.Context(), s.plan(nil, "RELEASE=v3"))
	if err != nil {
		t.Fatalf("deploy v3: %v\n%s", err, out)
	}
	got := s.apiContainers()
	if len(got) != 1 || slices.Equal(got, v1) || !strings.HasSuffix(got[0], " running") {
		t.Errorf("api containers after v3: %v (v1's: %v)", got, v1)
	}
	if a := s.answers(); a != "v3" {
		t.Errorf("api answers %q, want v3", a)
	}
	res := s.results[0]
	if len(res.Swaps) != 1 || res.Swaps[0].Service != "api" || res.Swaps[0].Order != "start-first" || res.Swaps[0].Overlap <= 0 {
		t.Errorf("swaps: %+v", res.Swaps)
	}
	if rel := s.releases(); len(rel[len(rel)-1].Swaps) != 1 {
		t.Errorf("the release does not record its swap: %+v", rel[len(rel)-1])
	}
	if !strings.Contains(out, "swap api (start-first)") {
		t.Errorf("no swap step in the log:\n%s", out)
	}

	// The same again: nothing to replace.
	if _, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v3")); err != nil {
		t.Fatalf("deploy v3 again: %v", err)
	}
	if again := s.apiContainers(); !slices.Equal(again, got) || len(s.results[0].Swaps) != 0 {
		t.Errorf("an unchanged api was replaced: %v, was %v; swaps %+v", again, got, s.results[0].Swaps)
	}
}

// proxied puts the demo's Caddy in front of the stack's api, retrying
// for the time a swap takes (proxy-swap-unsafe), on an ephemeral port.
func (s *stack) proxied() {
	s.t.Helper()
	file := filepath.Join(s.dir, "compose.yaml")
	b, err := os.ReadFile(file)
	must(s.t, err)
	caddy := `
  caddy:
    image: deployer-demo/caddy:2.11.9
    restart: unless-stopped
    ports:
      - "127.0.0.1::8080"
    volumes:
      - ./Caddyfile:/etc/caddy/Caddyfile:ro
    depends_on:
      api:
        condition: service_healthy
    deploy:
      resources:
        limits:
          memory: 128m
    logging: *logging
`
	must(s.t, os.WriteFile(file, append(b, caddy...), 0o644))
	must(s.t, os.WriteFile(filepath.Join(s.dir, "Caddyfile"), []byte(":8080 {\n\treverse_proxy api:3000 {\n\t\tlb_try_duration 10s\n\t}\n}\n"), 0o644))
}

// proxyURL is where the stack's Caddy answers.
func (s *stack) proxyURL() string { return s.published("caddy", 8080) + "/" }

// underLoad runs fn while a constant load of rate requests a second goes
// through the proxy, and returns the load's metrics.
func (s *stack) underLoad(rate int, fn func()) *vegeta.Metrics {
	s.t.Helper()
	targeter := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: s.proxyURL()})
	attacker := vegeta.NewAttacker(vegeta.Timeout(30 * time.Second))
	stop := make(chan struct{})
	var m vegeta.Metrics
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := range attacker.Attack(targeter, vegeta.Rate{Freq: rate, Per: time.Second}, 0, "swap") {
			m.Add(r)
			select {
			case <-stop:
				attacker.Stop()
			default:
			}
		}
	}()
	fn()
	close(stop)
	<-done
	m.Close()
	return &m
}

// TestStartFirstUnderLoad: with a constant load of 100 requests a second
// through the demo's Caddy, a start-first deploy, a broken one (whose
// container would answer 503 if it got a request) and a rollback fail
// no request and hold none for a second; the same deploy stop-first
// makes requests wait for a container, so the test tells the two apart.
func TestStartFirstUnderLoad(t *testing.T) {
	s := newStack(t)
	s.proxied()
	s.startFirst()
	if _, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v1")); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	for _, step := range []struct {
		name string
		run  func() error
	}{
		{"deploy v2", func() error { _, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v2")); return err }},
		{"a broken v3", func() error {
			if _, err := s.deploy(t.Context(), s.plan(nil, "RELEASE=v3", "FAIL_HEALTH=1")); err == nil {
				return errors.New("the broken release deployed")
			}
			return nil
		}},
		{"rollback to v1", func() error {
			_, err := deployer.Rollback(t.Context(), s.plan(nil, "RELEASE=v2"), "", &deployer.TextReporter{W: io.Discard})
			return err
		}},
	} {
		var err error
		m := s.underLoad(100, func() { err = step.run() })
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		t.Logf("%s start-first: %d requests, success %.4f, max %s, p99 %s, errors %v", step.name, m.Requests, m.Success, m.Latencies.Max, m.Latencies.P99, m.Errors)
		if m.Success < 1 || m.Requests == 0 {
			t.Errorf("%s start-first: %d requests, success %.4f, status codes %v, errors %v", step.name, m.Requests, m.Success, m.StatusCodes, m.Errors)
		}
		if m.Latencies.Max > time.Second {
			t.Errorf("%s start-first: the longest request took %s", step.name, m.Latencies.Max)
		}
	}

	// The same deploy, stop-first: the load sees it.
	o := newStack(t)
	o.proxied()
	if _, err := o.deploy(t.Context(), o.plan(nil, "RELEASE=v1")); err != nil {
		t.Fatalf("first stop-first deploy: %v", err)
	}
	var err error
	m := o.underLoad(100, func() { _, err = o.deploy(t.Context(), o.plan(nil, "RELEASE=v2")) })
	if err != nil {
		t.Fatalf("stop-first deploy: %v", err)
	}
	t.Logf("deploy v2 stop-first: %d requests, success %.4f, max %s, p99 %s, errors %v", m.Requests, m.Success, m.Latencies.Max, m.Latencies.P99, m.Errors)
	// While no container serves, Caddy retries every 250 ms
	// (lb_try_interval): a request waited for one, or failed.
	if m.Success == 1 && m.Latencies.Max < 250*time.Millisecond {
		t.Errorf("stop-first: no request failed or waited (max %s): the test cannot tell the orders apart", m.Latencies.Max)
	}
}
