package deployer

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Reporter is where the pipeline's progress goes: plain text on a
// terminal, log groups and annotations in GitHub Actions, JSON lines in
// the webhook server.
type Reporter interface {
	// Step starts a step; the returned func ends it with its outcome.
	Step(name string) func(err error)
	// Printf writes one line of progress.
	Printf(format string, args ...any)
	// Warnf writes a warning the user should act on.
	Warnf(format string, args ...any)
	// Output is where a command's own output (a migration's) is streamed.
	Output() io.Writer
}

// TextReporter writes progress for a person.
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
func (r *TextReporter) Output() io.Writer                 { return &prefixWriter{r: r, prefix: "    | "} }

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

// JSONReporter writes one JSON object per event, for machines.
type JSONReporter struct {
	W  io.Writer
	mu sync.Mutex
}

var _ Reporter = (*JSONReporter)(nil)

func (r *JSONReporter) emit(v map[string]any) {
	v["time"] = time.Now().UTC().Format(time.RFC3339Nano)
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = json.NewEncoder(r.W).Encode(v)
}

func (r *JSONReporter) Step(name string) func(error) {
	start := time.Now()
	r.emit(map[string]any{"event": "step", "step": name})
	return func(err error) {
		ev := map[string]any{"event": "step-done", "step": name, "seconds": time.Since(start).Seconds()}
		if err != nil {
			ev["error"] = err.Error()
		}
		r.emit(ev)
	}
}

func (r *JSONReporter) Printf(format string, args ...any) {
	r.emit(map[string]any{"event": "info", "message": fmt.Sprintf(format, args...)})
}

func (r *JSONReporter) Warnf(format string, args ...any) {
	r.emit(map[string]any{"event": "warning", "message": fmt.Sprintf(format, args...)})
}

func (r *JSONReporter) Output() io.Writer { return jsonOutput{r} }

type jsonOutput struct{ r *JSONReporter }

func (o jsonOutput) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		o.r.emit(map[string]any{"event": "output", "line": l})
	}
	return len(b), nil
}
