package project_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/checks/project"
)

// names lists the variable names of an environment.
func names(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		out = append(out, name)
	}
	return out
}

func TestShellEnviron(t *testing.T) {
	for _, kv := range []string{"APP_TAG=v1", "DEPLOYER_SSH_PASSPHRASE=s", "INPUT_SSH-PRIVATE-KEY=k", "ACTIONS_RUNTIME_TOKEN=r", "GITHUB_TOKEN=g", "GH_TOKEN=h", "GITHUB_SHA=abc"} {
		name, value, _ := strings.Cut(kv, "=")
		t.Setenv(name, value)
	}
	for _, tc := range []struct {
		actions        string
		kept, withheld []string
	}{
		{"", []string{"APP_TAG", "INPUT_SSH-PRIVATE-KEY", "GITHUB_TOKEN", "GITHUB_SHA"}, []string{"DEPLOYER_SSH_PASSPHRASE"}},
		{"true", []string{"APP_TAG", "GITHUB_SHA"}, []string{"DEPLOYER_SSH_PASSPHRASE", "INPUT_SSH-PRIVATE-KEY", "ACTIONS_RUNTIME_TOKEN", "GITHUB_TOKEN", "GH_TOKEN"}},
	} {
		t.Setenv("GITHUB_ACTIONS", tc.actions)
		got := names(project.ShellEnviron())
		for _, name := range tc.kept {
			if !slices.Contains(got, name) {
				t.Errorf("GITHUB_ACTIONS=%q: %s withheld, want it kept", tc.actions, name)
			}
		}
		for _, name := range tc.withheld {
			if slices.Contains(got, name) {
				t.Errorf("GITHUB_ACTIONS=%q: %s kept, want it withheld", tc.actions, name)
			}
		}
	}
}

func TestActionEnviron(t *testing.T) {
	t.Setenv("APP_TAG", "v1")
	t.Setenv("ACTIONS_RUNTIME_TOKEN", "r")
	env, err := project.ActionEnviron([]string{"APP_TAG", "APP_TAG", "UNSET_ONE"})
	if err != nil || !slices.Equal(env, []string{"APP_TAG=v1"}) {
		t.Errorf("ActionEnviron = %q, %v; want only APP_TAG=v1", env, err)
	}
	if env, err := project.ActionEnviron(nil); err != nil || env == nil || len(env) != 0 {
		t.Errorf("ActionEnviron(nil) = %#v, %v; want empty and not nil (nil means the shell's)", env, err)
	}
	for _, name := range []string{"ACTIONS_RUNTIME_TOKEN", "DEPLOYER_SSH_PASSPHRASE", "INPUT_HOSTS", "GITHUB_TOKEN"} {
		if _, err := project.ActionEnviron([]string{name}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("ActionEnviron(%s) = %v, want an error naming it", name, err)
		}
	}
}
