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
func actionDeploy(cmd *cobra.Command, in inputs, tmp string, redeploy bool) (err error) {
	start, what := time.Now(), "deploy"
	if redeploy {
		what = "redeploy"
	}
	wrote := false
	defer func() {
		if err != nil && !wrote {
			failedBeforeStart(in, what, err, time.Since(start))
		}
	}()
	co, err := actionCheckOptions(in, tmp)
	if err != nil {
		return err
	}
	o := deployOptions{checkOptions: co}
	o.name, o.migrate, o.builder = in.str("project"), in.str("migrate"), in.str("builder")
	o.cacheFrom, o.cacheTo = in.list("cache-from"), in.list("cache-to")
	o.noRollback, o.dryRun, o.insecureBuilder = in.boolean("no-rollback"), in.boolean("dry-run"), in.boolean("insecure-builder")
	o.healthTimeout, o.migrateTimeout, o.lockTimeout = in.duration("health-timeout"), in.duration("migrate-timeout"), in.duration("lock-timeout")
	o.keep = in.count("keep")
	if err := in.err(); err != nil {
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
	if !o.conn.local {
		// The runner builds and ships only the layers the hosts lack: a
		// droplet that builds while it serves competes with its services.
		opts.DefaultBuilder = deployer.BuilderLocal
	}
	opts.Actor, opts.RunURL = os.Getenv("GITHUB_ACTOR"), runURL()
	plan, err := deployer.NewPlan(cmd.Context(), opts)
	if err != nil {
		return &exitError{code: deployer.ExitCode(err), err: o.conn.named(err)}
	}
	for _, s := range plan.Secrets {
		in.mask(s)
	}
	var dep *deployment
	if !plan.DryRun {
		ref := plan.Commit
		if redeploy {
			ref = cmp.Or(liveCommit(cmd.Context(), plan), ref) // the code that will run
		}
		if dep = startDeployment(cmd.Context(), in, what, ref); dep != nil {
			plan.Deployment = dep.id
		}
	}
	rep := &actionReporter{gha: in.gha, w: cmd.OutOrStdout()}
	results, err := deployer.Run(cmd.Context(), plan, rep)
	out := outcome{what: what, project: plan.Name, results: results, err: err, took: time.Since(start), url: in.str("url"), rep: rep}
	out.write(in)
	wrote = true
	dep.finishDeploy(context.WithoutCancel(cmd.Context()), out)
	return deployFailed(err, plan)
}

// liveCommit is the commit the live release on the plan's first host was
// built from, "" when none is known.
func liveCommit(ctx context.Context, plan *deployer.Plan) string {
	hosts, err := deployer.Releases(ctx, plan, &deployer.TextReporter{W: io.Discard})
	if err != nil || len(hosts) == 0 {
		return ""
	}
	for _, r := range hosts[0].Releases {
		if r.ID == hosts[0].Current {
			return r.Commit
		}
	}
	return ""
}

// failedBeforeStart writes the outputs and the summary of a run that
// stopped before it reached a host: a bad input, a project that does not
// load.
func failedBeforeStart(in inputs, what string, err error, took time.Duration) {
	in.output("status", "failed")
	in.output("duration", strconv.Itoa(int(took.Round(time.Second).Seconds())))
	in.summary(fmt.Sprintf("### ❌ %s failed before it reached a host; nothing changed\n\n%s", what, fenced(err.Error())))
}

// actionOnHosts runs rollback or releases: commands on what is deployed,
// which need the project's name and hosts but no new release.
func actionOnHosts(cmd *cobra.Command, in inputs, tmp, command string) (err error) {
	start, wrote := time.Now(), false
	defer func() {
		if err != nil && !wrote {
			failedBeforeStart(in, command, err, time.Since(start))
		}
	}()
	healthTimeout, lockTimeout := in.duration("health-timeout"), in.duration("lock-timeout")
	if in.boolean("dry-run") && in.err() == nil {
		return inputError("dry-run", "%s has no dry run: `releases` shows what is on the hosts, and which release a rollback would bring back", command)
	}
	if err := in.err(); err != nil {
		return err
	}
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
	plan.HealthTimeout, plan.LockTimeout = healthTimeout, lockTimeout
	rep := &actionReporter{gha: in.gha, w: cmd.OutOrStdout()}
	if command == "releases" {
		hosts, err := deployer.Releases(cmd.Context(), plan, rep)
		if err != nil {
			return &exitError{code: exitFailed, err: err}
		}
		for i := range hosts {
			for j := range hosts[i].Releases {
				hosts[i].Releases[j].Secrets = nil // salted hashes: nothing a workflow needs
			}
		}
		b, _ := json.Marshal(hosts)
		var text strings.Builder
		if err := printReleases(&text, hosts); err != nil {
			return err
		}
		in.output("releases", string(b))
		fmt.Fprint(cmd.OutOrStdout(), commandSafeText(text.String()))
		in.summary("### deployer releases: " + plan.Name + "\n\n" + fenced(text.String()))
		wrote = true
		return nil
	}
	results, err := deployer.Rollback(cmd.Context(), plan, in.str("release"), rep)
	outcome{what: "rollback", project: plan.Name, results: results, err: err, took: time.Since(start), url: in.str("url"), rep: rep}.write(in)
	wrote = true
	finishRollback(context.WithoutCancel(cmd.Context()), in, results)
	if err != nil {
		return &exitError{code: deployer.ExitCode(err), err: err}
	}
	return nil
}

// fenced is text as a Markdown code block whose fence no line of it can
// close (untrusted text: logs, errors).
func fenced(text string) string {
	fence := "```"
	for strings.Contains(text, fence) {
		fence += "`"
	}
	return fence + "\n" + strings.TrimRight(text, "\n") + "\n" + fence + "\n"
}

// actionConn reads the inputs that reach the hosts. The SSH key and
// known_hosts arrive as secrets' contents: masked, and written to
// owner-only files in tmp for the run.
func actionConn(in inputs, tmp string) (connOptions, error) {
	c := connOptions{hosts: in.list("hosts"), fingerprint: in.str("host-fingerprint"),
		local: in.boolean("local"), connectTimeout: in.duration("connect-timeout")}
	if err := in.err(); err != nil {
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
	case c.local && len(c.hosts) > 0:
		return c, inputError("local", "local: true deploys to the runner's own Docker Engine, and hosts to other machines: give one of the two")
	case c.local:
		return c, nil // the runner's Engine and compose, as the command line's --local
	case len(c.hosts) == 0:
		return c, inputError("hosts", "no host to work on: give the hosts, [USER@]HOST[:PORT], one per line")
	case c.knownHosts == "" && c.fingerprint == "":
		return c, inputError("known-hosts", "empty, and no host-fingerprint: the hosts' keys cannot be verified; store their known_hosts lines (ssh-keyscan HOST, its fingerprint compared with your provider's console) in a variable and pass it")
	case c.sshKey == "" && os.Getenv("SSH_AUTH_SOCK") == "":
		return c, inputError("ssh-private-key", "empty, and the runner has no SSH agent: give the deploy key from a secret")
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

// headline is the result the single-value outputs describe: the host
// that failed, else the last one.
func (o outcome) headline() deployer.Result {
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

func (o outcome) write(in inputs) {
	r := o.headline()
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
		in.output(name, v)
	}
	in.summary(o.summary())
}

// summary is the job summary: the outcome first, then what a person
// looks for: the releases, the steps and how long they took, the images,
// and for a failure where and why.
func (o outcome) summary() string {
	var b strings.Builder
	r := o.headline()
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
				fmt.Fprintf(&b, "| %s | `%s` | %s |\n", cell(svc), cell(img.Ref), deployer.FormatBytes(img.Size))
			}
			fmt.Fprintf(&b, "\n%s of image layers sent to the host.\n", deployer.FormatBytes(res.Shipped))
		}
		if len(res.Healthy) > 0 {
			b.WriteString("\n| service | healthy after |\n|---|---|\n")
			for _, svc := range sortedKeys(res.Healthy) {
				fmt.Fprintf(&b, "| %s | %s |\n", cell(svc), res.Healthy[svc].Round(100*time.Millisecond))
			}
		}
		if res.Error != "" {
			fmt.Fprintf(&b, "\n**Failed at %s**:\n\n%s", cell(cmp.Or(res.FailedStep, "the start")), fenced(res.Error))
			if len(res.Logs) > 0 {
				fmt.Fprintf(&b, "\nIts last log lines:\n\n%s", fenced(strings.Join(res.Logs, "\n")))
			}
		}
		b.WriteString("\n")
	}
	if len(o.results) == 0 && o.err != nil {
		b.WriteString(fenced(o.err.Error()))
	}
	if o.rep != nil && len(o.rep.findings) > 0 {
		b.WriteString(findingsTable(o.rep.findings))
	}
	fmt.Fprintf(&b, "\nTook %s.\n", o.took.Round(time.Second))
	return b.String()
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
			fmt.Fprint(r.w, commandSafeText(fmt.Sprintf("%s done in %s\n", name, took)))
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

// Flush writes a last line that did not end in a newline.
func (c *commandSafeWriter) Flush() {
	if len(c.buf) > 0 {
		_, _ = io.WriteString(c.w, commandSafe(string(c.buf)+"\n"))
		c.buf = nil
	}
}

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
