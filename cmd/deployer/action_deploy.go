package main

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/report"
	"github.com/semalink/deploy-action/deployer"
	"github.com/sethvargo/go-githubactions"
	"github.com/spf13/cobra"
)

// actionDeploy runs `deployer deploy` from Action inputs. The SSH key and
// known_hosts arrive as secrets' contents: they are masked, written to
// owner-only files for the run, and removed after.
func actionDeploy(cmd *cobra.Command, gha *githubactions.Action) (err error) {
	co, err := actionCheckOptions(gha)
	if err != nil {
		return err
	}
	o := deployOptions{checkOptions: co}
	o.conn.hosts = list(gha.GetInput("hosts"))
	o.conn.fingerprint = gha.GetInput("host-fingerprint")
	o.conn.local = gha.GetInput("local") == "true"
	// The deployer's directory on the host, as the hidden --root flag sets
	// it; the step's env, not an input, as few should change it.
	o.conn.root = cmp.Or(os.Getenv("DEPLOYER_ROOT"), deployer.DefaultRoot)
	o.name = gha.GetInput("project")
	o.migrate = gha.GetInput("migrate")
	o.noRollback = gha.GetInput("no-rollback") == "true"
	o.dryRun = gha.GetInput("dry-run") == "true"
	o.builder = gha.GetInput("builder")
	o.insecureBuilder = gha.GetInput("insecure-builder") == "true"
	o.cacheFrom = list(gha.GetInput("cache-from"))
	o.cacheTo = list(gha.GetInput("cache-to"))
	o.trigger = "action"
	if os.Getenv("GITHUB_EVENT_NAME") == "workflow_dispatch" {
		o.trigger = "workflow_dispatch"
	}
	for name, d := range map[string]*time.Duration{"health-timeout": &o.healthTimeout, "migrate-timeout": &o.migrateTimeout, "lock-timeout": &o.lockTimeout} {
		if v := gha.GetInput(name); v != "" {
			if *d, err = time.ParseDuration(v); err != nil {
				return &exitError{code: exitConfig, err: fmt.Errorf("input %s: %q is not a duration: write it like 90s or 2m", name, v)}
			}
		}
	}
	if v := gha.GetInput("keep"); v != "" {
		if o.keep, err = strconv.Atoi(v); err != nil || o.keep < 1 {
			return &exitError{code: exitConfig, err: fmt.Errorf("input keep: %q is not a number of releases", v)}
		}
	}

	dir, err := os.MkdirTemp("", "deployer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if key := gha.GetInput("ssh-private-key"); key != "" {
		for _, line := range strings.Split(key, "\n") {
			if strings.TrimSpace(line) != "" {
				gha.AddMask(strings.TrimSpace(line))
			}
		}
		o.conn.sshKey = filepath.Join(dir, "key")
		if err := os.WriteFile(o.conn.sshKey, []byte(strings.TrimSpace(key)+"\n"), 0o600); err != nil {
			return err
		}
	}
	if kh := gha.GetInput("known-hosts"); kh != "" {
		o.conn.knownHosts = filepath.Join(dir, "known_hosts")
		if err := os.WriteFile(o.conn.knownHosts, []byte(kh+"\n"), 0o600); err != nil {
			return err
		}
	}

	plan, err := o.plan(cmd)
	if err != nil {
		return err
	}
	for _, s := range plan.Secrets {
		mask(gha, s)
	}
	rep := &actionReporter{gha: gha, w: cmd.OutOrStdout()}
	_, err = deployer.Run(cmd.Context(), plan, rep)
	summary := "### deployer deploy\n\nDeployed " + plan.Name + ".\n"
	if err != nil {
		msg := deployer.Redact(err.Error(), plan.Secrets)
		gha.Errorf("%s", msg)
		summary = "### deployer deploy\n\nThe deploy of " + plan.Name + " failed:\n\n```\n" + msg + "\n```\n"
		err = &exitError{code: deployer.ExitCode(err)}
	}
	gha.AddStepSummary(summary)
	return err
}

// actionReporter prints the pipeline's progress as collapsible log groups,
// one per step, with warnings and failures as annotations.
type actionReporter struct {
	gha *githubactions.Action
	w   io.Writer
}

var _ deployer.Reporter = (*actionReporter)(nil)

func (r *actionReporter) Step(name string) func(error) {
	start := time.Now()
	r.gha.Group(name)
	return func(err error) {
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			fmt.Fprint(r.w, commandSafeText(fmt.Sprintf("%s failed after %s: %v\n", name, took, err)))
		} else {
			fmt.Fprintf(r.w, "%s done in %s\n", name, took)
		}
		r.gha.EndGroup()
	}
}

func (r *actionReporter) Printf(format string, args ...any) {
	fmt.Fprint(r.w, commandSafeText(fmt.Sprintf(format, args...)+"\n"))
}

func (r *actionReporter) Warnf(format string, args ...any) { r.gha.Warningf(format, args...) }

// Finding is an annotation on the file and line it is about.
func (r *actionReporter) Finding(f checks.Finding, failing bool) {
	level := "warning"
	if failing {
		level = "error"
	}
	fmt.Fprintln(r.w, report.Annotation(f, level))
}

// Output is where a command's own output goes: untrusted, so no line of it
// may run a workflow command.
func (r *actionReporter) Output() io.Writer { return &commandSafeWriter{w: r.w} }

// commandSafeWriter passes whole lines through commandSafe.
type commandSafeWriter struct {
	w   io.Writer
	buf []byte
}

func (c *commandSafeWriter) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	for {
		i := bytes.IndexByte(c.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		if _, err := io.WriteString(c.w, commandSafe(string(c.buf[:i+1]))); err != nil {
			return 0, err
		}
		c.buf = c.buf[i+1:]
	}
}
