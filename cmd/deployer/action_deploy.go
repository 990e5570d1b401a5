package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
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

// actionDeploy runs a deploy (or, with redeploy, the live release's
// images again) from the inputs, then writes the outputs and the job
// summary, on failure too.
func actionDeploy(cmd *cobra.Command, in inputs, tmp string, redeploy bool) error {
	start := time.Now()
	co, err := actionCheckOptions(in, tmp)
	if err != nil {
		return err
	}
	o := deployOptions{checkOptions: co}
	o.name, o.migrate, o.builder = in.str("project"), in.str("migrate"), in.str("builder")
	o.cacheFrom, o.cacheTo = in.list("cache-from"), in.list("cache-to")
	for name, b := range map[string]*bool{"no-rollback": &o.noRollback, "dry-run": &o.dryRun, "insecure-builder": &o.insecureBuilder} {
		if *b, err = in.boolean(name); err != nil {
			return err
		}
	}
	for name, d := range map[string]*time.Duration{"health-timeout": &o.healthTimeout, "migrate-timeout": &o.migrateTimeout, "lock-timeout": &o.lockTimeout} {
		if *d, err = in.duration(name); err != nil {
			return err
		}
	}
	if o.keep, err = in.count("keep"); err != nil {
		return err
	}
	if o.conn, err = actionConn(in, tmp); err != nil {
		return err
	}
	o.trigger = trigger(redeploy)
	opts, err := o.options(cmd)
	if err != nil {
		return &exitError{code: exitConfig, err: err}
	}
	opts.Redeploy = redeploy
	opts.Actor, opts.RunURL = os.Getenv("GITHUB_ACTOR"), runURL()
	plan, err := deployer.NewPlan(cmd.Context(), opts)
	if err != nil {
		return &exitError{code: deployer.ExitCode(err), err: o.conn.named(err)}
	}
	for _, s := range plan.Secrets {
		mask(in.gha, s)
	}
	what := "deploy"
	if redeploy {
		what = "redeploy"
	}
	var dep *deployment
	if !plan.DryRun {
		if dep = startDeployment(cmd.Context(), in, what, plan.Commit); dep != nil {
			plan.Deployment = dep.id
		}
	}
	rep := &actionReporter{gha: in.gha, w: cmd.OutOrStdout()}
	results, err := deployer.Run(cmd.Context(), plan, rep)
	out := outcome{what: what, project: plan.Name, results: results, err: err, secrets: plan.Secrets, took: time.Since(start),
		url: in.str("url"), rep: rep}
	out.write(in.gha)
	dep.finishDeploy(context.WithoutCancel(cmd.Context()), out)
	return deployFailed(err, plan)
}

// actionOnHosts runs rollback or releases: commands on what is deployed,
// which need the project's name and hosts but no new release.
func actionOnHosts(cmd *cobra.Command, in inputs, tmp, command string) error {
	start := time.Now()
	conn, err := actionConn(in, tmp)
	if err != nil {
		return err
	}
	dir := in.or("working-directory", ".")
	ho := hostOptions{conn: conn, name: in.str("project"), files: inDir(dir, in.list("compose-files"))}
	plan, err := ho.plan(cmd.Context())
	if err != nil {
		return err
	}
	rep := &actionReporter{gha: in.gha, w: cmd.OutOrStdout()}
	if command == "releases" {
		hosts, err := deployer.Releases(cmd.Context(), plan, rep)
		if err != nil {
			return &exitError{code: exitFailed, err: err}
		}
		b, _ := json.Marshal(hosts)
		in.gha.SetOutput("releases", string(b))
		var text strings.Builder
		if err := printReleases(&text, hosts); err != nil {
			return err
		}
		fmt.Fprint(cmd.OutOrStdout(), commandSafeText(text.String()))
		in.gha.AddStepSummary("### deployer releases: " + plan.Name + "\n\n```\n" + text.String() + "```\n")
		return nil
	}
	results, err := deployer.Rollback(cmd.Context(), plan, in.str("release"), rep)
	outcome{what: "rollback", project: plan.Name, results: results, err: err, took: time.Since(start), url: in.str("url"), rep: rep}.write(in.gha)
	finishRollback(context.WithoutCancel(cmd.Context()), in, results)
	if err != nil {
		return &exitError{code: deployer.ExitCode(err), err: err}
	}
	return nil
}

