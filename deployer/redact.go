package deployer

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/semalink/deploy-action/checks"
)

// redact wraps a Reporter so that no secret value reaches it, whatever
// prints it: a migration echoing its DATABASE_URL, an error quoting a
// command line.
func redact(r Reporter, secrets []string) Reporter {
	rep := replacer(secrets)
	if rep == nil {
		return r
	}
	return &redactor{r: r, rep: rep}
}

// minSecret is the length below which a value is not hidden: a secret is
// longer, and hiding every "1" or "yes" would garble everything.
const minSecret = 4

// replacer is the one rule for hiding secrets, used by everything that
// prints or persists: each value of at least minSecret bytes becomes ***,
// longest first, so that a secret that contains another (hunter22extra
// and hunter22) is hidden whole rather than leaving its tail. nil when
// there is nothing to hide.
func replacer(secrets []string) *strings.Replacer {
	var keep []string
	add := func(s string) {
		if len(s) >= minSecret && !slices.Contains(keep, s) {
			keep = append(keep, s)
		}
	}
	for _, s := range secrets {
		add(s)
		// Each line too: output comes line by line, and a multi-line
		// secret (a key) may be printed a line at a time.
		if strings.ContainsAny(s, "\r\n") {
			for line := range strings.Lines(strings.ReplaceAll(s, "\r", "\n")) {
				add(strings.TrimSpace(line))
			}
		}
	}
	if len(keep) == 0 {
		return nil
	}
	slices.SortStableFunc(keep, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(keep))
	for _, s := range keep {
		pairs = append(pairs, s, "***")
	}
	return strings.NewReplacer(pairs...)
}

type redactor struct {
	r   Reporter
	rep *strings.Replacer
}

func (x *redactor) Step(name string) func(error) {
	done := x.r.Step(x.rep.Replace(name))
	return func(err error) {
		if err != nil {
			err = redactedError{msg: x.rep.Replace(err.Error()), err: err}
		}
		done(err)
	}
}

func (x *redactor) Printf(format string, args ...any) {
	x.r.Printf("%s", x.rep.Replace(fmt.Sprintf(format, args...)))
}

func (x *redactor) Warnf(format string, args ...any) {
	x.r.Warnf("%s", x.rep.Replace(fmt.Sprintf(format, args...)))
}

func (x *redactor) Finding(f checks.Finding, failing bool) {
	f.Message, f.Fix = x.rep.Replace(f.Message), x.rep.Replace(f.Fix)
	x.r.Finding(f, failing)
}

// Output redacts line by line, so a secret split across writes is still
// caught.
func (x *redactor) Output() io.Writer { return &redactWriter{x: x, w: x.r.Output()} }

type redactWriter struct {
	x   *redactor
	w   io.Writer
	buf []byte
}

// Flush writes a last line that did not end in a newline.
func (w *redactWriter) Flush() {
	if len(w.buf) > 0 {
		_, _ = io.WriteString(w.w, w.x.rep.Replace(string(w.buf)))
		w.buf = nil
	}
	flush(w.w)
}

// flush writes out what a Reporter's Output holds back of an unfinished
// last line, once the command that wrote it has ended.
func flush(w io.Writer) {
	if f, ok := w.(interface{ Flush() }); ok {
		f.Flush()
	}
}

func (w *redactWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	if i := strings.LastIndexByte(string(w.buf), '\n'); i >= 0 {
		if _, err := io.WriteString(w.w, w.x.rep.Replace(string(w.buf[:i+1]))); err != nil {
			return 0, err
		}
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

// redactWrites hides secrets in each write to w, for output that is not
// written in lines (a terminal's redrawn progress).
func redactWrites(w io.Writer, secrets []string) io.Writer {
	rep := replacer(secrets)
	if rep == nil {
		return w
	}
	return writeReplacer{w, rep}
}

type writeReplacer struct {
	w   io.Writer
	rep *strings.Replacer
}

func (r writeReplacer) Write(b []byte) (int, error) {
	if _, err := io.WriteString(r.w, r.rep.Replace(string(b))); err != nil {
		return 0, err
	}
	return len(b), nil
}

type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }

// Redact hides secrets in a message, by the same rule as the pipeline's
// own output.
func Redact(msg string, secrets []string) string {
	if rep := replacer(secrets); rep != nil {
		return rep.Replace(msg)
	}
	return msg
}
