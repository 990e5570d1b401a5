// Command builders measures where a deploy should build, for a code-only
// change of the testdata stack (deployer/testdata/stack: the api and its
// migrate mode, built from one Dockerfile), deployed over the test sshd:
//
//   - host: the host Engine's own BuildKit (builder host, the command
//     line's default); nothing is shipped;
//   - elsewhere: a BuildKit on another machine, after which only the
//     layers the host lacks are shipped (builder local, the Action's
//     default on a runner). One machine is both runner and host here, so
//     the standalone buildkitd (scripts/buildkitd) plays the runner's.
//
// Interleaved, order alternating, n times each: the api rebuilt with
// another release string (a new app layer), then deployed. It reports the
// deploy's wall time, the bytes shipped, and the peak resident memory of
// the host's Engine (dockerd, which runs its BuildKit) above its level
// when the deploy began, sampled every 20 ms: what a build takes from the
// services beside it. The stack's Dockerfile only copies a binary; a
// build that compiles or installs packages takes far more, and on the
// host all of it.
//
//	go run ./bench/builders [-n 5]
//
// Needs the test sshd (scripts/test-sshd) and the standalone buildkitd
// (scripts/buildkitd start), and runs as root (the host's directory is
// given to the test user). It removes what it deployed when it ends.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	osuser "os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/semalink/deploy-action/bench/internal/benchenv"
	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/deployer"
)

func main() {
	n := flag.Int("n", 5, "code changes deployed with each builder")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *n); err != nil {
		fmt.Fprintln(os.Stderr, "builders:", err)
		os.Exit(1)
	}
}

type sample struct {
	took    time.Duration
	shipped int64
	peak    int64 // bytes above the Engine's resident set when the deploy began
}

func run(ctx context.Context, n int) error {
	repo, err := benchenv.FindRepo()
	if err != nil {
		return err
	}
	env, err := benchenv.SSHEnv(repo)
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, filepath.Join(repo, "scripts", "buildkitd"), "addr").Output()
	buildkitd := strings.TrimSpace(string(out))
	if err != nil || buildkitd == "" {
		return fmt.Errorf("no standalone buildkitd: start one with scripts/buildkitd start")
	}
	dockerd, err := pidOf("dockerd")
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "builders-")
	if err != nil {
		return err
	}
	name := fmt.Sprintf("buildersbench-%d", os.Getpid())
	defer cleanup(tmp, name)
	root := filepath.Join(tmp, "root")
	if err := setup(ctx, repo, tmp, root, env["TEST_SSH_USER"]); err != nil {
		return err
	}

	builders := []struct{ label, builder string }{{"host", deployer.BuilderHost}, {"elsewhere", buildkitd}}
	deploy := func(builder, release string) (sample, error) {
		if err := benchenv.BuildAPI(ctx, repo, filepath.Join(tmp, "api", "api"), release); err != nil {
			return sample{}, err
		}
		plan, err := deployer.NewPlan(ctx, deployer.Options{
			Load: project.Options{WorkingDir: tmp, Env: []string{"RELEASE=" + release}}, Name: name,
			Hosts:  []string{env["TEST_SSH_USER"] + "@" + net.JoinHostPort(env["TEST_SSH_HOST"], env["TEST_SSH_PORT"])},
			SSHKey: env["TEST_SSH_KEY"], KnownHosts: env["TEST_SSH_KNOWN_HOSTS"], Root: root,
			Builder: builder, Trigger: "bench", Commit: "-",
		})
		if err != nil {
			return sample{}, err
		}
		base := rss(dockerd)
		stopSampling := sampleRSS(dockerd)
		start := time.Now()
		results, err := deployer.Run(ctx, plan, &deployer.TextReporter{W: io.Discard})
		took := time.Since(start)
		peak := stopSampling()
		if err != nil {
			return sample{}, fmt.Errorf("deploy with builder %s: %w", builder, err)
		}
		return sample{took: took, shipped: results[0].Shipped, peak: max(peak-base, 0)}, nil
	}

	benchenv.Logf("warming up: a first deploy with each builder")
	for i, b := range builders {
		if _, err := deploy(b.builder, fmt.Sprintf("warm-%d", i)); err != nil {
			return err
		}
	}
	samples := map[string][]sample{}
	for i := range n {
		order := slices.Clone(builders)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, b := range order {
			s, err := deploy(b.builder, fmt.Sprintf("%s-%d", b.label, i))
			if err != nil {
				return err
			}
			benchenv.Logf("%-9s change %d: %s, shipped %d B, Engine +%.1f MiB", b.label, i+1, benchenv.Secs(s.took), s.shipped, float64(s.peak)/(1<<20))
			samples[b.label] = append(samples[b.label], s)
		}
	}

	fmt.Printf("builders: a code-only change of the testdata stack, deployed over SSH; %d each, medians\n", n)
	fmt.Printf("machine: %s, load %s\n\n", benchenv.CPUModel(), benchenv.LoadAvg())
	fmt.Println("| builder | deploy | bytes shipped | host Engine's peak memory above its start |")
	fmt.Println("| --- | --- | --- | --- |")
	med := map[string]sample{}
	for _, b := range builders {
		s := median(samples[b.label])
		med[b.label] = s
		fmt.Printf("| %s | %s | %d B | %.1f MiB |\n", b.label, benchenv.Secs(s.took), s.shipped, float64(s.peak)/(1<<20))
	}
	fmt.Printf("\ndeploy time, elsewhere / host: %.2fx\n", med["elsewhere"].took.Seconds()/med["host"].took.Seconds())
	return nil
}