// actionConn reads the inputs that reach the hosts. The SSH key and
// known_hosts arrive as secrets' contents: masked, and written to
// owner-only files in tmp for the run.
func actionConn(in inputs, tmp string) (connOptions, error) {
	c := connOptions{hosts: in.list("hosts"), fingerprint: in.str("host-fingerprint")}
	var err error
	if c.local, err = in.boolean("local"); err != nil {
		return c, err
	}
	if c.connectTimeout, err = in.duration("connect-timeout"); err != nil {
		return c, err
	}
	// The deployer's directory on the host, as the hidden --root flag sets
	// it; the step's env, not an input, as few should change it.
	c.root = cmp.Or(os.Getenv("DEPLOYER_ROOT"), deployer.DefaultRoot)
	if pass := in.secret("ssh-passphrase"); pass != "" {
		c.pass = []byte(pass)
	}
	if key := in.secret("ssh-private-key"); key != "" {
		c.sshKey = filepath.Join(tmp, "key")
		if err := os.WriteFile(c.sshKey, []byte(strings.TrimSpace(key)+"\n"), 0o600); err != nil {
			return c, err
		}
	}
	if kh := in.raw("known-hosts"); strings.TrimSpace(kh) != "" {
		c.knownHosts = filepath.Join(tmp, "known_hosts")
		if err := os.WriteFile(c.knownHosts, []byte(kh+"\n"), 0o600); err != nil {
			return c, err
		}
	}
	switch {
	case c.local:
		// The Action's container has no docker CLI for compose, and its
		// /srv/deployer would go with it: nothing could be rolled back.
		return c, inputError("local", "the Action cannot deploy to the runner's own Engine (its container has no docker CLI, and the releases would be lost with it): give hosts, or run `deployer deploy --local` in a run: step")
	case len(c.hosts) == 0:
		return c, inputError("hosts", "no host to work on: give the hosts, [USER@]HOST[:PORT], one per line")
	case c.knownHosts == "" && c.fingerprint == "":
		return c, inputError("known-hosts", "empty, and no host-fingerprint: the hosts' keys cannot be verified; store their known_hosts lines (ssh-keyscan HOST, its fingerprint compared with your provider's console) in a variable and pass it")
	case c.sshKey == "":
		return c, inputError("ssh-private-key", "empty: give the deploy key from a secret (the runner's SSH agent is not visible inside the Action's container)")
	}
	return c, nil
}

// named says which input a file of the run came from, where an error
// names the file (a key that does not parse).
func (c connOptions) named(err error) error {
	var pairs []string
	for file, input := range map[string]string{c.sshKey: "ssh-private-key", c.knownHosts: "known-hosts"} {
		if file != "" {
			pairs = append(pairs, file, "from input "+input)
		}
	}
	if len(pairs) == 0 {
		return err
	}
	return errors.New(strings.NewReplacer(pairs...).Replace(err.Error()))
}

// trigger is what the release records as the reason it was made.
func trigger(redeploy bool) string {
	switch {
	case redeploy:
		return "redeploy"
	case os.Getenv("GITHUB_EVENT_NAME") == "workflow_dispatch":
		return "workflow_dispatch"
	}
	return "action"
}

// runURL is the workflow run's page, when the runner says which.
func runURL() string {
	server, repo, id := os.Getenv("GITHUB_SERVER_URL"), os.Getenv("GITHUB_REPOSITORY"), os.Getenv("GITHUB_RUN_ID")
	if server == "" || repo == "" || id == "" {
		return ""
	}
	u := server + "/" + repo + "/actions/runs/" + id
	if a := os.Getenv("GITHUB_RUN_ATTEMPT"); a != "" && a != "1" {
		u += "/attempts/" + a
	}
	return u
}

// outcome is what a deploy, redeploy or rollback tells the workflow: its
// outputs and the job summary.
type outcome struct {
	what, project string
	results       []deployer.Result
	err           error
	secrets       []string
	took          time.Duration
	url           string
	rep           *actionReporter
}

// status is live, rolled-back, failed or checks-failed (dry-run for a dry
// run that passed).
func (o outcome) status() string {
	var cf *deployer.CheckFailed
	switch {
	case errors.As(o.err, &cf):
		return "checks-failed"
	case o.err == nil && len(o.results) > 0 && o.results[len(o.results)-1].DryRun:
		return "dry-run"
	case o.err == nil:
		return "live"
	}
	for _, r := range o.results {
		if r.Status == deployer.StatusRolledBack {
			return "rolled-back"
		}
	}
	return "failed"
}

// last is the result the single-value outputs describe: the host that
// failed, else the last one.
func (o outcome) last() deployer.Result {
	for _, r := range o.results {
		if r.Error != "" {
			return r
		}
	}
	if len(o.results) == 0 {
		return deployer.Result{}
	}
	return o.results[len(o.results)-1]
}

