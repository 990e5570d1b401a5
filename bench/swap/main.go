// Command swap measures what a deploy costs the requests that arrive
// while it runs, stop-first (compose up's way) against start-first
// (deploy.update_config.order: start-first), side by side in one run on
// this machine's Docker Engine: a constant load through the demo's Caddy
// (vegeta), on the api's route, during deploys of a new release and of a
// broken one, and in steady state for comparison; and how long the deploys
// take.
//
//	go run ./bench/swap [-rate 200] [-rounds 3]
//
// It needs Docker Engine, Compose v2 and the demo's Caddy image
// (scripts/demo-images). Everything it creates (two projects, their
// images, a temporary directory) is removed when it ends. See
// bench/README.md; figures go in docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/semalink/deploy-action/bench/internal/benchenv"
	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/deployer"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

const caddyImage = "deployer-demo/caddy:2.11.9"

func main() {
	rate := flag.Int("rate", 200, "requests a second through Caddy")
	rounds := flag.Int("rounds", 3, "deploys of each kind per order")
	steady := flag.Duration("steady", 5*time.Second, "how long the steady-state load runs")
	flag.Parse()
	if err := run(*rate, *rounds, *steady); err != nil {
		fmt.Fprintln(os.Stderr, "swap:", err)
		os.Exit(1)
	}
}

// stack is one copy of the test stack behind Caddy, in one order.
type stack struct {
	order, name, dir, root string
	docker                 *client.Client
}

