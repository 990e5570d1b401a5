// Command webhooks measures deployer serve's hook endpoint against
// Debian's webhook (adnanh/webhook) doing the same HMAC-SHA256 check, side
// by side on loopback:
//
//   - (a) signed, not allowed: a push event correctly signed in
//     X-Hub-Signature-256 from a repository the configuration does not
//     allow (ours: 403; webhook: its trigger rule, payload-hmac-sha256 and
//     a match on repository.full_name, is not satisfied);
//   - (b) bad signature: the same body signed with another secret (ours:
//     401, then 429 once the address's failure limit is used up; webhook:
//     rule not satisfied).
//
// Both run as child processes on loopback ports: webhook with a generated
// hooks.json, ours as this program again with -serve (server.LoadConfig,
// server.New, Serve; -inprocess serves it beside the load generator
// instead, which flatters it). A closed-loop load generator
// (-c workers, each with a keep-alive connection of its own) drives each
// target for -d per workload, the targets alternating and the order
// turning each round, and prints the median over -rounds of requests per
// second and p99 latency, and the ratios (rps ours ÷ theirs, p99 theirs ÷
// ours: above 1 we are ahead).
//
//	bench/webhooks/run [-d 5s] [-rounds 3] [-c 32] [-inprocess]
//
// The run script installs webhook (apt-get) when it is missing.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/semalink/deploy-action/bench/internal/benchenv"
	"github.com/semalink/deploy-action/server"
)

const secret = "bench-github-webhook-secret-0123456789" // both targets'

func main() {
	d := flag.Duration("d", 5*time.Second, "load per target, workload and round")
	rounds := flag.Int("rounds", 3, "rounds; the medians are reported")
	c := flag.Int("c", 32, "concurrent workers (our in-flight cap is 64)")
	inProcess := flag.Bool("inprocess", false, "serve ours in this process, beside the load generator (flatters it: docs/benchmarks.md)")
	serve := flag.String("serve", "", "internal: serve ours from DIR/server.yaml, print its address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *serve != "" {
		err = serveOurs(ctx, *serve, nil)
	} else {
		err = run(ctx, *d, *rounds, *c, *inProcess)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhooks:", err)
		os.Exit(1)
	}
}

type target struct {
	name    string
	url     string
	clients []*http.Client
	dials   atomic.Int64
}

type workload struct {
	name   string
	header http.Header
	want   map[string][]int // target name: the status codes it may answer
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	codes    map[int]int
}

