package main

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/deployer/compose/composetest"
	"github.com/semalink/deploy-action/deployer/remote/remotetest"
)

// The secrets of the env file, as a migration and a service that print
// their settings would show them.
var envSecrets = []string{"pg-5ecret-value", "skb-5ecret-value"}

const secretsStack = `x-deployer:
  migrate: migrate
  checks:
    ignore: [{rule: logs-not-forwarded, reason: a test}]
x-logging: &logging
  driver: json-file
  options: {max-size: 1m}
services:
  migrate:
    build: ./api
    command: ["migrate"]
    restart: "no"
    environment:
      RELEASE: ${RELEASE}
      PGPASSWORD: ${PGPASSWORD}
      SECRET_KEY_BASE: ${SECRET_KEY_BASE}
      ECHO_ENV: PGPASSWORD,SECRET_KEY_BASE
      ECHO_TEXT: "::error::a workflow command printed by a migration"
      FAIL_MIGRATION: ${FAIL_MIGRATION:-0}
    logging: *logging
  api:
    build: ./api
    restart: unless-stopped
    environment:
      RELEASE: ${RELEASE}
      PGPASSWORD: ${PGPASSWORD}
      ECHO_ENV: PGPASSWORD
      FAIL_HEALTH: ${FAIL_HEALTH:-0}
    healthcheck:
      test: ["CMD", "/api", "probe", "http://127.0.0.1:3000/health"]
      interval: 500ms
      timeout: 2s
      retries: 3
    deploy: {resources: {limits: {memory: 64m}}}
    logging: *logging
`

// secretsProject writes the stack, its api binary and its env file into
// dir, names it (and takes it down when the test ends), and gives the test
// host's user a root directory for it.
func secretsProject(t *testing.T) (env remotetest.Env, dir, name, root string) {
	t.Helper()
	env = remotetest.SSH(t)
	composetest.Need(t)
	name = composetest.ProjectName(t)
	downProject(t, name)
	root = remotetest.TempDir(t, env.User)
	dir = t.TempDir()
	writeFiles(t, dir, map[string]string{
		"compose.yaml":   secretsStack,
		"prod.env":       "PGPASSWORD=" + envSecrets[0] + "\nSECRET_KEY_BASE=" + envSecrets[1] + "\n",
		"api/Dockerfile": "FROM scratch\nCOPY api /api\nENTRYPOINT [\"/api\"]\nCMD [\"serve\"]\n",
	})
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "api", "api"), "../../examples/demo/api")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return env, dir, name, root
}

// downProject takes a test's project down when the test ends, and removes
// its images by name: never by ID, which other tests' tags may share (the
// same api binary makes the same image), and which would remove those too.
func downProject(t *testing.T, name string) {
	t.Cleanup(func() {
		exec.Command("docker", "compose", "-p", name, "down", "-v", "-t", "1").Run()
		exec.Command("sh", "-c", `docker images --format '{{.Repository}}:{{.Tag}}' --filter reference="$0-*" | xargs -r docker image rm`, name).Run()
	})
}

func noSecrets(t *testing.T, where, text string) {
	t.Helper()
	for _, s := range envSecrets {
		if strings.Contains(text, s) {
			t.Errorf("%s shows the secret %q", where, s)
		}
	}
}

