package project

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// What a project is interpolated with is a matter of trust: the Compose
// file may come from a pull request, so ${NAME} must not reach the
// deployer's own settings (DEPLOYER_SSH_PASSPHRASE…) nor, inside GitHub
// Actions, the runner's internals (the inputs with the SSH key, the
// runtime token). Env files are read by the loader on top of this.

// internal tells whether a variable belongs to the deployer or, in
// Actions, to the runner, and so is never a project's to read.
func internal(name string, action bool) bool {
	if strings.HasPrefix(name, "DEPLOYER_") {
		return true
	}
	if !action {
		return false
	}
	for _, prefix := range []string{"INPUT_", "ACTIONS_", "RUNNER_", "GITHUB_TOKEN", "GH_TOKEN", "STATE_"} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// ShellEnviron is the environment of a project on the command line:
// Compose's convention of the shell's environment, less the deployer's
// own variables, and less the runner's internals when the command line
// runs in a GitHub Actions step (GITHUB_ACTIONS=true), as the Action
// withholds them.
func ShellEnviron() []string {
	action := os.Getenv("GITHUB_ACTIONS") == "true"
	var env []string
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); !internal(name, action) {
			env = append(env, kv)
		}
	}
	return env
}

// ActionEnviron is the environment of a project inside GitHub Actions:
// only the variables the workflow names (the pass-env input), and never
// one of the runner's or the deployer's own. Naming one of those is an
// error, so that a workflow does not believe it passed it.
func ActionEnviron(pass []string) ([]string, error) {
	env := []string{} // not nil, which Options.Env takes for the shell's
	for _, name := range pass {
		if internal(name, true) {
			return nil, fmt.Errorf("%s belongs to the runner or the deployer and is never passed to a project: pass the value under another name (env: in the workflow step)", name)
		}
		if v, ok := os.LookupEnv(name); ok && !slices.Contains(env, name+"="+v) {
			env = append(env, name+"="+v)
		}
	}
	return env, nil
}