func run(ctx context.Context, d time.Duration, rounds, c int, inProcess bool) error {
	if c > 32 {
		return errors.New("-c: at most 32: our server answers 503 beyond 64 requests in flight")
	}
	bin, err := exec.LookPath("webhook")
	if err != nil {
		return errors.New("webhook is not installed: run bench/webhooks/run, which installs it (apt-get install webhook)")
	}
	version, _ := exec.CommandContext(ctx, bin, "-version").Output()
	dir, err := os.MkdirTemp("", "webhooks-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var wg sync.WaitGroup // the servers, stopped before dir goes
	defer wg.Wait()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ours, err := startOurs(sctx, dir, inProcess, &wg)
	if err != nil {
		return fmt.Errorf("our server: %w", err)
	}
	theirs, err := startWebhook(sctx, bin, dir, &wg)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	targets := []*target{ours, theirs}
	for _, t := range targets {
		t.clients = make([]*http.Client, c)
		for i := range t.clients {
			dialer := &net.Dialer{}
			t.clients[i] = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				MaxIdleConns: 64, MaxIdleConnsPerHost: 64, DisableCompression: true,
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					t.dials.Add(1)
					return dialer.DialContext(ctx, network, addr)
				},
			}}
		}
	}

	body := pushBody()
	sign := func(key string) http.Header {
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write(body)
		return http.Header{"Content-Type": {"application/json"}, "X-Github-Event": {"push"},
			"X-Github-Delivery":   {"72d3162e-cc78-11e3-81ab-4c9367dc0958"},
			"X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(mac.Sum(nil))}}
	}
	good, bad := sign(secret), sign("another-secret-of-the-same-length-000")
	workloads := []workload{
		{"(a) signed, repository not allowed", good, map[string][]int{"ours": {403}, "webhook": {403}}},
		{"(b) bad signature", bad, map[string][]int{"ours": {401, 429}, "webhook": {403}}},
	}

	where := "ours in a process of its own"
	if inProcess {
		where = "ours in the load generator's process"
	}
	fmt.Printf("%s, GOMAXPROCS %d, load average %s; %s; %s; body %d bytes; %d workers, %s per run, %d rounds\n\n",
		benchenv.CPUModel(), runtime.GOMAXPROCS(0), benchenv.LoadAvg(), strings.TrimSpace(string(version)), where, len(body), c, d, rounds)
	results := map[string]map[string][]result{} // workload, target
	for _, w := range workloads {
		results[w.name] = map[string][]result{}
		for _, t := range targets { // warm-up: connections, caches, the failure limit
			if _, err := load(ctx, t, w, body, time.Second); err != nil {
				return err
			}
		}
	}
	for r := range rounds {
		for _, w := range workloads {
			order := targets
			if r%2 == 1 {
				order = []*target{theirs, ours}
			}
			for _, t := range order {
				res, err := load(ctx, t, w, body, d)
				if err != nil {
					return err
				}
				benchenv.Logf("round %d %s %s: %.0f rps, p50 %s, p99 %s, %s", r+1, w.name, t.name, res.rps, ms(res.p50), ms(res.p99), codes(res.codes))
				results[w.name][t.name] = append(results[w.name][t.name], res)
			}
		}
	}

	fmt.Println("| workload | requests/s: ours | webhook | **ours ÷ webhook** | p99: ours | webhook | **webhook ÷ ours** |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	var detail []string
	for _, w := range workloads {
		med := map[string]result{}
		for _, t := range targets {
			rs := results[w.name][t.name]
			med[t.name] = result{rps: median(rs, func(r result) float64 { return r.rps }),
				p50: time.Duration(median(rs, func(r result) float64 { return float64(r.p50) })),
				p99: time.Duration(median(rs, func(r result) float64 { return float64(r.p99) }))}
			var rps, p99 []string
			all := map[int]int{}
			for _, r := range rs {
				rps, p99 = append(rps, fmt.Sprintf("%.0f", r.rps)), append(p99, ms(r.p99))
				for code, n := range r.codes {
					all[code] += n
				}
			}
			detail = append(detail, fmt.Sprintf("| %s | %s | %s | %s | %s | %s |",
				w.name, t.name, ms(med[t.name].p50), strings.Join(rps, " "), strings.Join(p99, " "), codes(all)))
		}
		o, h := med["ours"], med["webhook"]
		fmt.Printf("| %s | %.0f | %.0f | **%.2f×** | %s | %s | **%.2f×** |\n",
			w.name, o.rps, h.rps, o.rps/h.rps, ms(o.p99), ms(h.p99), float64(h.p99)/float64(o.p99))
	}
	fmt.Println("\n| workload | target | p50 (median) | requests/s per round | p99 per round | status codes, all rounds |")
	fmt.Println("| --- | --- | ---: | --- | --- | --- |")
	fmt.Println(strings.Join(detail, "\n"))
	fmt.Printf("\nconnections dialled: ours %d, webhook %d (%d each if every one was kept alive)\n", ours.dials.Load(), theirs.dials.Load(), c)
	return nil
}

// load runs a closed loop of len(t.clients) workers against t for d.
func load(ctx context.Context, t *target, w workload, body []byte, d time.Duration) (result, error) {
	var (
		mu   sync.Mutex
		lats []time.Duration
		got  = map[int]int{}
		errs = make(chan error, len(t.clients))
		wg   sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for _, client := range t.clients {
		wg.Go(func() {
			mine, seen := make([]time.Duration, 0, 1<<14), map[int]int{}
			for time.Now().Before(end) && ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
				req.Header = w.header.Clone()
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil {
					errs <- fmt.Errorf("%s, %s: %w", t.name, w.name, err)
					return
				}
				mine = append(mine, time.Since(t0))
				seen[resp.StatusCode]++
			}
			mu.Lock()
			lats = append(lats, mine...)
			for code, n := range seen {
				got[code] += n
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return result{}, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	for code := range got {
		if !slices.Contains(w.want[t.name], code) {
			return result{}, fmt.Errorf("%s, %s: answered %s, want only %v", t.name, w.name, codes(got), w.want[t.name])
		}
	}
	slices.Sort(lats)
	pct := func(p float64) time.Duration { return lats[min(len(lats)-1, int(p*float64(len(lats))))] }
	return result{rps: float64(len(lats)) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99), codes: got}, nil
}

// startOurs writes our server's configuration (as docs/server.md has it,
// with a runner that must never be called) and serves it: in a child
// process, this program again with -serve, as webhook runs in one; or, with
// inProcess, here.
func startOurs(ctx context.Context, dir string, inProcess bool, wg *sync.WaitGroup) (*target, error) {
	for _, f := range []struct{ path, data string }{
		{"compose.yaml", "services:\n  api:\n    image: registry.example/api:1\n"},
		{".git/HEAD", "ref: refs/heads/main\n"}, // the source's work tree, as far as the configuration looks
		{"server.yaml", "state: " + filepath.Join(dir, "state") + "\nprojects:\n  demo:\n    compose-files: [" + filepath.Join(dir, "compose.yaml") + "]\n" +
			"    source: {git: " + filepath.Join(dir, "app.git") + ", dir: " + dir + "}\n" +
			"hooks:\n  github: {secrets: [env:BENCH_GITHUB_WEBHOOK_SECRET], repositories: [semalink/app], branches: [main], project: demo}\n"},
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f.path)), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, f.path), []byte(f.data), 0o600); err != nil {
			return nil, err
		}
	}
	addr := make(chan string, 1)
	if inProcess {
		errc := make(chan error, 1)
		wg.Go(func() { errc <- serveOurs(ctx, dir, addr) })
		select {
		case a := <-addr:
			return &target{name: "ours", url: "http://" + a + "/hooks/github"}, nil
		case err := <-errc:
			return nil, err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	out, w := io.Pipe()
	cmd := exec.CommandContext(ctx, exe, "-serve", dir)
	cmd.Stdout, cmd.Stderr = w, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	wg.Go(func() { w.CloseWithError(cmd.Wait()) })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("-serve gave no address: %w", err)
	}
	return &target{name: "ours", url: "http://" + strings.TrimSpace(line) + "/hooks/github"}, nil
}

// serveOurs serves deployer serve's hooks from dir/server.yaml on a free
// loopback port until ctx ends; the address goes to addr, or to stdout.
func serveOurs(ctx context.Context, dir string, addr chan<- string) error {
	os.Setenv("BENCH_GITHUB_WEBHOOK_SECRET", secret)
	cfg, err := server.LoadConfig(ctx, filepath.Join(dir, "server.yaml"))
	if err != nil {
		return err
	}
	s, err := server.New(cfg, server.Options{Log: slog.New(slog.DiscardHandler),
		Run: func(context.Context, server.Deploy, io.Writer) (server.Outcome, error) {
			return server.Outcome{}, errors.New("a benchmark request was queued as a deploy")
		}})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if addr != nil {
		addr <- ln.Addr().String()
	} else {
		fmt.Println(ln.Addr())
	}
	return s.Serve(ctx, ln, time.Second)
}

// startWebhook runs webhook on a free loopback port with a hook of the
// same check; it stops when ctx ends.
func startWebhook(ctx context.Context, bin, dir string, wg *sync.WaitGroup) (*target, error) {
	hooks := []map[string]any{{
		"id": "github", "execute-command": "/bin/true",
		"trigger-rule-mismatch-http-response-code": 403,
		// A wrong signature is an error (500 "Error occurred while
		// evaluating hook rules.") unless soft failures are on, which count
		// only inside an "or": so the signature match is an "or" of one.
		"trigger-signature-soft-failures": true,
		"trigger-rule": map[string]any{"and": []any{
			map[string]any{"or": []any{map[string]any{"match": map[string]any{"type": "payload-hmac-sha256", "secret": secret,
				"parameter": map[string]string{"source": "header", "name": "X-Hub-Signature-256"}}}}},
			map[string]any{"match": map[string]any{"type": "value", "value": "semalink/app",
				"parameter": map[string]string{"source": "payload", "name": "repository.full_name"}}},
		}},
	}}
	data, _ := json.MarshalIndent(hooks, "", "  ")
	path := filepath.Join(dir, "hooks.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port, handed over
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-hooks", path, "-ip", "127.0.0.1", "-port", strconv.Itoa(addr.Port), "-http-methods", "POST")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	wg.Go(func() { cmd.Wait(); close(exited) })
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			return nil, fmt.Errorf("exited at start: %s", out.String())
		default:
		}
		if c, err := net.Dial("tcp", addr.String()); err == nil {
			c.Close()
			return &target{name: "webhook", url: "http://" + addr.String() + "/hooks/github"}, nil
		}
	}
	return nil, fmt.Errorf("not listening on %s after 10s", addr)
}

