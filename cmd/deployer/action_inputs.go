package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/semalink/deploy-action/deployer"
	"github.com/sethvargo/go-githubactions"
)

// inputs reads the Action's inputs (the INPUT_* variables). Every input
// the code reads goes through one of these methods, with its name as a
// literal: a test holds them against action.yml and docs/action.md. A
// value that does not parse is a configuration error naming the input and
// what it takes; the first one is kept for err, so that a run of reads is
// checked once.
type inputs struct {
	gha    *githubactions.Action
	first  *error
	masked *[]string // every value masked so far: what the run's own reports redact
}

func newInputs(gha *githubactions.Action) inputs {
	return inputs{gha: gha, first: new(error), masked: new([]string)}
}

// mask hides a secret in the log (see mask) and keeps it for redact.
func (in inputs) mask(secret string) {
	mask(in.gha, secret)
	*in.masked = append(*in.masked, secret)
}

// redact hides every value masked so far in text the run writes itself
// (outputs, the job summary).
func (in inputs) redact(text string) string { return deployer.Redact(text, *in.masked) }

// err is the first input that did not parse, nil when all did.
func (in inputs) err() error { return *in.first }

func (in inputs) fail(name, format string, args ...any) {
	if *in.first == nil {
		*in.first = inputError(name, format, args...)
	}
}

// str is an input as given, white space trimmed; "" when unset.
func (in inputs) str(name string) string { return strings.TrimSpace(in.gha.GetInput(name)) }

// raw is an input with its lines as given (known_hosts, dotenv); the
// runner's library trims the white space around the whole value.
func (in inputs) raw(name string) string { return in.gha.GetInput(name) }

// or is an input, or def when it is unset.
func (in inputs) or(name, def string) string {
	if v := in.str(name); v != "" {
		return v
	}
	return def
}

// list is an input written one item per line or comma-separated.
func (in inputs) list(name string) []string { return list(in.gha.GetInput(name)) }

// secret is an input that holds a secret: masked in the log, each line of
// it, before anything else can print it.
func (in inputs) secret(name string) string {
	v := in.gha.GetInput(name)
	in.mask(v)
	return v
}

// boolean is true or false in any case, as YAML 1.2 writes them; unset is
// false. Anything else (yes, 1, on) fails: a workflow that wrote
// `local: yes` meant something, and guessing would deploy somewhere else.
func (in inputs) boolean(name string) bool {
	switch v := in.str(name); strings.ToLower(v) {
	case "", "false":
		return false
	case "true":
		return true
	default:
		in.fail(name, "%q is not a boolean: write true or false", v)
		return false
	}
}

// duration is a Go duration such as 90s or 2m; unset is 0.
func (in inputs) duration(name string) time.Duration {
	v := in.str(name)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		in.fail(name, "%q is not a duration: write it like 90s or 2m", v)
	}
	return d
}

// count is a positive whole number; unset is 0.
func (in inputs) count(name string) int {
	v := in.str(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		in.fail(name, "%q is not a number of at least 1", v)
	}
	return n
}

// output sets an output of the step, redacted. Outside a runner (no
// GITHUB_OUTPUT) there is nowhere to set it.
func (in inputs) output(name, value string) {
	if os.Getenv("GITHUB_OUTPUT") != "" {
		in.gha.SetOutput(name, in.redact(value))
	}
}

// summary adds Markdown to the job summary, redacted; outside a runner
// (no GITHUB_STEP_SUMMARY) there is none.
func (in inputs) summary(markdown string) {
	if os.Getenv("GITHUB_STEP_SUMMARY") != "" {
		in.gha.AddStepSummary(in.redact(markdown))
	}
}

// inputError is a configuration error about one input.
func inputError(name, format string, args ...any) error {
	return &exitError{code: exitConfig, err: fmt.Errorf("input %s: %s", name, fmt.Sprintf(format, args...))}
}