func (o outcome) write(gha *githubactions.Action) {
	r := o.last()
	images := map[string]string{}
	var shipped int64
	for _, res := range o.results {
		shipped += res.Shipped
	}
	for svc, img := range r.Images {
		images[svc] = img.ID
	}
	imagesJSON, _ := json.Marshal(images)
	resultsJSON, _ := json.Marshal(o.results)
	for name, v := range map[string]string{
		"release-id": r.Release, "previous-release": r.Previous, "status": o.status(),
		"images": string(imagesJSON), "bytes-shipped": strconv.FormatInt(shipped, 10),
		"duration": strconv.Itoa(int(o.took.Round(time.Second).Seconds())), "url": o.url,
		"results": string(resultsJSON),
		"errors":  strconv.Itoa(o.rep.errors), "warnings": strconv.Itoa(o.rep.warnings),
	} {
		gha.SetOutput(name, deployer.Redact(v, o.secrets))
	}
	gha.AddStepSummary(deployer.Redact(o.summary(), o.secrets))
}

// summary is the job summary: the outcome first, then what a person
// looks for: the releases, the steps and how long they took, the images,
// and for a failure where and why.
func (o outcome) summary() string {
	var b strings.Builder
	r := o.last()
	switch st := o.status(); st {
	case "live":
		fmt.Fprintf(&b, "### ✅ %s of %s: %s is live\n\n", o.what, o.project, cmp.Or(r.Release, "the release"))
	case "dry-run":
		fmt.Fprintf(&b, "### ✅ %s of %s: dry run passed, nothing changed\n\n", o.what, o.project)
	case "checks-failed":
		fmt.Fprintf(&b, "### ❌ %s of %s: the preflight checks failed, nothing changed\n\n", o.what, o.project)
	case "rolled-back":
		fmt.Fprintf(&b, "### ⚠️ %s of %s failed and was rolled back: %s serves\n\n", o.what, o.project, cmp.Or(r.Previous, "the previous release"))
	default:
		fmt.Fprintf(&b, "### ❌ %s of %s failed\n\n", o.what, o.project)
	}
	if o.url != "" {
		fmt.Fprintf(&b, "%s\n\n", o.url)
	}
	for _, res := range o.results {
		fmt.Fprintf(&b, "**%s**: release `%s`, previous `%s`", res.Host, cmp.Or(res.Release, "none"), cmp.Or(res.Previous, "none"))
		if res.Status != "" {
			fmt.Fprintf(&b, ", %s", res.Status)
		}
		if res.Migration != "" {
			fmt.Fprintf(&b, ", migration %s", res.Migration)
		}
		b.WriteString("\n\n| step | took | |\n|---|---|---|\n")
		for _, s := range res.Steps {
			mark := "✓"
			if s.Error != "" {
				mark = "✗"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", cell(s.Name), s.Duration.Round(time.Millisecond), mark)
		}
		if len(res.Images) > 0 {
			b.WriteString("\n| service | image | size |\n|---|---|---|\n")
			for _, svc := range sortedKeys(res.Images) {
				img := res.Images[svc]
				fmt.Fprintf(&b, "| %s | `%s` | %s |\n", svc, img.Ref, humanBytes(img.Size))
			}
			fmt.Fprintf(&b, "\n%s of image layers sent to the host.\n", humanBytes(res.Shipped))
		}
		if res.Error != "" {
			fmt.Fprintf(&b, "\n**Failed at %s**:\n\n```\n%s\n```\n", cmp.Or(res.FailedStep, "the start"), res.Error)
		}
		b.WriteString("\n")
	}
	if len(o.results) == 0 && o.err != nil {
		fmt.Fprintf(&b, "```\n%s\n```\n", o.err)
	}
	if o.rep != nil && len(o.rep.findings) > 0 {
		b.WriteString(findingsTable(o.rep.findings))
	}
	fmt.Fprintf(&b, "\nTook %s.\n", o.took.Round(time.Second))
	return b.String()
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// actionReporter prints the pipeline's progress as collapsible log groups,
// one per step, with warnings and failures as annotations.
type actionReporter struct {
	gha *githubactions.Action
	w   io.Writer

	findings         []checks.Finding
	errors, warnings int
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
	r.findings = append(r.findings, f)
	level := "warning"
	if failing {
		level = "error"
	}
	if f.Severity == checks.Error {
		r.errors++
	} else {
		r.warnings++
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
