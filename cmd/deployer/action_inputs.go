package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-githubactions"
)

// inputs reads the Action's inputs (the INPUT_* variables). Every input
// the code reads goes through one of these methods, with its name as a
// literal: a test holds them against action.yml and docs/action.md. A
// value that does not parse is a configuration error naming the input and
// what it takes.
type inputs struct{ gha *githubactions.Action }

// str is an input as given, white space trimmed; "" when unset.
func (in inputs) str(name string) string { return strings.TrimSpace(in.gha.GetInput(name)) }

// raw is an input exactly as given: text whose lines matter (known_hosts,
// dotenv).
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
	mask(in.gha, v)
	return v
}

// boolean is true or false in any case, as YAML 1.2 writes them; unset is
// false. Anything else (yes, 1, on) is an error: a workflow that wrote
// `local: yes` meant something, and guessing would deploy somewhere else.
func (in inputs) boolean(name string) (bool, error) {
	switch v := in.str(name); strings.ToLower(v) {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, inputError(name, "%q is not a boolean: write true or false", v)
	}
}

// duration is a Go duration such as 90s or 2m; unset is 0.
func (in inputs) duration(name string) (time.Duration, error) {
	v := in.str(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, inputError(name, "%q is not a duration: write it like 90s or 2m", v)
	}
	return d, nil
}

// count is a positive whole number; unset is 0.
func (in inputs) count(name string) (int, error) {
	v := in.str(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, inputError(name, "%q is not a number of at least 1", v)
	}
	return n, nil
}

// inputError is a configuration error about one input.
func inputError(name, format string, args ...any) error {
	return &exitError{code: exitConfig, err: fmt.Errorf("input %s: %s", name, fmt.Sprintf(format, args...))}
}