func run(rate, rounds int, steady time.Duration) error {
	ctx := context.Background()
	repo, err := benchenv.FindRepo()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "swapbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	var stacks []*stack
	for _, order := range []string{"stop-first", "start-first"} {
		s := &stack{order: order, name: fmt.Sprintf("swapbench-%s-%d", order, os.Getpid()), dir: filepath.Join(tmp, order), docker: docker}
		s.root = filepath.Join(s.dir, "root")
		defer s.remove()
		if err := s.write(ctx, repo); err != nil {
			return err
		}
		benchenv.Logf("%s: first deploy", order)
		if _, err := s.deploy(ctx, "v0"); err != nil {
			return err
		}
		stacks = append(stacks, s)
	}
	fmt.Printf("%s, %s; load average %s; %d requests/s through Caddy (lb_try_duration 10s), %d rounds\n\n",
		benchenv.CPUModel(), "GOMAXPROCS "+fmt.Sprint(runtime.GOMAXPROCS(0)), benchenv.LoadAvg(), rate, rounds)
	fmt.Println("| order | what | requests | failed | longest | p99 | p99 ÷ steady | deploy |")
	fmt.Println("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	durations := map[string][]time.Duration{}
	for _, s := range stacks {
		base := s.load(rate, func() { time.Sleep(steady) })
		row(s.order, "steady state", base, base, 0)
		for i := range rounds {
			for _, broken := range []bool{false, true} {
				release := fmt.Sprintf("v%d", 2*i+1)
				what := "deploy"
				if broken {
					release, what = fmt.Sprintf("v%d", 2*i+2), "broken deploy"
				}
				var took time.Duration
				var derr error
				m := s.load(rate, func() { took, derr = s.deploy(ctx, release, brokenEnv(broken)...) })
				if broken != (derr != nil) {
					return fmt.Errorf("%s %s %s: %v", s.order, what, release, derr)
				}
				row(s.order, what, m, base, took)
				if !broken {
					durations[s.order] = append(durations[s.order], took)
				}
			}
		}
	}
	stop, start := median(durations["stop-first"]), median(durations["start-first"])
	fmt.Printf("\ndeploy duration, medians: stop-first %s, start-first %s: start-first ÷ stop-first %.2f×\n",
		benchenv.Secs(stop), benchenv.Secs(start), float64(start)/float64(stop))
	return nil
}

func brokenEnv(broken bool) []string {
	if broken {
		return []string{"FAIL_HEALTH=1"}
	}
	return nil
}

func row(order, what string, m, base *vegeta.Metrics, took time.Duration) {
	failed := int(float64(m.Requests) * (1 - m.Success))
	d := "-"
	if took > 0 {
		d = benchenv.Secs(took)
	}
	fmt.Printf("| %s | %s | %d | %d | %s | %s | %.2f× | %s |\n", order, what, m.Requests, failed,
		m.Latencies.Max.Round(time.Millisecond), m.Latencies.P99.Round(100*time.Microsecond),
		float64(m.Latencies.P99)/float64(base.Latencies.P99), d)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// write copies deployer/testdata/stack with the demo api built into it,
// Caddy in front, and the api's order.
func (s *stack) write(ctx context.Context, repo string) error {
	if err := os.MkdirAll(filepath.Join(s.dir, "api"), 0o755); err != nil {
		return err
	}
	compose, err := os.ReadFile(filepath.Join(repo, "deployer/testdata/stack/compose.yaml"))
	if err != nil {
		return err
	}
	c := string(compose)
	if s.order == "start-first" {
		c = strings.Replace(c, "    deploy:\n", "    deploy:\n      update_config:\n        order: start-first\n", 1)
	}
	c += `
  caddy:
    image: ` + caddyImage + `
    restart: unless-stopped
    ports: ["127.0.0.1::8080"]
    volumes: ["./Caddyfile:/etc/caddy/Caddyfile:ro"]
    depends_on: {api: {condition: service_healthy}}
    deploy: {resources: {limits: {memory: 128m}}}
    logging: *logging
`
	files := map[string]string{
		"compose.yaml":   c,
		"Caddyfile":      ":8080 {\n\treverse_proxy api:3000 {\n\t\tlb_try_duration 10s\n\t}\n}\n",
		"api/Dockerfile": "FROM scratch\nCOPY api /api\nENTRYPOINT [\"/api\"]\nCMD [\"serve\"]\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return benchenv.BuildAPI(ctx, repo, filepath.Join(s.dir, "api", "api"), "")
}

// deploy deploys the stack with RELEASE=release and vars, and says how
// long it took.
func (s *stack) deploy(ctx context.Context, release string, vars ...string) (time.Duration, error) {
	env := append([]string{"PATH=" + os.Getenv("PATH"), "RELEASE=" + release}, vars...)
	p, err := project.Load(ctx, project.Options{Files: []string{filepath.Join(s.dir, "compose.yaml")}, Env: env})
	if err != nil {
		return 0, err
	}
	plan := &deployer.Plan{Project: p, Name: s.name, Local: true, Root: s.root, Migrate: p.Settings.Migrate,
		HealthTimeout: 30 * time.Second, Settle: time.Second, LockTimeout: time.Minute, Trigger: "bench"}
	start := time.Now()
	_, err = deployer.Run(ctx, plan, &deployer.TextReporter{W: io.Discard})
	return time.Since(start), err
}

// load runs fn under a constant load through Caddy.
func (s *stack) load(rate int, fn func()) *vegeta.Metrics {
	url, err := s.proxyURL()
	if err != nil {
		panic(err)
	}
	atk := vegeta.NewAttacker(vegeta.Timeout(30 * time.Second))
	results := atk.Attack(vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url}), vegeta.Rate{Freq: rate, Per: time.Second}, 0, s.order)
	var m vegeta.Metrics
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := range results {
			m.Add(r)
		}
	}()
	fn()
	atk.Stop()
	<-done
	m.Close()
	return &m
}

func (s *stack) proxyURL() (string, error) {
	list, err := s.docker.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.compose.project="+s.name), filters.Arg("label", "com.docker.compose.service=caddy"))})
	if err != nil {
		return "", err
	}
	for _, c := range list {
		for _, p := range c.Ports {
			if p.PrivatePort == 8080 && p.PublicPort != 0 {
				return fmt.Sprintf("http://127.0.0.1:%d/", p.PublicPort), nil
			}
		}
	}
	return "", fmt.Errorf("%s: no caddy answers", s.name)
}

// remove takes the project down and removes its images.
func (s *stack) remove() {
	_ = exec.Command("docker", "compose", "-p", s.name, "down", "-v", "--remove-orphans", "-t", "1").Run()
	out, _ := exec.Command("docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference="+s.name+"-*").Output()
	for _, ref := range strings.Fields(string(out)) {
		_ = exec.Command("docker", "image", "rm", "-f", ref).Run()
	}
}
