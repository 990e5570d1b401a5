package checks

import (
	"fmt"

	"github.com/semalink/deploy-action/checks/project"
)

// suppress marks the findings that an x-deployer ignore entry or an inline
// "# deployer:ignore RULE reason" comment silences, and returns findings
// about the suppressions themselves: one without a reason is not applied,
// and one naming no known rule is a typo worth knowing about.
func suppress(in *Input, fs []Finding) []Finding {
	var extra []Finding
	var listed []project.Suppression
	for i, s := range in.Settings.Checks.Ignore {
		pos, _, _ := in.Locate("x-deployer", "checks", "ignore", fmt.Sprint(i))
		if f, ok := badSuppression(s.Rule, s.Reason, pos); ok {
			extra = append(extra, f)
			continue
		}
		if _, known := in.Compose.AllServices()[s.Service]; s.Service != "" && !known {
			extra = append(extra, Finding{Rule: "suppression-invalid", Pos: pos,
				Message: fmt.Sprintf("the suppression of %s names service %q, which this project does not have, so it is not applied", s.Rule, s.Service),
				Fix:     "name a service of the project, or leave service out to suppress the rule everywhere"})
			continue
		}
		listed = append(listed, s)
	}
	type inline struct {
		project.Suppression
		file string
		line int
	}
	var comments []inline
	for _, file := range in.Files {
		for _, ig := range file.Ignores {
			if f, ok := badSuppression(ig.Rule, ig.Reason, ig.Pos); ok {
				extra = append(extra, f)
				continue
			}
			comments = append(comments, inline{project.Suppression{Rule: ig.Rule, Reason: ig.Reason}, file.Path, ig.Pos.Line})
		}
	}
	for i := range fs {
		f := &fs[i]
		for _, s := range listed {
			if s.Rule == f.Rule && (s.Service == "" || s.Service == f.Service) {
				f.Suppressed = &s
				break
			}
		}
		for _, c := range comments {
			if f.Suppressed == nil && c.Rule == f.Rule && c.file == f.Pos.File && (c.line == f.Pos.Line || c.line == f.Pos.Line-1) {
				s := c.Suppression
				s.Service = f.Service
				f.Suppressed = &s
			}
		}
	}
	return extra
}

func badSuppression(rule, reason string, pos project.Position) (Finding, bool) {
	switch {
	case rule == "":
		return Finding{Rule: "suppression-invalid", Pos: pos,
			Message: "a suppression names no rule, so it is not applied",
			Fix:     "write the rule ID and a reason: # deployer:ignore RULE reason"}, true
	case RuleByID(rule) == nil:
		return Finding{Rule: "suppression-invalid", Pos: pos,
			Message: fmt.Sprintf("a suppression names %q, which is not a rule, so it is not applied", rule),
			Fix:     "use a rule ID from `deployer check --list-rules` or docs/checks.md"}, true
	case reason == "":
		return Finding{Rule: "suppression-invalid", Pos: pos,
			Message: fmt.Sprintf("the suppression of %s gives no reason, so it is not applied", rule),
			Fix:     "say why the finding does not apply here, after the rule ID (inline) or in reason: (x-deployer)"}, true
	}
	return Finding{}, false
}
