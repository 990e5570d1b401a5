package main

// Black-box tests of a project that comes from a pull request: the built
// binary, run as a user or a runner runs it, against the real sshd, with
// hostile Compose files. What they may not reach: a file outside the
// project, the runner's or the deployer's variables, the host.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/semalink/deploy-action/deployer/remote/remotetest"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// deployerBinary builds the deployer once per test run.
func deployerBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "deployer-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "deployer")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = err
			t.Logf("go build: %s", out)
		}
	})
	if binErr != nil {
		remotetest.Need(t, "build the deployer: %v", binErr)
	}
	return binPath
}

// ran is what one run of the binary did.
type ran struct {
	code           int
	stdout, stderr string
	maxRSS         int64 // bytes
}

// output is what a person or a log sees: stdout and stderr, less the
// ::add-mask:: commands, which the runner swallows (they must name the
// secret to hide it).
func (r ran) output() string {
	var shown []string
	for line := range strings.Lines(r.stdout + r.stderr) {
		if !strings.HasPrefix(line, "::add-mask::") {
			shown = append(shown, line)
		}
	}
	return strings.Join(shown, "")
}

// runBinary runs the deployer in dir with exactly the environment env
// (plus PATH and HOME).
func runBinary(t *testing.T, dir string, env []string, args ...string) ran {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), deployerBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := ran{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss << 10 // Linux reports KiB
	}
	t.Logf("deployer %s: exit %d, peak memory %d MiB\n%s", strings.Join(args, " "), r.code, r.maxRSS>>20, r.output())
	return r
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// maxMemory bounds what a refused project may make the deployer use: far
// below what reading /dev/zero for a while would take.
const maxMemory = 256 << 20

// TestLinksOutOfTheProject bind-mounts, through a link inside the project,
// a file, a device and a directory outside it: the deploy stops before it
// connects, names the link, and nothing reaches the host.
func TestLinksOutOfTheProject(t *testing.T) {
	env := remotetest.SSH(t)
	outside := t.TempDir()
	writeFiles(t, outside, map[string]string{"secret.txt": "SENTINEL-OUTSIDE-FILE\n"})
	hostname, _ := os.ReadFile("/etc/hostname")

	for _, tc := range []struct{ name, target, mount string }{
		{"File", "/etc/hostname", "./conf/app.ini:/etc/app.ini:ro"},
		{"Device", "/dev/zero", "./conf/app.ini:/etc/app.ini:ro"},
		{"Directory", outside, "./conf/app.ini:/etc/app:ro"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"compose.yaml": "services:\n  web:\n    image: deployer-demo/caddy:2.11.9\n    volumes:\n      - " + tc.mount + "\n"})
			if err := os.MkdirAll(filepath.Join(dir, "conf"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tc.target, filepath.Join(dir, "conf", "app.ini")); err != nil {
				t.Fatal(err)
			}
			root := remotetest.TempDir(t, env.User)
			r := runBinary(t, dir, nil, "deploy", "-f", "compose.yaml",
				"--host", env.User+"@"+net.JoinHostPort(env.Host, env.Port), "--known-hosts", env.KnownHosts, "--ssh-key", env.Key,
				"--root", root)
			if r.code != exitConfig {
				t.Errorf("exit code %d, want %d (the configuration is refused)", r.code, exitConfig)
			}
			for _, want := range []string{"conf/app.ini", "symbolic link", tc.target, "outside the project"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("the error does not say %q", want)
				}
			}
			if strings.Contains(r.output(), "connect to") {
				t.Errorf("it connected to the host")
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Errorf("the host's deployer directory holds %d entries, want none", len(entries))
			}
			if strings.Contains(r.output(), "SENTINEL-OUTSIDE-FILE") || (len(bytes.TrimSpace(hostname)) > 0 && strings.Contains(r.output(), string(bytes.TrimSpace(hostname)))) {
				t.Errorf("the output holds what lies outside the project")
			}
			if r.maxRSS > maxMemory {
				t.Errorf("peak memory %d MiB, want under %d MiB", r.maxRSS>>20, maxMemory>>20)
			}
		})
	}
}

// sentinel stands for the runner's secrets in the tests below.
const sentinel = "SENTINEL-RUNNER-SECRET-5f2c"

