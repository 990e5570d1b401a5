package report

import (
	"bytes"
	"io"
	"strconv"
	"strings"

	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
)

// GitHub prints findings as GitHub Actions workflow commands, which the
// runner turns into annotations on the files of a pull request:
//
//	::error file=compose.yaml,line=12,col=5,title=healthcheck-missing (api)::api has no healthcheck…%0Afix: …
//
// Suppressed findings are left out. A plain summary line ends the output.
func GitHub(w io.Writer, fs []checks.Finding, o Options) error {
	fs = resolved(fs)
	var b bytes.Buffer
	for _, f := range fs {
		if f.Suppressed == nil {
			b.WriteString(Annotation(f, command(f.Severity)) + "\n")
		}
	}
	b.WriteString(count(fs, o.Strict).String() + "\n")
	return flush(w, "github", &b)
}

// Annotation is one finding as a workflow command line (without its
// newline): level is error, warning or notice.
func Annotation(f checks.Finding, level string) string {
	title := f.Rule
	if f.Service != "" {
		title += " (" + f.Service + ")"
	}
	msg := f.Message
	if f.Fix != "" {
		msg += "\nfix: " + f.Fix
	}
	return AnnotationAt(level, f.Pos, title, msg)
}

// AnnotationAt is a workflow command that annotates pos (a project that
// does not load, say) with title and msg.
func AnnotationAt(level string, pos project.Position, title, msg string) string {
	var props []string
	if pos.File != "" {
		props = append(props, "file="+escapeProperty(pos.File))
		if pos.Line > 0 {
			props = append(props, "line="+strconv.Itoa(pos.Line))
			if pos.Column > 0 {
				props = append(props, "col="+strconv.Itoa(pos.Column))
			}
		}
	}
	props = append(props, "title="+escapeProperty(title))
	return "::" + level + " " + strings.Join(props, ",") + "::" + escapeData(msg)
}

// command is the workflow command for a severity.
func command(s checks.Severity) string {
	switch s {
	case checks.Error:
		return "error"
	case checks.Info:
		return "notice"
	}
	return "warning"
}

// escapeData and escapeProperty follow the Actions toolkit
// (@actions/core, command.ts): a message keeps to one line, and a property
// value cannot end itself early with a comma or a colon.
var (
	dataEscaper     = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A")
	propertyEscaper = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C")
)

func escapeData(s string) string     { return dataEscaper.Replace(s) }
func escapeProperty(s string) string { return propertyEscaper.Replace(s) }
