package report

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
)

// fewSuppressed is how many suppressed findings the text output still
// lists, dimmed and with their reason. Beyond that they are only counted:
// a project with many deliberate exceptions keeps a short report.
const fewSuppressed = 5

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

// Text prints findings for a person at a terminal: a header per file, a
// line per finding (position, severity, rule, message) with its fix below,
// and a summary line. Findings of one file are expected next to each
// other, as checks.Run sorts them.
func Text(w io.Writer, fs []checks.Finding, o Options) error {
	fs = resolved(fs)
	t := count(fs, o.Strict)
	pt := painter(o.Color)

	shown := make([]checks.Finding, 0, len(fs))
	for _, f := range fs {
		if f.Suppressed == nil || t.suppressed <= fewSuppressed {
			shown = append(shown, f)
		}
	}
	// The columns line up across files, not just within one.
	var wPos, wSev, wRule int
	for _, f := range shown {
		wPos = max(wPos, len(position(f.Pos)))
		wSev = max(wSev, len(label(f)))
		wRule = max(wRule, len(f.Rule))
	}
	indent := strings.Repeat(" ", 2+wPos+2+wSev+2+wRule+2)

	var b bytes.Buffer
	for i, f := range shown {
		if i == 0 || f.Pos.File != shown[i-1].Pos.File {
			if i > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(pt.paint(ansiBold, fileName(f.Pos.File)) + "\n")
		}
		msg := f.Message
		if f.Service != "" && !mentions(msg, f.Service) {
			msg = f.Service + ": " + msg
		}
		var sub string
		switch {
		case f.Suppressed != nil && f.Suppressed.Reason != "":
			sub = "reason: " + f.Suppressed.Reason
		case f.Suppressed == nil && f.Fix != "":
			sub = "fix: " + f.Fix
		}
		sev, gap := label(f), strings.Repeat(" ", wSev-len(label(f)))
		tail := gap + "  " + pad(f.Rule, wRule) + "  " + hang(msg, indent)
		if sub != "" {
			tail += "\n" + indent + hang(sub, indent)
		}
		head := "  " + pad(position(f.Pos), wPos) + "  "
		if f.Suppressed != nil {
			b.WriteString(pt.paintLines(ansiDim, head+sev+tail) + "\n")
			continue
		}
		// Only the severity is coloured, so the message stays easy to read.
		b.WriteString(head + pt.paint(severityColor[f.Severity], sev) + tail + "\n")
	}

	if len(shown) > 0 {
		b.WriteByte('\n')
	}
	summary := t.counts()
	if t.found() {
		color := ansiGreen
		if t.failed {
			color = ansiRed
		}
		summary += ": " + pt.paint(ansiBold+color, t.verdict())
	}
	b.WriteString(summary + "\n")
	return flush(w, "text", &b)
}

var severityColor = map[checks.Severity]string{checks.Error: ansiRed, checks.Warning: ansiYellow, checks.Info: ansiCyan}

// painter wraps text in ANSI codes when colour is on.
type painter bool

func (p painter) paint(code, s string) string {
	if !p || s == "" {
		return s
	}
	return code + s + ansiReset
}

// paintLines paints each line on its own: some terminals and pagers reset
// attributes at a newline.
func (p painter) paintLines(code, s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = p.paint(code, l)
	}
	return strings.Join(lines, "\n")
}

// label is the severity column: the severity, or "suppressed".
func label(f checks.Finding) string {
	if f.Suppressed != nil {
		return "suppressed"
	}
	return f.Severity.String()
}

// position is the place column: "12:5", "12", or "-" when the line is
// not known.
func position(p project.Position) string {
	switch {
	case p.Line == 0:
		return "-"
	case p.Column == 0:
		return fmt.Sprint(p.Line)
	}
	return fmt.Sprintf("%d:%d", p.Line, p.Column)
}

func fileName(name string) string {
	if name == "" {
		return "(no file)"
	}
	return printable(name)
}

func pad(s string, width int) string {
	return s + strings.Repeat(" ", max(0, width-len(s)))
}

// hang makes the text safe for a terminal and indents its continuation
// lines under its first.
func hang(s, indent string) string {
	return strings.ReplaceAll(printable(s), "\n", "\n"+indent)
}

// printable spells out control characters other than newline and tab:
// messages quote the Compose file, and an escape sequence in it must not
// reach the terminal.
func printable(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }

// mentions reports whether the message names the service as a word of its
// own; if it does, the text output does not repeat it.
func mentions(msg, service string) bool {
	for i := 0; ; {
		j := strings.Index(msg[i:], service)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(service)
		if (start == 0 || !nameByte(msg[start-1])) && (end == len(msg) || !nameByte(msg[end])) {
			return true
		}
		i = start + 1
	}
}

func nameByte(c byte) bool {
	return c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