// runnerEnv is an Action's environment with the runner's and the
// deployer's secrets set to the sentinel, deploying to a host that
// refuses connections: a run that got as far as connecting would say so.
func runnerEnv(t *testing.T, extra ...string) []string {
	return append([]string{
		"GITHUB_ACTIONS=true",
		"GITHUB_WORKSPACE=" + t.TempDir(),
		"GITHUB_STEP_SUMMARY=" + filepath.Join(t.TempDir(), "summary"),
		"GITHUB_OUTPUT=" + filepath.Join(t.TempDir(), "output"),
		"INPUT_SSH-PRIVATE-KEY=" + sentinel,
		"ACTIONS_RUNTIME_TOKEN=" + sentinel,
		"DEPLOYER_SSH_PASSPHRASE=" + sentinel,
		"INPUT_COMMAND=deploy",
		"INPUT_COMPOSE-FILES=compose.yaml",
		"INPUT_HOSTS=deploy@127.0.0.1:1",
		"INPUT_HOST-FINGERPRINT=SHA256:" + strings.Repeat("A", 43),
	}, extra...)
}

// TestRunnerSecretsStayOut gives the Action hostile projects that ask for
// the runner's secrets: each fails with a clear error before it connects,
// and the sentinel is in no output.
func TestRunnerSecretsStayOut(t *testing.T) {
	const api = "services:\n  api:\n    build:\n      context: .\n      secrets: [token]\n"
	for _, tc := range []struct {
		name, compose string
		want          []string
	}{
		{
			name:    "EnvBuildSecret",
			compose: api + "secrets:\n  token:\n    environment: ACTIONS_RUNTIME_TOKEN\n",
			want:    []string{"ACTIONS_RUNTIME_TOKEN is the runner's or the deployer's own variable"},
		},
		{
			name:    "InputBuildSecret",
			compose: api + "secrets:\n  token:\n    environment: INPUT_SSH-PRIVATE-KEY\n",
			want:    []string{"INPUT_SSH-PRIVATE-KEY is the runner's or the deployer's own variable"},
		},
		{
			name:    "FileBuildSecret",
			compose: api + "secrets:\n  token:\n    file: /proc/self/environ\n",
			want:    []string{"/proc/self/environ is outside the project directory"},
		},
		{
			name:    "Interpolation",
			compose: "services:\n  api:\n    image: app\n    environment:\n      TOKEN: ${ACTIONS_RUNTIME_TOKEN}\n",
			want:    []string{"compose.yaml:5", "ACTIONS_RUNTIME_TOKEN is the runner's or the deployer's own variable"},
		},
		{
			name:    "Passphrase",
			compose: "services:\n  api:\n    image: app\n    environment:\n      P: ${DEPLOYER_SSH_PASSPHRASE:-none}\n",
			want:    []string{"DEPLOYER_SSH_PASSPHRASE is the runner's or the deployer's own variable"},
		},
		{
			name:    "EnvFile",
			compose: "services:\n  api:\n    image: app\n    env_file: /proc/self/environ\n",
			want:    []string{"/proc/self/environ is outside the project directory"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"compose.yaml": tc.compose, "Dockerfile": "FROM scratch\n"})
			r := runBinary(t, dir, runnerEnv(t), "action")
			if r.code != exitConfig {
				t.Errorf("exit code %d, want %d", r.code, exitConfig)
			}
			for _, want := range tc.want {
				if !strings.Contains(r.output(), want) {
					t.Errorf("the output does not say %q", want)
				}
			}
			if strings.Contains(r.output(), "connect to") {
				t.Errorf("it connected")
			}
			if strings.Contains(r.output(), sentinel) {
				t.Errorf("the output holds the runner's secret")
			}
		})
	}

	t.Run("PassEnvRefusesTheRunners", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"compose.yaml": "services:\n  api:\n    image: app\n"})
		r := runBinary(t, dir, runnerEnv(t, "INPUT_PASS-ENV=RELEASE, ACTIONS_RUNTIME_TOKEN"), "action")
		if r.code != exitConfig || !strings.Contains(r.output(), "input pass-env: ACTIONS_RUNTIME_TOKEN belongs to the runner") {
			t.Errorf("exit %d; want pass-env of a runner variable refused", r.code)
		}
	})

	t.Run("PassEnvPasses", func(t *testing.T) {
		// A variable the workflow passes reaches the project (a required
		// one loads); one it does not pass stays out, though the runner
		// has it (a required one fails).
		env := runnerEnv(t, "INPUT_COMMAND=check", "INPUT_PASS-ENV=RELEASE", "RELEASE=v7", "OTHER=v8")
		for _, tc := range []struct {
			variable string
			loads    bool
		}{{"RELEASE", true}, {"OTHER", false}} {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"compose.yaml": "services:\n  api:\n    image: app:${" + tc.variable + ":?}\n"})
			r := runBinary(t, dir, env, "action")
			if loaded := r.code != exitConfig; loaded != tc.loads {
				t.Errorf("${%s:?}: exit %d, want it loaded: %v", tc.variable, r.code, tc.loads)
			}
		}
	})
}

