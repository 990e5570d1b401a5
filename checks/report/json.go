package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/semalink/deploy-action/checks"
)

// jsonVersion is the version of the JSON schema below. It changes only
// when a field is removed or changes meaning; new fields may appear
// without it changing. docs/output.md describes every field.
const jsonVersion = 1

type jsonReport struct {
	Version  int           `json:"version"`
	Summary  jsonSummary   `json:"summary"`
	Findings []jsonFinding `json:"findings"`
}

type jsonSummary struct {
	Errors     int  `json:"errors"`
	Warnings   int  `json:"warnings"`
	Infos      int  `json:"infos"`
	Suppressed int  `json:"suppressed"`
	Failed     bool `json:"failed"`
}

type jsonFinding struct {
	Rule       string           `json:"rule"`
	Severity   string           `json:"severity"`
	Service    string           `json:"service,omitempty"`
	Location   jsonLocation     `json:"location"`
	Message    string           `json:"message"`
	Fix        string           `json:"fix"`
	Suppressed *jsonSuppression `json:"suppressed,omitempty"`
}

type jsonLocation struct {
	File   string `json:"file"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
}

type jsonSuppression struct {
	Rule    string `json:"rule"`
	Service string `json:"service,omitempty"`
	Reason  string `json:"reason"`
}

// JSON prints findings as one JSON document for scripts: a version, a
// summary and every finding, suppressed ones included and marked. The
// schema is its own, not checks.Finding's, so that it stays put when the
// Go types change.
func JSON(w io.Writer, fs []checks.Finding, o Options) error {
	fs = resolved(fs)
	t := count(fs, o.Strict)
	r := jsonReport{
		Version:  jsonVersion,
		Summary:  jsonSummary{Errors: t.errors, Warnings: t.warnings, Infos: t.infos, Suppressed: t.suppressed, Failed: t.failed},
		Findings: make([]jsonFinding, 0, len(fs)),
	}
	for _, f := range fs {
		jf := jsonFinding{Rule: f.Rule, Severity: f.Severity.String(), Service: f.Service,
			Location: jsonLocation{File: f.Pos.File, Line: f.Pos.Line, Column: f.Pos.Column},
			Message:  f.Message, Fix: f.Fix}
		if s := f.Suppressed; s != nil {
			jf.Suppressed = &jsonSuppression{Rule: s.Rule, Service: s.Service, Reason: s.Reason}
		}
		r.Findings = append(r.Findings, jf)
	}
	var b bytes.Buffer
	if err := encodeJSON(&b, r); err != nil {
		return fmt.Errorf("encode json report: %w", err)
	}
	return flush(w, "json", &b)
}

// encodeJSON indents by two spaces, ends with a newline and leaves <, >
// and & alone: the output is read by people and jq, never put in HTML.
func encodeJSON(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
