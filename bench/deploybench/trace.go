package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Traced deploys run with a `docker` wrapper first on the PATH that logs
// when each docker command (the compose CLI the pipeline runs) started and
// ended. The wrapper costs a fork of date(1) on each side, a millisecond
// or two, so traced deploys only attribute time; the figures come from
// untraced ones.

// invocation is one docker command a traced deploy ran.
type invocation struct {
	start, end time.Time
	args       []string
}

func (v invocation) took() time.Duration { return v.end.Sub(v.start) }

// sub is the compose subcommand ("up", "run migrate", "version"), or the
// docker command for anything else.
func (v invocation) sub() string {
	a := v.args
	if len(a) == 0 {
		return "?"
	}
	if a[0] != "compose" {
		return "docker " + a[0]
	}
	for i := 1; i < len(a); i++ {
		switch a[i] {
		case "-p", "--project-name", "--project-directory", "-f", "--file", "--env-file", "--profile":
			i++
			continue
		}
		if strings.HasPrefix(a[i], "-") {
			continue
		}
		if a[i] == "run" {
			return "run " + a[len(a)-1]
		}
		return a[i]
	}
	return "compose"
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// tracedDeploy runs a deploy with the docker wrapper and returns the
// docker commands it ran.
func (b *bench) tracedDeploy(ctx context.Context, vars []string) (*result, []invocation, error) {
	real, err := exec.LookPath("docker")
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(b.tmp, "shim")
	log := filepath.Join(b.tmp, "shim.log")
	script := fmt.Sprintf("#!/bin/sh\ns=$(date +%%s%%N)\n%s \"$@\"\nrc=$?\nprintf '%%s %%s %%s\\n' \"$s\" \"$(date +%%s%%N)\" \"$*\" >>%s\nexit $rc\n",
		shellQuote(real), shellQuote(log))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o755); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		return nil, nil, err
	}
	env := b.env(vars...)
	for i, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			env[i] = "PATH=" + dir + string(os.PathListSeparator) + p
		}
	}
	r := command(ctx, b.stack, env, b.bin, "deploy", "--local",
		"-f", filepath.Join(b.stack, "compose.yaml"), "-p", b.name, "--root", b.root)
	if r.err != nil {
		return nil, nil, r.failure("traced deploy")
	}
	f, err := os.Open(log)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	invs, err := parseShimLog(f)
	return r, invs, err
}

func parseShimLog(r io.Reader) ([]invocation, error) {
	var out []invocation
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		s, err1 := strconv.ParseInt(f[0], 10, 64)
		e, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("shim log: %q", sc.Text())
		}
		out = append(out, invocation{start: time.Unix(0, s), end: time.Unix(0, e), args: f[2:]})
	}
	slices.SortFunc(out, func(a, b invocation) int { return a.start.Compare(b.start) })
	return out, sc.Err()
}

// tracedNoop attributes a no-op deploy's time to the docker commands it
// runs and to the deployer itself.
func (b *bench) tracedNoop(ctx context.Context, w io.Writer) error {
	fmt.Fprintf(w, "\n  traced no-op deploys (docker wrapper on the PATH; the rest is the deployer itself: start-up, Engine API calls, files):\n")
	for k := 1; k <= b.o.trace; k++ {
		r, invs, err := b.tracedDeploy(ctx, nil)
		if err != nil {
			return err
		}
		var parts []string
		cli := time.Duration(0)
		for _, v := range invs {
			parts = append(parts, fmt.Sprintf("%s %s", v.sub(), ms(v.took())))
			cli += v.took()
		}
		fmt.Fprintf(w, "    %d: wall %s = docker CLI %s (%s) + the deployer's own %s\n",
			k, ms(r.took()), ms(cli), strings.Join(parts, ", "), ms(r.took()-cli))
	}
	return nil
}

// tracedHealth splits the api's health latency at the moment `compose up`
// exited: a dependent's `condition: service_healthy` makes up itself wait
// for the api, and the pipeline only starts waiting once up has returned.
func (b *bench) tracedHealth(ctx context.Context, w io.Writer, variable string) error {
	fmt.Fprintf(w, "  traced deploys (docker wrapper on the PATH), the api's latency split at the exit of compose up:\n")
	for k := 1; k <= b.o.trace; k++ {
		before := b.containers(ctx)
		r, invs, err := b.tracedDeploy(ctx, []string{fmt.Sprintf("%s=trace%d", variable, k)})
		if err != nil {
			return err
		}
		if !slices.Contains(recreated(before, b.containers(ctx)), "api") {
			return fmt.Errorf("traced deploy %d did not recreate the api", k)
		}
		time.Sleep(300 * time.Millisecond)
		var l *line
		for i := range r.lines {
			if strings.HasPrefix(r.lines[i].text, "    api healthy, ") {
				l = &r.lines[i]
			}
		}
		if l == nil {
			return fmt.Errorf("traced deploy %d printed no api healthy line", k)
		}
		ev, ok := b.rec.lastBefore("api", healthyAction, r.start, l.at)
		if !ok {
			return fmt.Errorf("traced deploy %d: no health event for the api", k)
		}
		var up *invocation
		for i := range invs {
			if invs[i].sub() == "up" {
				up = &invs[i]
			}
		}
		if up == nil {
			return fmt.Errorf("traced deploy %d ran no compose up", k)
		}
		at := time.Unix(0, ev.at)
		how := fmt.Sprintf("compose up exited %s after the event, the line came %s after that", ms(up.end.Sub(at)), ms(l.at.Sub(up.end)))
		if up.end.Before(at) {
			how = fmt.Sprintf("compose up had exited %s before the event: the line came from the event, %s after it", ms(at.Sub(up.end)), ms(l.at.Sub(at)))
		}
		fmt.Fprintf(w, "    %d: event %s after compose up started; %s (event → line %s)\n",
			k, ms(at.Sub(up.start)), how, ms(l.at.Sub(at)))
	}
	return nil
}