// TestCheckHostileDockerfilePath points a build at /proc/self/environ:
// refused by name, its content never shown.
func TestCheckHostileDockerfilePath(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"compose.yaml": "services:\n  api:\n    build:\n      context: .\n      dockerfile: /proc/self/environ\n"})
	r := runBinary(t, dir, []string{"SOME_TOKEN=" + sentinel}, "check", "-f", "compose.yaml")
	if r.code != exitConfig || !strings.Contains(r.stderr, "/proc/self/environ is outside the project directory") {
		t.Errorf("exit %d; want the Dockerfile path refused", r.code)
	}
	if strings.Contains(r.output(), sentinel) {
		t.Errorf("the output holds the environment's content")
	}
}

// TestOperatorSettingsWin: x-deployer cannot choose the host, vouch for its
// key or send the build somewhere; where it disagrees with the operator's
// flags the deploy stops before it connects.
func TestOperatorSettingsWin(t *testing.T) {
	known := filepath.Join(t.TempDir(), "known_hosts")
	writeFiles(t, filepath.Dir(known), map[string]string{"known_hosts": "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZ1yW5oJ2KjBNpBv6FOtnJ3Qn7yBQUQlW6Kk8Yb2c5N\n"})
	const svc = "services:\n  api:\n    image: app\n"
	for _, tc := range []struct {
		name, settings string
		args           []string
		want           string
	}{
		{"HostsFromTheFile", "  hosts: [deploy@192.0.2.66]\n", nil,
			"x-deployer.hosts in the Compose file says deploy@192.0.2.66, but only --host chooses that"},
		{"HostsDiffer", "  hosts: [deploy@192.0.2.66]\n", []string{"--host", "deploy@127.0.0.1:1", "--known-hosts", known},
			"but --host says deploy@127.0.0.1:1"},
		{"FingerprintFromTheFile", "  host-fingerprint: SHA256:" + strings.Repeat("B", 43) + "\n", []string{"--host", "deploy@127.0.0.1:1", "--known-hosts", known},
			"x-deployer.host-fingerprint in the Compose file says SHA256:"},
		{"BuilderAddressFromTheFile", "  builder: tcp://192.0.2.66:1234\n", []string{"--host", "deploy@127.0.0.1:1", "--known-hosts", known},
			"only --builder chooses a builder by address"},
		{"PlaintextBuilder", "", []string{"--host", "deploy@127.0.0.1:1", "--known-hosts", known, "--builder", "tcp://127.0.0.1:1234"},
			"builder tcp://127.0.0.1:1234 is plaintext TCP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			compose := svc
			if tc.settings != "" {
				compose += "x-deployer:\n" + tc.settings
			}
			writeFiles(t, dir, map[string]string{"compose.yaml": compose})
			r := runBinary(t, dir, nil, append([]string{"deploy", "-f", "compose.yaml"}, tc.args...)...)
			if r.code != exitConfig || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, want %d and an error saying %q", r.code, exitConfig, tc.want)
			}
			if strings.Contains(r.output(), "connect to") {
				t.Errorf("it connected")
			}
		})
	}
}

// TestHostileFilesAreBounded checks projects built to exhaust a parser: a
// Caddyfile of four million braces, one nested a hundred deep, and a
// Compose file of 20,000 YAML aliases. Each gives a finding or an error
// that says why, without a crash or a memory blow-up.
func TestHostileFilesAreBounded(t *testing.T) {
	caddy := "services:\n  proxy:\n    image: caddy:2.8\n    volumes: [\"./Caddyfile:/etc/caddy/Caddyfile:ro\"]\n"
	var aliases strings.Builder
	aliases.WriteString("x-a: &a v\nservices:\n  api:\n    image: app\n    labels:\n")
	for i := range 20_000 {
		fmt.Fprintf(&aliases, "      l%d: *a\n", i)
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		code  int
		want  string
	}{
		{"BraceBomb", map[string]string{"compose.yaml": caddy, "Caddyfile": strings.Repeat("{\n", 4<<20)}, exitFindings, "over the limit of"},
		{"DeepCaddyfile", map[string]string{"compose.yaml": caddy, "Caddyfile": strings.Repeat("a {\n", 100) + strings.Repeat("}\n", 100)}, exitFindings, "blocks nested more than 32 deep"},
		{"AliasBomb", map[string]string{"compose.yaml": aliases.String()}, exitConfig, "the file uses 1001 YAML aliases, more than the 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			r := runBinary(t, dir, nil, "check", "-f", "compose.yaml")
			if r.code != tc.code || !strings.Contains(r.output(), tc.want) {
				t.Errorf("exit %d, want %d with %q", r.code, tc.code, tc.want)
			}
			if r.maxRSS > maxMemory {
				t.Errorf("peak memory %d MiB, want under %d MiB", r.maxRSS>>20, maxMemory>>20)
			}
		})
	}
}