// TestSecretsNeverShown: a migration and a service that print the env
// file's secrets (whatever their names), and fail: the secrets are *** in
// the deploy's output, in release.json on the host, in `releases`, and in
// the output of a rollback, which has no env file of its own.
func TestSecretsNeverShown(t *testing.T) {
	env, dir, name, root := secretsProject(t)
	host := []string{"--host", env.User + "@" + net.JoinHostPort(env.Host, env.Port), "--known-hosts", env.KnownHosts,
		"--ssh-key", env.Key, "--root", root, "-p", name}
	deploy := append([]string{"deploy", "-f", "compose.yaml", "--env-file", "prod.env", "--health-timeout", "20s"}, host...)

	// v1 never turns healthy and is left running; its logs hold a secret.
	r := runBinary(t, dir, []string{"RELEASE=v1", "FAIL_HEALTH=1"}, append(deploy, "--no-rollback")...)
	if r.code != exitFailed || !strings.Contains(r.output(), "PGPASSWORD=***") {
		t.Fatalf("unhealthy deploy: exit %d; want it failed, showing the logs with *** in place of the secret", r.code)
	}
	noSecrets(t, "the unhealthy deploy's output", r.output())

	if r := runBinary(t, dir, []string{"RELEASE=v2"}, deploy...); r.code != exitOK {
		t.Fatalf("healthy deploy: exit %d", r.code)
	}

	// v3's migration prints the secrets and fails.
	r = runBinary(t, dir, []string{"RELEASE=v3", "FAIL_MIGRATION=1"}, deploy...)
	if r.code != exitFailed || !strings.Contains(r.output(), "SECRET_KEY_BASE=***") {
		t.Fatalf("failing migration: exit %d; want it failed, its output shown with ***", r.code)
	}
	noSecrets(t, "the failed migration's output", r.output())

	files, _ := filepath.Glob(filepath.Join(root, name, "releases", "*", "release.json"))
	slices.Sort(files)
	if len(files) != 3 {
		t.Fatalf("%d releases on the host, want 3", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		noSecrets(t, f, string(data))
	}
	var first, last struct{ ID, Error string }
	data, _ := os.ReadFile(files[0])
	if err := json.Unmarshal(data, &first); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(files[2])
	if err := json.Unmarshal(data, &last); err != nil || !strings.Contains(last.Error, "SECRET_KEY_BASE=***") {
		t.Errorf("release.json of the failed migration: error %q (%v), want its output with ***", last.Error, err)
	}

	r = runBinary(t, dir, nil, append([]string{"releases"}, host...)...)
	if r.code != exitOK || !strings.Contains(r.output(), first.ID) {
		t.Errorf("releases: exit %d, want the three releases", r.code)
	}
	noSecrets(t, "releases", r.output())

	// Back to v1 by hand, without the env file: v1 is unhealthy, so the
	// rollback fails, quoting its logs, and v2 comes back.
	r = runBinary(t, dir, nil, append([]string{"rollback", "--to", first.ID}, host...)...)
	if r.code != exitFailed || !strings.Contains(r.output(), "PGPASSWORD=***") {
		t.Errorf("rollback to the unhealthy release: exit %d; want it failed, quoting the logs with ***", r.code)
	}
	noSecrets(t, "the rollback's output", r.output())
}

// TestActionMasksFirst runs the Action's deploy of a migration that
// prints the secrets and a workflow command, then fails: every value of the
// env file is masked before the first line that could show it, no secret
// is shown anywhere else, and the migration's workflow command is shown,
// not run.
func TestActionMasksFirst(t *testing.T) {
	env, dir, name, root := secretsProject(t)
	key, _ := os.ReadFile(env.Key)
	known, _ := os.ReadFile(env.KnownHosts)
	outputs := filepath.Join(t.TempDir(), "output")

	r := runBinary(t, dir, []string{
		"GITHUB_ACTIONS=true", "GITHUB_WORKSPACE=" + dir, "DEPLOYER_ROOT=" + root,
		"GITHUB_STEP_SUMMARY=" + filepath.Join(t.TempDir(), "summary"), "GITHUB_OUTPUT=" + outputs,
		"INPUT_COMMAND=deploy", "INPUT_COMPOSE-FILES=compose.yaml", "INPUT_ENV-FILES=prod.env",
		"INPUT_PROJECT=" + name, "INPUT_HOSTS=" + env.User + "@" + net.JoinHostPort(env.Host, env.Port),
		"INPUT_SSH-PRIVATE-KEY=" + string(key), "INPUT_KNOWN-HOSTS=" + string(known),
		"INPUT_PASS-ENV=RELEASE,FAIL_MIGRATION", "RELEASE=v1", "FAIL_MIGRATION=1",
	}, "action")
	if r.code != exitFailed {
		t.Errorf("exit %d, want %d: the migration fails", r.code, exitFailed)
	}
	lines := strings.Split(r.stdout+r.stderr, "\n")
	firstOther := slices.IndexFunc(lines, func(l string) bool { return !strings.HasPrefix(l, "::add-mask::") })
	for _, s := range envSecrets {
		if i := slices.Index(lines, "::add-mask::"+s); i < 0 || i > firstOther {
			t.Errorf("the mask of %q is at line %d, after the first other line (%d)", s, i, firstOther)
		}
	}
	noSecrets(t, "the Action's log (masks aside)", r.output())
	if !strings.Contains(r.output(), "| ::error::a workflow command printed by a migration") {
		t.Errorf("the migration's workflow command is not shown as text")
	}
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "::error::a workflow command") {
			t.Errorf("the migration's workflow command reached the runner: %q", l)
		}
	}
}

// TestActionMasksAnEnvFileThatDoesNotParse: the loader's error quotes the
// broken value; the runner hides it, as its mask came first.
func TestActionMasksAnEnvFileThatDoesNotParse(t *testing.T) {
	for _, line := range []string{"TOKEN=sup3r-secret-${oops", `OTHER="unterminated sup3r-secret`} {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"compose.yaml": "services:\n  api:\n    image: app\n", "bad.env": line + "\n"})
		r := runBinary(t, dir, []string{"GITHUB_ACTIONS=true", "INPUT_COMMAND=check", "INPUT_ENV-FILES=bad.env"}, "action")
		if r.code != exitConfig {
			t.Errorf("%s: exit %d, want %d", line, r.code, exitConfig)
		}
		first := strings.Index(r.stdout, "::add-mask::")
		quoted := strings.Index(r.stdout, "sup3r-secret")
		if first < 0 || first > strings.Index(r.stdout, "::error::") || quoted < first {
			t.Errorf("%s: no mask before the error that quotes the value:\n%s", line, r.stdout)
		}
	}
}