// pushBody is a GitHub push event of the usual shape and size.
func pushBody() []byte {
	commit := func(i int) map[string]any {
		id := fmt.Sprintf("%040x", 0xc0ffee+i)
		return map[string]any{"id": id, "tree_id": fmt.Sprintf("%040x", 0xbeef+i), "distinct": true,
			"message":   fmt.Sprintf("api: change %d of the handler, with a message of ordinary length", i),
			"timestamp": "2026-12-07T10:00:00Z", "url": "https://github.com/someone/else/commit/" + id,
			"author":    map[string]string{"name": "Some One", "email": "some@example.com", "username": "someone"},
			"committer": map[string]string{"name": "Some One", "email": "some@example.com", "username": "someone"},
			"added":     []string{}, "removed": []string{}, "modified": []string{"api/main.go", "api/handler.go"}}
	}
	user := map[string]any{"login": "someone", "id": 1234567, "type": "User", "site_admin": false,
		"html_url": "https://github.com/someone", "avatar_url": "https://avatars.githubusercontent.com/u/1234567?v=4"}
	body, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": fmt.Sprintf("%040x", 0xc0ffee-1), "after": fmt.Sprintf("%040x", 0xc0ffee+2),
		"created": false, "deleted": false, "forced": false, "compare": "https://github.com/someone/else/compare/a...b",
		"repository": map[string]any{"id": 98765432, "name": "else", "full_name": "someone/else", "private": false, "owner": user,
			"html_url": "https://github.com/someone/else", "default_branch": "main", "master_branch": "main",
			"clone_url": "https://github.com/someone/else.git", "pushed_at": 1796637600, "created_at": 1700000000},
		"pusher": map[string]string{"name": "someone", "email": "some@example.com"}, "sender": user,
		"commits": []any{commit(0), commit(1), commit(2)}, "head_commit": commit(2),
	})
	return body
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 0 {
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return v[len(v)/2]
}

func codes(c map[int]int) string {
	var s []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		s = append(s, fmt.Sprintf("%d×%d", k, c[k]))
	}
	return strings.Join(s, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
