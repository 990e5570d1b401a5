package compose_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/deployer/compose"
	"github.com/semalink/deploy-action/deployer/compose/composetest"
	"github.com/semalink/deploy-action/deployer/remote"
)

func TestMain(m *testing.M) { composetest.Main(m) }

// fakeRunner answers commands from a function and records them.
type fakeRunner struct {
	run  func(args []string, c remote.Cmd) error
	seen [][]string
}

func (f *fakeRunner) Run(_ context.Context, c remote.Cmd) error {
	f.seen = append(f.seen, c.Args)
	if f.run == nil {
		return nil
	}
	return f.run(c.Args, c)
}

// exitErr is a non-zero exit as a remote.Host reports it.
func exitErr(code int) error { return &remote.ExitError{Code: code} }

func TestArgs(t *testing.T) {
	base := compose.CLI{
		Project: "shop",
		Dir:     "/srv/deployer/shop/releases/r1",
		Files:   []string{"/srv/deployer/shop/releases/r1/compose.yaml", "override.yaml"},
		EnvFile: "/srv/deployer/shop/releases/r1/.env",
	}
	project := []string{"-p", "shop", "--project-directory", "/srv/deployer/shop/releases/r1",
		"-f", "/srv/deployer/shop/releases/r1/compose.yaml", "-f", "override.yaml",
		"--env-file", "/srv/deployer/shop/releases/r1/.env"}
	v2 := func(c compose.CLI) compose.CLI {
		c.Command, c.Version = []string{"docker", "compose"}, "2.40.3"
		return c
	}
	v1 := func(c compose.CLI) compose.CLI { c.Command, c.Version = []string{"docker-compose"}, "1.29.2"; return c }
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }

	tests := []struct {
		name string
		cli  compose.CLI
		call func(context.Context, compose.CLI) error
		want []string
	}{
		{"up v2", v2(base), func(ctx context.Context, c compose.CLI) error { return c.Up(ctx) },
			cat([]string{"docker", "compose"}, project, []string{"up", "-d", "--remove-orphans", "--no-build", "--pull", "never"})},
		{"up v2 services", v2(base), func(ctx context.Context, c compose.CLI) error { return c.Up(ctx, "api", "web") },
			cat([]string{"docker", "compose"}, project, []string{"up", "-d", "--remove-orphans", "--no-build", "--pull", "never", "api", "web"})},
		{"up v1", v1(base), func(ctx context.Context, c compose.CLI) error { return c.Up(ctx) },
			cat([]string{"docker-compose"}, project, []string{"up", "-d", "--remove-orphans", "--no-build"})},
		{"up v1 undetected", compose.CLI{Command: []string{"/usr/bin/docker-compose"}, Project: "p"}, func(ctx context.Context, c compose.CLI) error { return c.Up(ctx) },
			[]string{"/usr/bin/docker-compose", "-p", "p", "up", "-d", "--remove-orphans", "--no-build"}},
		{"up default command", compose.CLI{Project: "p"}, func(ctx context.Context, c compose.CLI) error { return c.Up(ctx) },
			[]string{"docker", "compose", "-p", "p", "up", "-d", "--remove-orphans", "--no-build", "--pull", "never"}},
		{"run v2", v2(base), func(ctx context.Context, c compose.CLI) error { return c.RunOnce(ctx, "migrate", nil, nil) },
			cat([]string{"docker", "compose"}, project, []string{"run", "--rm", "-T", "--label", "io.semalink.deployer.run=1", "--pull", "never", "migrate"})},
		{"run v1", v1(base), func(ctx context.Context, c compose.CLI) error { return c.RunOnce(ctx, "migrate", nil, nil) },
			cat([]string{"docker-compose"}, project, []string{"run", "--rm", "-T", "--label", "io.semalink.deployer.run=1", "migrate"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &fakeRunner{}
			tt.cli.Runner = r
			if err := tt.call(t.Context(), tt.cli); err != nil {
				t.Fatal(err)
			}
			if len(r.seen) != 1 || !slices.Equal(r.seen[0], tt.want) {
				t.Errorf("ran %q\nwant %q", r.seen, tt.want)
			}
		})
	}
}

