package report

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/semalink/deploy-action/checks"
)

// Options tune the output.
type Options struct {
	Color   bool   // ANSI colour in text output (the caller decides: a terminal and no NO_COLOR)
	Strict  bool   // warnings fail too (affects the summary line's verdict)
	Version string // tool version, for SARIF's tool.driver.version
	Root    string // optional: directory that file paths are relative to, for SARIF uriBaseId handling (may be "")
}

// Formats lists the accepted format names: text, json, sarif, github.
var Formats = []string{"text", "json", "sarif", "github"}

// Write prints findings in the named format; an unknown name is an error
// naming the accepted ones.
func Write(w io.Writer, format string, fs []checks.Finding, o Options) error {
	switch format {
	case "text":
		return Text(w, fs, o)
	case "json":
		return JSON(w, fs, o)
	case "sarif":
		return SARIF(w, fs, o)
	case "github":
		return GitHub(w, fs, o)
	}
	return fmt.Errorf("unknown output format %q: use one of %s", format, strings.Join(Formats, ", "))
}

// flush writes a finished report in one call and names the format in the
// error, so every format fails the same way.
func flush(w io.Writer, format string, b *bytes.Buffer) error {
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write %s report: %w", format, err)
	}
	return nil
}

// resolved returns a copy of the findings with every severity settled:
// the zero Severity means the rule's usual one, and a finding of a rule
// nobody knows is a warning (shown, but failing only with strict).
func resolved(fs []checks.Finding) []checks.Finding {
	out := make([]checks.Finding, len(fs))
	for i, f := range fs {
		if f.Severity < checks.Info || f.Severity > checks.Error {
			f.Severity = checks.Warning
			if r := checks.RuleByID(f.Rule); r != nil {
				f.Severity = r.Severity
			}
		}
		out[i] = f
	}
	return out
}

// tally is the count behind every summary.
type tally struct {
	errors, warnings, infos, suppressed int
	failed                              bool
}

// count takes resolved findings.
func count(fs []checks.Finding, strict bool) tally {
	var t tally
	for _, f := range fs {
		switch {
		case f.Suppressed != nil:
			t.suppressed++
		case f.Severity == checks.Error:
			t.errors++
		case f.Severity == checks.Warning:
			t.warnings++
		default:
			t.infos++
		}
	}
	t.failed = checks.Failed(fs, strict)
	return t
}

// String is the summary line without colour: "2 errors, 1 warning, 3
// info (1 suppressed): check failed", or "no problems found".
func (t tally) String() string {
	if t.found() {
		return t.counts() + ": " + t.verdict()
	}
	return t.counts()
}

// found reports whether anything is left once suppressed findings are
// set aside.
func (t tally) found() bool { return t.errors+t.warnings+t.infos > 0 }

// counts is the summary line without its verdict.
func (t tally) counts() string {
	var parts []string
	if t.errors > 0 {
		parts = append(parts, plural(t.errors, "error"))
	}
	if t.warnings > 0 {
		parts = append(parts, plural(t.warnings, "warning"))
	}
	if t.infos > 0 {
		parts = append(parts, fmt.Sprintf("%d info", t.infos))
	}
	s := strings.Join(parts, ", ")
	if s == "" {
		s = "no problems found"
	}
	if t.suppressed > 0 {
		s += fmt.Sprintf(" (%d suppressed)", t.suppressed)
	}
	return s
}

func (t tally) verdict() string {
	if t.failed {
		return "check failed"
	}
	return "check passed"
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
