package server

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/deployer"
)

// gitTimeout bounds each git command of a deploy of a ref.
const gitTimeout = 10 * time.Minute

// gitRef is what a request may name as a ref: a branch, tag or commit,
// never an option or a refspec.
var gitRef = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$`)

var fullCommit = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

func validRef(ref string) bool {
	if rest, ok := strings.CutPrefix(ref, "refs/"); ok && !strings.HasPrefix(rest, "heads/") && !strings.HasPrefix(rest, "tags/") {
		return false // refs/pull/… and the like: not a branch or tag
	}
	return gitRef.MatchString(ref) && !strings.Contains(ref, "..") && !strings.HasSuffix(ref, ".lock") && !strings.HasSuffix(ref, "/")
}

// pipeline runs deploys with package deployer against this machine's
// Engine: every front door's pipeline, lock and releases.
type pipeline struct {
	cfg *Config
	env []string // for git: the server's environment without its secrets
}

func newPipeline(cfg *Config) *pipeline {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); keepEnv(k) {
			env = append(env, kv)
		}
	}
	return &pipeline{cfg: cfg, env: append(env, "GIT_TERMINAL_PROMPT=0")}
}

// Run is the queue's Runner.
func (p *pipeline) Run(ctx context.Context, d Deploy, log io.Writer) (Outcome, error) {
	release, err := p.run(ctx, &d, log)
	return Outcome{Release: release, Commit: d.Commit}, err
}

func (p *pipeline) run(ctx context.Context, d *Deploy, log io.Writer) (string, error) {
	proj, ok := p.cfg.Projects[d.Project]
	if !ok {
		return "", fmt.Errorf("project %s is no longer in the server's configuration", d.Project)
	}
	rep := &deployer.TextReporter{W: log}
	fmt.Fprintf(log, "%s of %s, asked through %s by %s\n", d.Action, d.Project, d.Hook, orUnknown(d.Sender))
	switch d.Action {
	case "rollback":
		plan, err := deployer.NewHostPlan(ctx, deployer.Options{Name: d.Project, Local: true, Root: p.cfg.Root, Trigger: "webhook", Actor: d.Sender})
		if err != nil {
			return "", err
		}
		results, err := deployer.Rollback(ctx, plan, d.Release, rep)
		return lastRelease(results), err
	case "redeploy":
		if proj.Source != nil {
			// The live release's Compose files, not whatever a failed
			// deploy of a newer commit left checked out.
			live, _, err := p.live(ctx, d.Project)
			if err != nil {
				return "", err
			}
			if live != "" {
				if d.Commit, err = p.checkout(ctx, proj.Source, &Deploy{Ref: live}, log); err != nil {
					return "", err
				}
			}
		}
		o := p.options(proj, d)
		o.Redeploy = true
		return p.deploy(ctx, o, rep)
	case "deploy":
		if proj.Source == nil {
			return "", errors.New("project " + d.Project + " has no source: give it source.git and source.dir to deploy a ref")
		}
		commit, err := p.checkout(ctx, proj.Source, d, log)
		d.Commit = commit
		if err != nil {
			p.restore(ctx, proj.Source, d.Project, log)
			return "", err
		}
		o := p.options(proj, d)
		o.Commit = commit
		release, err := p.deploy(ctx, o, rep)
		if err != nil {
			p.restore(ctx, proj.Source, d.Project, log)
		}
		return release, err
	}
	return "", fmt.Errorf("unknown action %q", d.Action)
}

func (p *pipeline) deploy(ctx context.Context, o deployer.Options, rep deployer.Reporter) (string, error) {
	plan, err := deployer.NewPlan(ctx, o)
	if err != nil {
		return "", err
	}
	results, err := deployer.Run(ctx, plan, rep)
	if err != nil {
		err = errors.New(deployer.Redact(err.Error(), plan.Secrets))
	}
	return lastRelease(results), err
}

// options are a project's deploy settings: the server's configuration,
// never the request's. The Compose file interpolates only what its env
// files set, never the server's environment (which holds its secrets).
func (p *pipeline) options(proj Project, d *Deploy) deployer.Options {
	return deployer.Options{
		Load:    project.Options{Files: proj.ComposeFiles, EnvFiles: proj.EnvFiles, Env: []string{}},
		Name:    d.Project,
		Local:   true,
		Root:    p.cfg.Root,
		Migrate: proj.Migrate,
		Trigger: "webhook", Actor: d.Sender, Deployment: d.Deployment,
		Commit: d.Commit,
	}
}

func lastRelease(results []deployer.Result) string {
	if len(results) == 0 {
		return ""
	}
	return results[len(results)-1].Release
}

// checkout fetches the deploy's ref into the source's work tree and checks
// it out; it returns the commit. For an automatic event (d.Forward), a
// commit that the live release's commit already contains is refused.
func (p *pipeline) checkout(ctx context.Context, src *Source, d *Deploy, log io.Writer) (string, error) {
	ref := d.Ref
	if ref == "" {
		ref = src.branch()
	}
	if !validRef(ref) {
		return "", fmt.Errorf("ref %q: give a branch, tag or commit", ref)
	}
	git := func(args ...string) (string, error) { return p.git(ctx, src.Dir, log, args...) }
	// A full commit ID the clone has needs no fetch (a redeploy works
	// while the remote is down).
	commit, err := p.git(ctx, src.Dir, io.Discard, "rev-parse", "--verify", "--quiet", "--end-of-options", ref+"^{commit}")
	if err != nil || !fullCommit.MatchString(ref) || commit != ref {
		if _, err := git("fetch", "--no-tags", "--", src.Git, ref); err != nil {
			return "", fmt.Errorf("fetch %s from %s: %w", ref, src.Git, err)
		}
		if commit, err = git("rev-parse", "--verify", "--end-of-options", "FETCH_HEAD^{commit}"); err != nil {
			return "", fmt.Errorf("fetch %s: %w", ref, err)
		}
	}
	if d.Forward {
		if err := p.forward(ctx, src, d, commit, log); err != nil {
			return commit, err
		}
	}
	if d.Hook == SchemeSlack || d.Hook == SchemeStandard {
		// A chat command or a script names any ref; only what is on the
		// source branch (reviewed, merged) deploys: not a pull request's
		// head, which the repository serves too.
		if err := p.onBranch(ctx, src, commit, log); err != nil {
			return commit, err
		}
	}
	if _, err := git("checkout", "--quiet", "--force", "--detach", commit); err != nil {
		return "", fmt.Errorf("check out %s: %w", commit, err)
	}
	if _, err := git("clean", "-ffdq"); err != nil {
		return "", fmt.Errorf("clean the work tree: %w", err)
	}
	fmt.Fprintf(log, "checked out %s (%s) in %s\n", commit, ref, src.Dir)
	return commit, nil
}

// liveRelease is project's live release on this machine (nil when nothing
// is live) and the ID current names.
func (p *pipeline) liveRelease(ctx context.Context, project string) (*deployer.Release, string, error) {
	plan, err := deployer.NewHostPlan(ctx, deployer.Options{Name: project, Local: true, Root: p.cfg.Root})
	if err != nil {
		return nil, "", err
	}
	hosts, err := deployer.Releases(ctx, plan, &deployer.TextReporter{W: io.Discard})
	if err != nil {
		return nil, "", fmt.Errorf("read the live release: %w", err)
	}
	if len(hosts) == 0 || hosts[0].Current == "" {
		return nil, "", nil
	}
	for _, r := range hosts[0].Releases {
		if r.ID == hosts[0].Current {
			return &r, r.ID, nil
		}
	}
	return nil, hosts[0].Current, nil
}

// live is the commit and ID of project's live release ("" when nothing
// is live, or it recorded no commit).
func (p *pipeline) live(ctx context.Context, project string) (commit, release string, err error) {
	rel, current, err := p.liveRelease(ctx, project)
	if err != nil || rel == nil || !validRef(rel.Commit) {
		return "", current, err
	}
	return rel.Commit, current, nil
}

// onBranch refuses a commit that is not on the source branch.
func (p *pipeline) onBranch(ctx context.Context, src *Source, commit string, log io.Writer) error {
	// The branch's full name: a tag called main would win over it.
	if _, err := p.git(ctx, src.Dir, log, "fetch", "--no-tags", "--", src.Git, "refs/heads/"+strings.TrimPrefix(src.branch(), "refs/heads/")); err != nil {
		return fmt.Errorf("fetch %s from %s: %w", src.branch(), src.Git, err)
	}
	_, err := p.git(ctx, src.Dir, io.Discard, "merge-base", "--is-ancestor", "--end-of-options", commit, "FETCH_HEAD")
	if err != nil {
		return &RefusedError{Reason: fmt.Sprintf("%s is not on %s: a command deploys what is on the source branch (merged); a GitHub Deployment can deploy another ref", short(commit), src.branch())}
	}
	return nil
}

// restore checks the live release's commit out again after a deploy of
// another one failed: the work tree holds what runs, and a commit whose
// Compose files do not load cannot keep the server from starting again.
func (p *pipeline) restore(ctx context.Context, src *Source, project string, log io.Writer) {
	live, _, err := p.live(context.WithoutCancel(ctx), project)
	if err != nil || live == "" {
		return
	}
	if _, err := p.checkout(context.WithoutCancel(ctx), src, &Deploy{Ref: live}, log); err != nil {
		fmt.Fprintf(log, "check the live commit %s out again: %v\n", short(live), err)
	}
}

// forward refuses commit when the live release's commit contains it.
func (p *pipeline) forward(ctx context.Context, src *Source, d *Deploy, commit string, log io.Writer) error {
	live, release, err := p.live(ctx, d.Project)
	if err != nil {
		return err
	}
	if live == "" {
		return nil // nothing live, or no commit to compare with: any commit goes forward
	}
	// An ancestor of the live commit (or the live commit itself) is
	// behind: git merge-base exits 0. A live commit this clone does not
	// have cannot be compared, and is not in the way.
	// merge-base --is-ancestor exits 0 (an ancestor), 1 (not one) or
	// otherwise (the live commit is not in the clone, git failed): only 1
	// lets the deploy go forward; otherwise the live commit is fetched and
	// asked again, and if git still cannot tell, the deploy is refused.
	ancestor := func() (bool, error) {
		_, err := p.git(ctx, src.Dir, io.Discard, "merge-base", "--is-ancestor", "--end-of-options", commit, live)
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 1 {
			return false, nil
		}
		return err == nil, err
	}
	behind, err := ancestor()
	if err != nil {
		if _, ferr := p.git(ctx, src.Dir, log, "fetch", "--no-tags", "--", src.Git, live); ferr == nil {
			behind, err = ancestor()
		}
	}
	if err != nil {
		return &RefusedError{Reason: fmt.Sprintf("cannot tell whether %s comes after the live commit %s (%v): an automatic event goes forward only; deploy it explicitly", short(commit), short(live), err)}
	}
	if behind {
		return &RefusedError{Reason: fmt.Sprintf("%s is already in the live release %s (commit %s): an automatic event never goes back; ask for a rollback or deploy it explicitly", short(commit), release, short(live))}
	}
	fmt.Fprintf(log, "%s is not in the live commit %s: going forward\n", short(commit), short(live))
	return nil
}

func (p *pipeline) git(ctx context.Context, dir string, log io.Writer, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = p.env
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = io.MultiWriter(&errb, log)
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if len(msg) > 500 {
			msg = msg[len(msg)-500:]
		}
		if msg != "" {
			return "", fmt.Errorf("git %s: %w: %s", args[0], err, msg)
		}
		return "", fmt.Errorf("git %s: %w", args[0], err)
	}
	return strings.TrimSpace(out.String()), nil
}

// Status says which release of project is live, and since when.
func (p *pipeline) Status(ctx context.Context, project string) (string, error) {
	r, current, err := p.liveRelease(ctx, project)
	switch {
	case err != nil:
		return "", err
	case current == "":
		return project + ": nothing is live yet", nil
	case r == nil:
		return project + ": " + current + " is live", nil
	}
	return fmt.Sprintf("%s: %s is live (commit %s, by %s, %s)", project, r.ID, cmp.Or(short(r.Commit), "unknown"), orUnknown(r.Actor), r.Created.UTC().Format(time.RFC3339)), nil
}

func (s *Source) branch() string {
	if s.Branch != "" {
		return s.Branch
	}
	return "main"
}

// workTree says whether dir is a git work tree.
func workTree(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ".git"))
	return err == nil
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

func orUnknown(s string) string {
	if s == "" {
		return "an unnamed sender"
	}
	return s
}
