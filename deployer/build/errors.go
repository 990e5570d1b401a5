package build

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// buildError is a failed build told for a person: what failed and what
// to do. It wraps what BuildKit said.
type buildError struct {
	msg   string
	cause error
}

func (e *buildError) Error() string { return e.msg }
func (e *buildError) Unwrap() error { return e.cause }

// BuildKit's messages, old (the Engine 20.10's BuildKit 0.8) and new.
var (
	reParse   = regexp.MustCompile(`dockerfile parse error (?:on )?line (\d+): (.*)`)
	reProcess = regexp.MustCompile(`(?:executor failed running \[(.*)\]|process "(.*)" did not complete successfully): (exit code: \d+)`)
	reSource  = regexp.MustCompile(`"([^"]+)":? not found`)
	reSecret  = regexp.MustCompile(`secret ([^\s:]+):? not found`)
	reTarget  = regexp.MustCompile(`(?:failed to reach build target (\S+) in Dockerfile|target stage "?([^"\s]+)"? could not be found)`)
)

// noise is what BuildKit puts before the part of a message that says
// what went wrong.
var noise = []string{
	"failed to solve: ",
	"failed to solve with frontend dockerfile.v0: ",
	"failed to create LLB definition: ",
	"failed to compute cache key: ",
}

// explain turns BuildKit's error for a failed build into one that says
// what failed and what to do. steps tells which step failed and what it
// printed last; shown says whether the progress display already showed
// that output.
func (b *Builder) explain(ctx context.Context, err error, req Request, df *dockerfile, steps *stepCounter, shown bool) error {
	if ctx.Err() != nil {
		what := "the build"
		if x := steps.running(); x != "" {
			what = "step " + x
		}
		return fmt.Errorf("stopped during %s: %w", what, context.Cause(ctx))
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable {
		return fmt.Errorf("builder %s stopped answering: %s (check that it still runs; then build again)", b.name, grpcMessage(err))
	}
	msg := grpcMessage(err)
	for _, n := range noise {
		msg = strings.ReplaceAll(msg, n, "")
	}
	step := ""
	failed := steps.failed()
	if failed != nil {
		step = "step " + failed.name + ": "
	}
	wrap := func(format string, args ...any) error {
		return &buildError{msg: fmt.Sprintf(format, args...), cause: err}
	}
	switch {
	case reParse.MatchString(msg):
		m := reParse.FindStringSubmatch(msg)
		return wrap("%s line %s: %s (fix the Dockerfile)", df.display, m[1], m[2])
	case reTarget.MatchString(msg):
		if df.parsed {
			return wrap("%s", targetError(req.Target, df))
		}
		return wrap("target %q not found in %s: name a stage with FROM … AS %s, or fix the service's build.target", req.Target, df.display, req.Target)
	case reSecret.MatchString(msg):
		m := reSecret.FindStringSubmatch(msg)
		return wrap("%s", missingSecretError([]string{m[1]}, df))
	case reProcess.MatchString(msg):
		m := reProcess.FindStringSubmatch(msg)
		out := ""
		if failed != nil && !shown {
			if tail := failed.tail(10); tail != "" {
				out = "; it printed:\n" + tail
			}
		}
		fix := "fix the step in " + df.display
		if shown {
			fix += " (its output is above)"
		}
		if step == "" {
			step = fmt.Sprintf("the command [%s]", m[1]+m[2])
		} else {
			step = strings.TrimSuffix(step, ": ")
		}
		return wrap("%s failed (%s): %s%s", step, m[3], fix, out)
	case reSource.MatchString(msg) && (strings.Contains(err.Error(), "failed to compute cache key") || strings.Contains(msg, "checksum")):
		m := reSource.FindStringSubmatch(msg)
		return wrap("%s%q is not in the build context %s: add it, or check the service's build.context and its .dockerignore", step, m[1], displayPath(req.Context))
	}
	return wrap("%s%s", step, msg)
}

// grpcMessage is err's message without gRPC's wrapping ("rpc error: code
// = … desc =", "connection error: desc = \"transport: Error while
// dialing: …\""), down to what went wrong.
func grpcMessage(err error) string {
	msg := err.Error()
	if s, ok := status.FromError(err); ok {
		msg = s.Message()
	}
	if i := strings.Index(msg, "rpc error: code = "); i >= 0 {
		if j := strings.Index(msg[i:], " desc = "); j >= 0 {
			msg = msg[:i] + msg[i+j+len(" desc = "):]
		}
	}
	if m := reConnError.FindStringSubmatch(msg); m != nil {
		msg = strings.TrimSpace(strings.ReplaceAll(m[1], `\n`, " "))
	}
	return msg
}

var reConnError = regexp.MustCompile(`connection error: desc = "(?:transport: )?(?:Error while dialing:? )?(.*)"$`)