// TestIncludedAndIndirectFilesStayInside: files the loader reads on its
// own (an included project's .env, includes named through YAML aliases,
// pre_start hooks' env files, label files) and an env file the workflow
// names that the checkout made a link: each is refused by name before it
// is read, and its content never shows.
func TestIncludedAndIndirectFilesStayInside(t *testing.T) {
	outside := t.TempDir()
	writeFiles(t, outside, map[string]string{
		"outside.env":  "LEAK=" + sentinel + "\n",
		"compose.yaml": "services:\n  leak:\n    image: app\n    environment:\n      L: " + sentinel + "\n",
	})
	const api = "services:\n  api:\n    image: app\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		links map[string]string // link → target
		env   []string          // the runner's, for the Action
		want  string
	}{
		{name: "IncludedProjectsEnv",
			files: map[string]string{"compose.yaml": "include: [sub/compose.yaml]\n" + api, "sub/compose.yaml": "services:\n  s:\n    image: app\n    environment:\n      X: ${LEAK:-}\n"},
			links: map[string]string{"sub/.env": filepath.Join(outside, "outside.env")}, want: "sub/.env is a symbolic link to"},
		{name: "IncludeThroughAnAlias",
			files: map[string]string{"compose.yaml": "x-inc: &inc " + filepath.Join(outside, "compose.yaml") + "\ninclude: [*inc]\n" + api},
			want:  "is outside the project directory"},
		{name: "IncludeThroughAMergeKey",
			files: map[string]string{"compose.yaml": "x-inc: &inc {path: " + filepath.Join(outside, "compose.yaml") + "}\ninclude:\n  - <<: *inc\n" + api},
			want:  "is outside the project directory"},
		{name: "PreStartEnvFile",
			files: map[string]string{"compose.yaml": api + "    pre_start:\n      - command: [\"true\"]\n        env_file: [" + filepath.Join(outside, "outside.env") + "]\n"},
			want:  "is outside the project directory"},
		{name: "LabelFileDevice",
			files: map[string]string{"compose.yaml": api + "    label_file: ./labels\n"},
			links: map[string]string{"labels": "/dev/zero"}, want: "labels is a symbolic link to /dev/zero"},
		{name: "GitConfig",
			files: map[string]string{"compose.yaml": api + "configs:\n  c:\n    file: .git/config\n", ".git/config": "[http]\n\textraheader = AUTHORIZATION: basic " + sentinel + "\n"},
			want:  "repository's .git directory"},
		{name: "WorkflowEnvFileLink",
			files: map[string]string{"compose.yaml": api},
			links: map[string]string{"prod.env": filepath.Join(outside, "outside.env")},
			env:   []string{"GITHUB_ACTIONS=true", "INPUT_COMMAND=check", "INPUT_ENV-FILES=prod.env"}, want: "prod.env is a symbolic link to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			for link, target := range tc.links {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, link)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
					t.Fatal(err)
				}
			}
			args := []string{"check", "-f", "compose.yaml"}
			if tc.env != nil {
				args = []string{"action"}
			}
			r := runBinary(t, dir, tc.env, args...)
			if r.code != exitConfig || !strings.Contains(r.output(), tc.want) {
				t.Errorf("exit %d, want %d with %q", r.code, exitConfig, tc.want)
			}
			if strings.Contains(r.output(), sentinel) {
				t.Errorf("the output shows what lies outside the project")
			}
			if r.maxRSS > maxMemory {
				t.Errorf("peak memory %d MiB, want under %d MiB", r.maxRSS>>20, maxMemory>>20)
			}
		})
	}
}
