package checks

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/semalink/deploy-action/checks/project"
)

// Severity says how bad a finding is. Errors fail a check; warnings fail
// it with --strict; infos never do.
type Severity int

// The zero Severity means "the rule's usual one".
const (
	Info Severity = iota + 1
	Warning
	Error
)

var severityNames = [...]string{"unknown", "info", "warning", "error"}

func (s Severity) String() string {
	if s < 0 || int(s) >= len(severityNames) {
		return severityNames[0]
	}
	return severityNames[s]
}

// MarshalText writes the severity as its name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity name.
func (s *Severity) UnmarshalText(b []byte) error {
	i := slices.Index(severityNames[:], string(b))
	if i <= 0 {
		return fmt.Errorf("unknown severity %q", b)
	}
	*s = Severity(i)
	return nil
}

// Rule is one preflight check.
type Rule struct {
	ID       string
	Severity Severity // the usual severity; a finding may say otherwise
	Title    string   // one line: what the rule looks for
	Help     string   // why it matters, for SARIF and docs
	check    func(in *Input) []Finding
}

// Static tells whether Run applies the rule to a project; the others are
// found elsewhere (loading the project, or on the host during a deploy).
func (r *Rule) Static() bool { return r.check != nil }

// DocURL is the rule's section in the documentation.
func (r *Rule) DocURL() string {
	return "https://github.com/semalink/deploy-action/blob/main/docs/checks.md#" + r.ID
}

// Finding is one problem found.
type Finding struct {
	Rule       string               `json:"rule"`
	Severity   Severity             `json:"severity"`
	Service    string               `json:"service,omitempty"`
	Pos        project.Position     `json:"location"`
	Message    string               `json:"message"`
	Fix        string               `json:"fix"`
	Suppressed *project.Suppression `json:"suppressed,omitempty"`
}

// Options are what the checks know beyond the project: flags, and facts
// about the host. Zero values mean unknown.
type Options struct {
	Environment   string // staging or production
	CloudflareSSL string // off, flexible, full or strict
	HostMemory    int64  // bytes
	Host          *HostFacts
}

// HostFacts are what a deploy learned from the host before changing it.
type HostFacts struct {
	// Builds says that the project's images are built on the host itself
	// (builder host), beside the services that run there.
	Builds bool

	// ChangedSecrets are init-only secrets (a broker's default password)
	// whose value differs from the one the live release was deployed with.
	ChangedSecrets []ChangedSecret
}

// ChangedSecret is one such secret, and the volume holding the data it
// initialised.
type ChangedSecret struct {
	Service, Key string
	Volume       string // the data volume on the host; "" when it does not exist
}

// Input is what every rule reads.
type Input struct {
	*project.Project
	Options
}

// Rules returns every rule, in the order of docs/checks.md.
func Rules() []*Rule { return rules }

// RuleByID returns the rule with that ID, or nil.
func RuleByID(id string) *Rule {
	for _, r := range rules {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// Run applies every rule to the project and returns the findings, sorted by
// place, with suppressed ones marked. Options left empty are taken from the
// project's x-deployer settings.
func Run(p *project.Project, o Options) []Finding {
	o.Environment = cmp.Or(o.Environment, p.Settings.Environment)
	o.CloudflareSSL = cmp.Or(o.CloudflareSSL, p.Settings.CloudflareSSL)
	if o.HostMemory == 0 && p.Settings.HostMemory != "" {
		o.HostMemory, _ = project.ParseBytes(p.Settings.HostMemory) // validated when loaded
	}
	in := &Input{Project: p, Options: o}
	var out []Finding
	for _, pr := range p.Problems {
		out = append(out, Finding{Rule: pr.Rule, Service: pr.Service, Pos: pr.Pos, Message: pr.Message, Fix: pr.Fix})
	}
	for _, r := range rules {
		if r.check != nil {
			out = append(out, r.check(in)...)
		}
	}
	out = append(out, suppress(in, out)...)
	// After suppress: the findings about suppressions take their rule's severity too.
	for i := range out {
		if r := RuleByID(out[i].Rule); r != nil && out[i].Severity == 0 {
			out[i].Severity = r.Severity
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		return cmp.Or(strings.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column), strings.Compare(a.Rule, b.Rule), strings.Compare(a.Service, b.Service))
	})
	return out
}

// Failed reports whether findings fail the check: any unsuppressed error,
// or with strict any unsuppressed warning.
func Failed(fs []Finding, strict bool) bool {
	limit := Error
	if strict {
		limit = Warning
	}
	for _, f := range fs {
		if f.Suppressed == nil && f.Severity >= limit {
			return true
		}
	}
	return false
}
