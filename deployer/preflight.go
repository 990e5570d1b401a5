package deployer

import (
	"context"
	"fmt"
	"strings"

	"github.com/semalink/deploy-action/checks"
)

// CheckFailed is a deploy stopped by preflight findings.
type CheckFailed struct{ Findings []checks.Finding }

func (e *CheckFailed) Error() string {
	var msgs []string
	for _, f := range e.Findings {
		msgs = append(msgs, fmt.Sprintf("%s: %s [%s]\n  fix: %s", f.Pos, f.Message, f.Rule, f.Fix))
	}
	return fmt.Sprintf("preflight checks failed; the running version was left as it was:\n%s", strings.Join(msgs, "\n"))
}

// checker runs the preflight checks of one deploy, on each host with that
// host's facts, and passes each finding to the Reporter once however many
// hosts see it.
type checker struct {
	p     *Plan
	shown map[string]bool
}

func newChecker(p *Plan) *checker { return &checker{p: p, shown: map[string]bool{}} }

// run checks the project; findings at the failing level (errors, and
// warnings with Strict) stop the deploy before anything changes.
func (c *checker) run(rep Reporter, opts checks.Options) error {
	done := rep.Step("preflight checks")
	var failing []checks.Finding
	for _, f := range checks.Run(c.p.Project, opts) {
		if f.Suppressed != nil || f.Severity < checks.Warning {
			continue
		}
		fails := f.Severity == checks.Error || c.p.Strict
		if fails {
			failing = append(failing, f)
		}
		if key := fmt.Sprint(f.Pos, f.Rule, f.Message); !c.shown[key] {
			c.shown[key] = true
			rep.Finding(f, fails)
		}
	}
	if len(failing) > 0 {
		done(fmt.Errorf("%d finding(s) at the failing level", len(failing)))
		return &CheckFailed{Findings: failing}
	}
	done(nil)
	return nil
}

// facts are the check options with what is known of the host: its memory
// (unless the operator gave one), whether it builds the images, and, with
// drift, the init-only secrets that differ from the live release's.
func (t *target) facts(ctx context.Context, live *Release, drift bool) checks.Options {
	opts := t.plan.Checks
	if opts.HostMemory == 0 {
		opts.HostMemory = t.memory // over x-deployer's host-memory, a guess for `check`
	}
	facts := &checks.HostFacts{Builds: (t.plan.Builder == "" || t.plan.Builder == BuilderHost) && !t.plan.Redeploy}
	if drift {
		if d := t.drift(ctx, live); d != nil {
			facts.ChangedSecrets = d.ChangedSecrets
		}
	}
	opts.Host = facts
	return opts
}

// recheckDrift compares the secrets with the live release's again, under
// the lock: the checks run again only when one differs.
func (t *target) recheckDrift(ctx context.Context, c *checker, rep Reporter, live *Release) error {
	opts := t.facts(ctx, live, true)
	if len(opts.Host.ChangedSecrets) == 0 {
		return nil
	}
	return c.run(rep, opts)
}