func TestErrorNamesSubcommandAndStderr(t *testing.T) {
	r := &fakeRunner{run: func(_ []string, c remote.Cmd) error {
		for i := range 15 {
			fmt.Fprintf(c.Stderr, "line %d\n", i)
		}
		fmt.Fprint(c.Stderr, " Container p-api-1  Started\r\n") // progress, left out
		fmt.Fprint(c.Stderr, "service \"api\" refers to undefined volume data: invalid compose project")
		return exitErr(15)
	}}
	c := compose.CLI{Runner: r, Command: []string{"docker", "compose"}, Project: "p"}
	err := c.Up(t.Context())
	var ce *compose.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T %v, want *compose.Error", err, err)
	}
	if ce.ExitCode != 15 || ce.Command != "docker compose up" {
		t.Errorf("command %q exit %d, want docker compose up, 15", ce.Command, ce.ExitCode)
	}
	if len(ce.Stderr) != 10 || ce.Stderr[0] != "line 6" || !strings.Contains(ce.Stderr[9], "undefined volume") {
		t.Errorf("stderr tail %q", ce.Stderr)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "docker compose up: exit code 15:\n\tline 6\n") {
		t.Errorf("message %q", msg)
	}
	if !errors.As(err, new(*remote.ExitError)) {
		t.Error("the runner's error does not unwrap")
	}
}

func TestDetect(t *testing.T) {
	notACommand := func(c remote.Cmd) error {
		fmt.Fprintln(c.Stderr, "docker: 'compose' is not a docker command.")
		return exitErr(1)
	}
	notFound := func(c remote.Cmd) error {
		fmt.Fprintln(c.Stderr, "bash: line 1: docker-compose: command not found")
		return exitErr(127)
	}
	tests := []struct {
		name        string
		v2, v1      func(remote.Cmd) error
		wantCommand []string
		wantVersion string
		wantWarning string
		wantErr     string
	}{
		{
			name:        "v2 plugin",
			v2:          func(c remote.Cmd) error { fmt.Fprintln(c.Stdout, "2.40.3"); return nil },
			wantCommand: []string{"docker", "compose"}, wantVersion: "2.40.3",
		},
		{
			name:        "v1 fallback",
			v2:          notACommand,
			v1:          func(c remote.Cmd) error { fmt.Fprintln(c.Stdout, "1.29.2"); return nil },
			wantCommand: []string{"docker-compose"}, wantVersion: "1.29.2",
			wantWarning: "install the Compose plugin",
		},
		{
			name:        "standalone v2",
			v2:          notACommand,
			v1:          func(c remote.Cmd) error { fmt.Fprintln(c.Stdout, "v2.27.0"); return nil },
			wantCommand: []string{"docker-compose"}, wantVersion: "2.27.0",
		},
		{
			name: "neither",
			v2:   notACommand,
			v1:   notFound,
			wantErr: "neither `docker compose` nor `docker-compose` runs on the host (docker compose version: exit code 1: docker: 'compose' is not a docker command.; " +
				"docker-compose version: exit code 127: bash: line 1: docker-compose: command not found); install the Compose plugin",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &fakeRunner{run: func(args []string, c remote.Cmd) error {
				switch {
				case slices.Equal(args, []string{"docker", "compose", "version", "--short"}):
					return tt.v2(c)
				case slices.Equal(args, []string{"docker-compose", "version", "--short"}):
					return tt.v1(c)
				}
				return fmt.Errorf("unexpected command %q", args)
			}}
			command, version, warning, err := compose.Detect(t.Context(), r)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(command, tt.wantCommand) || version != tt.wantVersion {
				t.Errorf("got %q %q, want %q %q", command, version, tt.wantCommand, tt.wantVersion)
			}
			if (tt.wantWarning == "") != (warning == "") || !strings.Contains(warning, tt.wantWarning) {
				t.Errorf("warning %q, want one containing %q", warning, tt.wantWarning)
			}
		})
	}
}