// setup copies the testdata stack into dir, with a build context for the
// api, and makes root, the host's directory, the SSH user's.
func setup(ctx context.Context, repo, dir, root, user string) error {
	compose, err := os.ReadFile(filepath.Join(repo, "deployer", "testdata", "stack", "compose.yaml"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "api"), 0o755); err != nil {
		return err
	}
	for file, data := range map[string][]byte{
		"compose.yaml":   compose,
		"api/Dockerfile": []byte("FROM scratch\nCOPY api /api\nENTRYPOINT [\"/api\"]\nCMD [\"serve\"]\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			return err
		}
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	u, err := osuser.Lookup(user)
	if err != nil {
		return fmt.Errorf("user %s: %w: start the test sshd with scripts/test-sshd", user, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	return os.Chown(root, uid, gid)
}

// sampleRSS samples pid's resident set every 20 ms until the returned
// func is called, which returns the largest seen.
func sampleRSS(pid int) func() int64 {
	var (
		mu   sync.Mutex
		peak int64
	)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			r := rss(pid)
			mu.Lock()
			peak = max(peak, r)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		<-stopped
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// rss is pid's resident set in bytes, 0 when it cannot be read.
func rss(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func pidOf(name string) (int, error) {
	out, err := exec.Command("pidof", name).Output()
	if err != nil {
		return 0, fmt.Errorf("pidof %s: %w: the Docker Engine must run on this machine", name, err)
	}
	return strconv.Atoi(strings.Fields(string(out))[0])
}

func median(s []sample) sample {
	slices.SortFunc(s, func(a, b sample) int { return cmp.Compare(a.took, b.took) })
	m := s[len(s)/2]
	shipped := make([]int64, len(s))
	peaks := make([]int64, len(s))
	for i, x := range s {
		shipped[i], peaks[i] = x.shipped, x.peak
	}
	slices.Sort(shipped)
	slices.Sort(peaks)
	return sample{took: m.took, shipped: shipped[len(s)/2], peak: peaks[len(s)/2]}
}

// cleanup removes the deployed project, its images and dir.
func cleanup(dir, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = exec.CommandContext(ctx, "docker", "compose", "-p", name, "down", "-v", "--remove-orphans", "-t", "1").Run()
	imgs, _ := exec.CommandContext(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference="+name+"-*").Output()
	if refs := strings.Fields(string(imgs)); len(refs) > 0 {
		_ = exec.CommandContext(ctx, "docker", append([]string{"image", "rm"}, refs...)...).Run()
	}
	os.RemoveAll(dir)
}
