package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes a configuration around the demo-like project in dir.
func writeConfig(t *testing.T, hooks string) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  api:\n    image: registry.example/api:1\n  migrate:\n    image: registry.example/api:1\n"), 0o644))
	must(os.Mkdir(filepath.Join(dir, ".git"), 0o700)) // the source's work tree, as far as the configuration looks
	must(os.WriteFile(filepath.Join(dir, "slack-secret"), []byte("a-slack-signing-secret-0123456789\n"), 0o600))
	cfg := "listen: 127.0.0.1:9000\nstate: " + filepath.Join(dir, "state") + "\nprojects:\n  demo:\n    compose-files: [" + filepath.Join(dir, "compose.yaml") + "]\n    migrate: migrate\n" +
		"    source: {git: " + filepath.Join(dir, "app.git") + ", dir: " + dir + "}\n" +
		"hooks:\n" + strings.ReplaceAll(hooks, "DIR", dir)
	path := filepath.Join(dir, "server.yaml")
	must(os.WriteFile(path, []byte(cfg), 0o600))
	return path
}

func TestLoadConfig(t *testing.T) {
	t.Setenv("GITHUB_WEBHOOK_SECRET", "a-github-webhook-secret-42")
	t.Setenv("DEPLOY_HOOK_SECRET", standardSecret)
	t.Setenv("SHORT_SECRET", "short")
	good := "  github: {secrets: [env:GITHUB_WEBHOOK_SECRET], repositories: [semalink/app], branches: [main], project: demo}\n" +
		"  slack: {secrets: [file:DIR/slack-secret], teams: [T0001], channels: [C0001], users: [U0001]}\n" +
		"  standard: {secrets: [env:DEPLOY_HOOK_SECRET], projects: [demo], actions: [deploy, redeploy, rollback]}\n"
	c, err := LoadConfig(t.Context(), writeConfig(t, good))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Hooks.GitHub.Secrets[0].Value()) != "a-github-webhook-secret-42" || string(c.Hooks.Slack.Secrets[0].Value()) != "a-slack-signing-secret-0123456789" {
		t.Errorf("secrets not read: %+v", c.Hooks)
	}
	for _, tc := range []struct{ hooks, want string }{
		{"  github: {secrets: [a-literal-secret-in-the-file], repositories: [semalink/app], project: demo}\n",
			"line 9: hooks.github: a secret is env:NAME or file:PATH, never the secret itself"},
		{"  github: {secrets: [env:UNSET_SECRET_X], repositories: [semalink/app], project: demo}\n", "line 9: hooks.github secret env:UNSET_SECRET_X: the variable is not set"},
		{"  github: {secrets: [env:SHORT_SECRET], repositories: [semalink/app], project: demo}\n", "line 9: hooks.github secret env:SHORT_SECRET: 5 bytes, fewer than 16"},
		{"  slack: {secrets: [file:DIR/none], teams: [T1]}\n", "hooks.slack secret file:"},
		{"  standard: {secrets: [env:GITHUB_WEBHOOK_SECRET], projects: [demo]}\n", "a Standard Webhooks secret starts with whsec_"},
		{"  standard: {secrets: [env:DEPLOY_HOOK_SECRET], projects: [other]}\n", `hooks.standard.projects: "other" is not one of the projects`},
		{"  standard: {secrets: [env:DEPLOY_HOOK_SECRET], projects: [demo], actions: [destroy]}\n", `hooks.standard.actions: "destroy" is not an action`},
		{"  standard: {secrets: [env:DEPLOY_HOOK_SECRET]}\n", "hooks.standard: name the projects and the actions"},
		{"  github: {secrets: mYsEcReTvAlUe0123456789, repositories: [semalink/app], project: demo}\n", "secrets: give a list of env:NAME or file:PATH"},
		{"  github: {secrets: [env:GITHUB_WEBHOOK_SECRET], repositories: [semalink/app], project: demo, branch: main}\n", "line 9: field branch not found"},
		{"  gitlab: {}\n", "line 9: field gitlab not found"},
	} {
		_, err := LoadConfig(t.Context(), writeConfig(t, tc.hooks))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("hooks %q: %v, want %q", tc.hooks, err, tc.want)
		}
		for _, secret := range []string{"a-github-webhook-secret-42", "a-literal-secret", "mYsEcR", "short", standardSecret} {
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("an error quotes the secret %s: %v", secret, err)
			}
		}
	}
	// The rest of the file.
	for _, tc := range []struct{ from, to, want string }{
		{"listen: 127.0.0.1:9000", "listen: 127.0.0.1:http", `listen "127.0.0.1:http": give HOST:PORT`},
		{"  demo:\n", "  ../etc:\n", `line 4: project "../etc": use lower-case letters`},
		{"listen: 127.0.0.1:9000", "listen: 127.0.0.1:9000\ntls: {cert: /nonexistent.pem, key: /nonexistent.key}", "tls: open /nonexistent.pem"},
	} {
		path := writeConfig(t, good)
		b, _ := os.ReadFile(path)
		must(t, os.WriteFile(path, []byte(strings.Replace(string(b), tc.from, tc.to, 1)), 0o600))
		if _, err := LoadConfig(t.Context(), path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.to, err, tc.want)
		}
	}
	for content, want := range map[string]string{"": "empty", "listen: 127.0.0.1:9000\n---\nlisten: :80\n": "more than one YAML document"} {
		path := filepath.Join(t.TempDir(), "server.yaml")
		must(t, os.WriteFile(path, []byte(content), 0o600))
		if _, err := LoadConfig(t.Context(), path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", content, err, want)
		}
	}
	// A project whose Compose file does not load names its line.
	path := writeConfig(t, good)
	must(t, os.WriteFile(filepath.Join(filepath.Dir(path), "compose.yaml"), []byte("services:\n  api:\n    image: [unclosed\n"), 0o644))
	if _, err := LoadConfig(t.Context(), path); err == nil || !strings.Contains(err.Error(), "line 4: project demo:") {
		t.Errorf("a project that does not load: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