func TestDetectFindsV2(t *testing.T) {
	composetest.Need(t)
	command, version, warning, err := compose.Detect(t.Context(), remote.Local{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(command, []string{"docker", "compose"}) || !strings.HasPrefix(version, "2.") || warning != "" {
		t.Errorf("got %q %q %q, want docker compose 2.x without a warning", command, version, warning)
	}
	t.Logf("found %s %s", strings.Join(command, " "), version)
}

const migrateProject = `
services:
  api:
    image: ${IMAGE}
    healthcheck:
      disable: true
  migrate:
    image: ${IMAGE}
    command: ["migrate"]
    profiles: ["migrate"]
    environment:
      FAIL_MIGRATION: ${FAIL_MIGRATION:-0}
`

func TestRunOnce(t *testing.T) {
	c := composetest.Project(t, migrateProject)

	var stdout, stderr bytes.Buffer
	if err := c.RunOnce(t.Context(), "migrate", &stdout, &stderr); err != nil {
		t.Fatalf("migrate: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "migrate: up to date") {
		t.Errorf("stdout %q", stdout.String())
	}
	if n := len(containers(t, c.Project, "migrate")); n != 0 {
		t.Errorf("%d migrate containers left behind, want 0 (--rm)", n)
	}
}

func TestRunOnceFailingMigration(t *testing.T) {
	c := composetest.Project(t, migrateProject)
	t.Setenv("FAIL_MIGRATION", "1")

	var stdout, stderr bytes.Buffer
	err := c.RunOnce(t.Context(), "migrate", &stdout, &stderr)
	var ce *compose.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T %v, want *compose.Error", err, err)
	}
	t.Logf("error: %v", err)
	if ce.ExitCode != 1 {
		t.Errorf("exit code %d, want 1", ce.ExitCode)
	}
	if !strings.Contains(err.Error(), "docker compose run migrate: exit code 1") ||
		!strings.Contains(err.Error(), "migration 0002_add_orders failed on purpose") {
		t.Errorf("error %q does not name the command, its exit code and its last stderr line", err)
	}
	if !strings.Contains(stdout.String(), "applying migrations") {
		t.Errorf("the migration's stdout did not stream through: %q", stdout.String())
	}
	if !strings.Contains(stderr.String(), "failed on purpose") {
		t.Errorf("the migration's stderr did not stream through: %q", stderr.String())
	}
}

func TestRunOnceCancelled(t *testing.T) {
	c := composetest.Project(t, migrateProject)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := c.RunOnce(ctx, "migrate", nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

func TestUp(t *testing.T) {
	c := composetest.Project(t, migrateProject)
	ctx := t.Context()
	if err := c.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if got := containers(t, c.Project, ""); !slices.Equal(states(got), []string{"api running"}) {
		t.Errorf("after up: %q, want only api running (migrate is in a profile)", states(got))
	}

	c.Files = append(c.Files, "missing.yaml")
	err := c.Up(ctx)
	var ce *compose.Error
	if !errors.As(err, &ce) || ce.ExitCode == 0 || !strings.Contains(err.Error(), "docker compose up: exit code") ||
		!strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("up with a missing file: %v", err)
	}
}

// TestRunDependencies pins down what compose v2 does around `run`, which
// the migration gate relies on.
func TestRunDependencies(t *testing.T) {
	c := composetest.Project(t, `
services:
  db:
    image: ${IMAGE}
    healthcheck:
      disable: true
    environment:
      GENERATION: ${GENERATION:-1}
  migrate:
    image: ${IMAGE}
    command: ["migrate"]
    profiles: ["migrate"]
    depends_on: [db]
`)
	ctx := t.Context()

	// A profiled service runs when named; its dependency starts first.
	if err := c.RunOnce(ctx, "migrate", nil, nil); err != nil {
		t.Fatal(err)
	}
	first := containers(t, c.Project, "db")
	if len(first) != 1 || first[0].state != "running" {
		t.Fatalf("db after run: %q, want one running", states(first))
	}

	// Unchanged, the dependency is left alone.
	if err := c.RunOnce(ctx, "migrate", nil, nil); err != nil {
		t.Fatal(err)
	}
	if again := containers(t, c.Project, "db"); len(again) != 1 || again[0].id != first[0].id {
		t.Errorf("db after a second run: %q, want the same container %s", states(again), first[0].id)
	}

	// Changed, the dependency is recreated by run, before up.
	t.Setenv("GENERATION", "2")
	if err := c.RunOnce(ctx, "migrate", nil, nil); err != nil {
		t.Fatal(err)
	}
	if changed := containers(t, c.Project, "db"); len(changed) != 1 || changed[0].id == first[0].id {
		t.Errorf("db after a run with changed config: %q, want a new container", states(changed))
	}
}

type ctr struct{ id, service, state string }

// containers lists a project's service containers (not one-off runs).
func containers(t *testing.T, project, service string) []ctr {
	t.Helper()
	args := []string{"ps", "-a", "--filter", "label=com.docker.compose.project=" + project,
		"--filter", "label=com.docker.compose.oneoff=False",
		"--format", `{{.ID}} {{.Label "com.docker.compose.service"}} {{.State}}`}
	if service != "" {
		args = append(args, "--filter", "label=com.docker.compose.service="+service)
	}
	out, err := exec.CommandContext(t.Context(), "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker ps: %v: %s", err, out)
	}
	var cs []ctr
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) == 3 {
			cs = append(cs, ctr{f[0], f[1], f[2]})
		}
	}
	return cs
}

func states(cs []ctr) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.service+" "+c.state)
	}
	slices.Sort(out)
	return out
}
