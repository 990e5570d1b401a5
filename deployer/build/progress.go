package build

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"

	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/progress/progressui"
	digest "github.com/opencontainers/go-digest"
)

// display shows a build's progress with BuildKit's own display, or not at
// all when Options.Progress is nil.
type display struct {
	d *progressui.Display
}

// newDisplay picks the display for o: "auto" (or empty) is BuildKit's
// terminal display on a terminal and plain lines elsewhere, and always
// plain lines in CI, whose logs keep every line; "tty" insists on a
// terminal; "quiet" shows nothing.
func newDisplay(o Options) (*display, error) {
	mode := progressui.DisplayMode(o.Mode)
	switch mode {
	case "", progressui.AutoMode:
		mode = progressui.AutoMode
		if inCI() {
			mode = progressui.PlainMode
		}
	case progressui.PlainMode, progressui.TtyMode, progressui.QuietMode:
	default:
		return nil, fmt.Errorf("progress %q: want auto, plain, tty or quiet", o.Mode)
	}
	if o.Progress == nil || mode == progressui.QuietMode {
		return &display{}, nil
	}
	d, err := progressui.NewDisplay(o.Progress, mode)
	if err != nil {
		return nil, fmt.Errorf("progress %s: the output is not a terminal: use plain or auto", mode)
	}
	return &display{d: &d}, nil
}

func inCI() bool {
	return os.Getenv("CI") != "" || os.Getenv("GITHUB_ACTIONS") == "true"
}

// show feeds the build's status to the display and to steps until the
// build closes status. It reads status to the end whatever happens: the
// build waits on it.
func (d *display) show(ctx context.Context, steps *stepCounter, status <-chan *bkclient.SolveStatus) {
	if d.d == nil {
		for s := range status {
			steps.add(s)
		}
		return
	}
	ch := make(chan *bkclient.SolveStatus)
	go func() {
		defer close(ch)
		for s := range status {
			steps.add(s)
			ch <- s
		}
	}()
	// Not ctx: the display must drain ch to its end, which comes when
	// the build returns, cancelled or not.
	if _, err := d.d.UpdateFrom(context.WithoutCancel(ctx), ch); err != nil {
		for range ch {
		}
	}
}

// stepPattern matches the vertices that are the Dockerfile's steps:
// "[2/3] COPY …" or "[runtime 2/3] COPY …", not "[internal] …" nor the
// export.
var stepPattern = regexp.MustCompile(`^\[(?:[^\]]+ )?\d+/\d+\] `)

// stepCounter follows the build's vertices: which of the Dockerfile's
// steps finished and came from the cache, and what the one that failed
// said last.
type stepCounter struct {
	vertices map[digest.Digest]*vertex
	order    []digest.Digest
}

type vertex struct {
	name      string
	step      bool
	started   bool
	completed bool
	cached    bool
	err       string
	logs      bytes.Buffer // the last of the step's output
}

// logTail is how much of a failed step's output an error keeps.
const logTail = 4 << 10

func (c *stepCounter) add(s *bkclient.SolveStatus) {
	if c.vertices == nil {
		c.vertices = map[digest.Digest]*vertex{}
	}
	for _, v := range s.Vertexes {
		x := c.vertices[v.Digest]
		if x == nil {
			x = &vertex{}
			c.vertices[v.Digest] = x
			c.order = append(c.order, v.Digest)
		}
		x.name = v.Name
		x.step = stepPattern.MatchString(v.Name)
		x.cached = x.cached || v.Cached
		x.started = x.started || v.Started != nil
		x.completed = x.completed || v.Completed != nil
		if v.Error != "" {
			x.err = v.Error
		}
	}
	for _, l := range s.Logs {
		x := c.vertices[l.Vertex]
		if x == nil {
			continue
		}
		x.logs.Write(l.Data)
		if n := x.logs.Len(); n > 2*logTail {
			tail := append([]byte(nil), x.logs.Bytes()[n-logTail:]...)
			x.logs.Reset()
			x.logs.Write(tail)
		}
	}
}

func (c *stepCounter) steps() int {
	n := 0
	for _, x := range c.vertices {
		if x.step && x.completed {
			n++
		}
	}
	return n
}

func (c *stepCounter) cached() int {
	n := 0
	for _, x := range c.vertices {
		if x.step && x.completed && x.cached {
			n++
		}
	}
	return n
}

// failed is the first vertex that failed on its own (not cancelled
// because another one failed), if any.
func (c *stepCounter) failed() *vertex {
	for _, d := range c.order {
		x := c.vertices[d]
		if x.err != "" && !strings.Contains(x.err, "context canceled") {
			return x
		}
	}
	return nil
}

// running is the name of a step that started and did not finish, or was
// cancelled, if any.
func (c *stepCounter) running() string {
	for _, d := range c.order {
		if x := c.vertices[d]; x.step && x.started && (!x.completed || x.err != "") {
			return x.name
		}
	}
	return ""
}

// tail is the last lines of the vertex's output.
func (x *vertex) tail(lines int) string {
	s := strings.TrimRight(x.logs.String(), "\n")
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
