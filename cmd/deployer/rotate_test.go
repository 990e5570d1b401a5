package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRotateWipeDataNeedsATerminalOrYes(t *testing.T) {
	var stdout, stderr bytes.Buffer
	cmd := newRootCommand()
	cmd.SetArgs([]string{"rotate", "rabbitmq-password", "--wipe-data", "--local", "-f", repoPath(t, "examples/demo/compose.yaml")})
	cmd.SetIn(strings.NewReader("yes\n")) // not a terminal: nobody to ask
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	code := exitCode(&stderr, cmd.ExecuteContext(t.Context()))
	if code != exitConfig || !strings.Contains(stderr.String(), "pass --yes") {
		t.Errorf("exit %d, stderr %q; want %d and a hint to pass --yes", code, stderr.String(), exitConfig)
	}
	if stdout.Len() > 0 {
		t.Errorf("it started: %s", stdout.String())
	}
}

func TestConfirm(t *testing.T) {
	for answer, want := range map[string]bool{"yes\n": true, "Y\n": true, " yes ": true, "no\n": false, "\n": false, "": false, "yess\n": false} {
		var out bytes.Buffer
		if got := confirm(strings.NewReader(answer), &out); got != want {
			t.Errorf("answer %q: %v, want %v", answer, got, want)
		}
		if !strings.Contains(out.String(), "Type yes") {
			t.Errorf("the prompt %q does not say what to type", out.String())
		}
	}
}
