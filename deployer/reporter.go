package deployer

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/semalink/deploy-action/checks"
)

// Reporter is where the pipeline's progress goes: plain text on a
// terminal, log groups and annotations in GitHub Actions.
type Reporter interface {
	// Step starts a step; the returned func ends it with its outcome.
	Step(name string) func(err error)
	// Printf writes one line of progress.
	Printf(format string, args ...any)
	// Warnf writes a warning the user should act on.
	Warnf(format string, args ...any)
	// Finding is one finding of the preflight checks, at the warning
	// level or above, each once per run. Failing ones also end the run
	// with a *CheckFailed that lists them.
	Finding(f checks.Finding, failing bool)
	// Output is where a command's own output (a migration's) is streamed.
	// A writer that holds back an unfinished last line has a Flush()
	// method, called when the command has ended.
	Output() io.Writer
}

// TextReporter writes progress for a person: steps, lines and warnings
// as they come; failing findings come in the error that ends the run.
type TextReporter struct {
	W   io.Writer
	mu  sync.Mutex
	now func() time.Time
}

var _ Reporter = (*TextReporter)(nil)

func (r *TextReporter) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// Step prints "==> name" and, when it ends, how long it took or why it failed.
func (r *TextReporter) Step(name string) func(error) {
	start := r.clock()
	r.line("==> %s", name)
	return func(err error) {
		took := r.clock().Sub(start).Round(time.Millisecond)
		if err != nil {
			r.line("    %s failed after %s: %v", name, took, err)
			return
		}
		r.line("    %s done in %s", name, took)
	}
}

func (r *TextReporter) Printf(format string, args ...any) { r.line("    "+format, args...) }
func (r *TextReporter) Warnf(format string, args ...any)  { r.line("    warning: "+format, args...) }
func (r *TextReporter) Finding(f checks.Finding, failing bool) {
	if !failing {
		r.line("    warning: %s: %s [%s]", f.Pos, f.Message, f.Rule)
	}
}
func (r *TextReporter) Output() io.Writer { return &prefixWriter{r: r, prefix: "    | "} }

func (r *TextReporter) line(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.W, format+"\n", args...)
}

// prefixWriter indents a command's output line by line.
type prefixWriter struct {
	r      *TextReporter
	prefix string
	buf    []byte
}

// Flush writes a last line that did not end in a newline.
func (p *prefixWriter) Flush() {
	if len(p.buf) > 0 {
		p.r.line("%s%s", p.prefix, p.buf)
		p.buf = nil
	}
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			break
		}
		p.r.line("%s%s", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
