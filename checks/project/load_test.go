package project_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/checks/project"
	"github.com/sirupsen/logrus"
)

func TestMain(m *testing.M) {
	// compose-go warns about unset variables on the standard logger; the
	// tests look at the Problems instead.
	logrus.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// load loads testdata/dir from inside it, as docker compose would there,
// with an empty environment.
func load(t *testing.T, dir string, files ...string) *project.Project {
	t.Helper()
	t.Chdir(filepath.Join("testdata", dir))
	p, err := project.Load(t.Context(), project.Options{Files: files, Env: []string{}})
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	return p
}

// loadBytes writes data to compose.yaml in a new directory and loads it.
func loadBytes(t *testing.T, data string) (*project.Project, error) {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("compose.yaml", []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return project.Load(t.Context(), project.Options{Files: []string{"compose.yaml"}, Env: []string{}})
}

func TestLocate(t *testing.T) {
	p := load(t, "locate", "compose.yaml", "override.yaml")
	if got := []string{p.Files[0].Path, p.Files[1].Path}; !slices.Equal(got, []string{"compose.yaml", "override.yaml"}) {
		t.Fatalf("files %v", got)
	}
	tests := []struct {
		path  []string
		pos   string
		value string // the node written there; "" when Locate returns none
		ok    bool
	}{
		{[]string{"services", "api", "image"}, "override.yaml:3:5", "node:22.13-alpine", true},                       // the later file wins
		{[]string{"services", "api", "restart"}, "compose.yaml:2:3", "unless-stopped", true},                         // through a merge key
		{[]string{"services", "api", "logging", "driver"}, "compose.yaml:4:5", "json-file", true},                    //
		{[]string{"services", "api", "environment", "1"}, "compose.yaml:11:9", "PORT=3000", true},                    // a list item
		{[]string{"services", "api", "deploy", "resources", "limits", "memory"}, "override.yaml:7:11", "256m", true}, // only in the override
		{[]string{"services", "web.v2", "ports", "0"}, "compose.yaml:15:9", "80:80", true},                           // a dot in a service name
		{[]string{"services", "api", "healthcheck", "test"}, "override.yaml:2:3", "", true},                          // not written: the service
		{[]string{"services", "web.v2", "healthcheck"}, "compose.yaml:12:3", "", true},                               // only the base has it
		{[]string{"services", "nope"}, "override.yaml:1:1", "", true},                                                // the nearest parent
		{[]string{"x-nothing"}, "compose.yaml", "", false},                                                           // nothing: the first file
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.path, "."), func(t *testing.T) {
			pos, node, ok := p.Locate(tc.path...)
			value := ""
			if node != nil {
				value = node.Value
			}
			if pos.String() != tc.pos || value != tc.value || ok != tc.ok {
				t.Errorf("Locate = %s, %q, %v; want %s, %q, %v", pos, value, ok, tc.pos, tc.value, tc.ok)
			}
		})
	}
	if got := p.ServicePos("api").String(); got != "override.yaml:2:3" {
		t.Errorf("ServicePos(api) = %s, want override.yaml:2:3", got)
	}
	if n := p.Written("services", "api", "image"); n == nil || n.Value != "node:22.13-alpine" {
		t.Errorf("Written(services.api.image) = %v", n)
	}
	if n := p.Written("services", "api", "user"); n != nil {
		t.Errorf("Written(services.api.user) = %q, want nil: it is not written", n.Value)
	}
	// The merged model agrees with what Locate says won.
	if got := p.Compose.Services["api"].Image; got != "node:22.13-alpine" {
		t.Errorf("merged image %q", got)
	}
}

// TestLocateExtends: keys a service inherits point at the service that
// sets them, through extends in another file, in the same file, and
// chains of both.
func TestLocateExtends(t *testing.T) {
	p := load(t, "extends")
	if len(p.Files) != 2 || p.Files[1].Path != "base/base.yaml" {
		t.Fatalf("files: %v", paths(p))
	}
	tests := []struct {
		path []string
		pos  string
	}{
		{[]string{"services", "api", "image"}, "compose.yaml:6:5"},               // set by api itself
		{[]string{"services", "api", "restart"}, "base/base.yaml:9:5"},           // from node
		{[]string{"services", "api", "logging", "driver"}, "base/base.yaml:4:7"}, // from root, which node extends
		{[]string{"services", "worker", "command"}, "compose.yaml:9:5"},
		{[]string{"services", "worker", "image"}, "compose.yaml:6:5"},               // extends: api, in the same file
		{[]string{"services", "worker", "logging", "driver"}, "base/base.yaml:4:7"}, // worker → api → node → root
		{[]string{"services", "worker", "healthcheck"}, "compose.yaml:7:3"},         // set nowhere: the service
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.path, "."), func(t *testing.T) {
			if pos, _, _ := p.Locate(tc.path...); pos.String() != tc.pos {
				t.Errorf("Locate = %s, want %s", pos, tc.pos)
			}
		})
	}
	if got := p.Compose.Services["worker"].Restart; got != "unless-stopped" {
		t.Errorf("worker restart %q: the fixture does not extend as intended", got)
	}
}

func TestInlineIgnores(t *testing.T) {
	p := load(t, "ignores")
	got := p.Files[0].Ignores
	want := []project.Ignore{
		{Rule: "restart-missing", Reason: "a cache may stay down", Pos: project.Position{File: "compose.yaml", Line: 2, Column: 12}},
		{Rule: "image-latest", Reason: "", Pos: project.Position{File: "compose.yaml", Line: 3, Column: 20}},
		{Rule: "limits-missing", Reason: "sized   by hand", Pos: project.Position{File: "compose.yaml", Line: 4, Column: 6}},
		{Rule: "", Reason: "", Pos: project.Position{File: "compose.yaml", Line: 6, Column: 7}},
		// Not an ID followed by a space: read as a reason without a rule,
		// which the checks report as an invalid suppression.
		{Rule: "", Reason: "image-latest: the colon is not part of an ID", Pos: project.Position{File: "compose.yaml", Line: 8, Column: 7}},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ignores:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestLoadFiles(t *testing.T) {
	p := load(t, "files")
	d := p.Dockerfiles["api"]
	if d == nil || d.Path != "api/Dockerfile" || len(d.Stages) != 2 {
		t.Fatalf("api Dockerfile: %+v", d)
	}
	if st := d.Stage(p.Compose.Services["api"].Build.Target); st == nil || st.Name != "runtime" || st.Line != 4 {
		t.Errorf("target stage %+v", st)
	}
	if d := p.Dockerfiles["inline"]; d == nil || d.Path != "Dockerfile (inline)" || d.Stages[0].Base != "alpine:3.20" {
		t.Errorf("inline Dockerfile: %+v", d)
	}
	if d, ok := p.Dockerfiles["remote"]; ok {
		t.Errorf("remote context read: %+v", d)
	}
	c := p.Caddyfiles["proxy"]
	if c == nil || c.Path != "conf/Caddyfile" || len(c.Directives) != 1 || c.Directives[0].Block[0].Name != "reverse_proxy" {
		t.Fatalf("proxy Caddyfile: %+v", c)
	}
	if len(p.Problems) != 0 {
		t.Errorf("problems: %+v", p.Problems)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		compose string
		pos     string // the error's position
		msg     string // in the message
		fix     string // in the fix
	}{
		{"yaml", "services:\n  api:\n    image: a\n   bad: indent\n", "compose.yaml:3", "did not find expected key", "YAML syntax"},
		{"schema", "services:\n  api:\n    image: node:22\n    ports: \"80\"\n", "compose.yaml:4:5", "services.api.ports must be a array", "Compose specification"},
		{"required variable", "services:\n  api:\n    image: ${TAG:?set TAG}\n", "compose.yaml:3:5", "required variable TAG", "--env-file"},
		{"x-deployer key", "x-deployer:\n  enviroment: production\nservices:\n  api:\n    image: a:1\n", "compose.yaml:1:1", `unknown field "enviroment"`, "docs/checks.md#settings"},
		{"x-deployer environment", "x-deployer:\n  environment: prod\nservices:\n  api:\n    image: a:1\n", "compose.yaml:1:1", `"prod" is not one of staging, production`, "x-deployer"},
		{"x-deployer cloudflare", "x-deployer:\n  cloudflare-ssl: yes-please\nservices:\n  api:\n    image: a:1\n", "compose.yaml:1:1", "cloudflare-ssl", "x-deployer"},
		{"x-deployer memory", "x-deployer:\n  host-memory: lots\nservices:\n  api:\n    image: a:1\n", "compose.yaml:1:1", `"lots" is not a size`, "x-deployer"},
		{"empty", "", "", "empty compose file", "Compose specification"},
		// compose-go v2.16.2 panics on these (found by FuzzLoad).
		{"config target empty", "services:\n  api:\n    image: a:1\n    configs:\n      - source: app\n        target:\nconfigs:\n  app:\n    file: ./app.conf\n", "", "target: with no path", "Compose specification"},
		{"secret target number", "services:\n  api:\n    image: a:1\n    secrets:\n      - source: app\n        target: 42\nsecrets:\n  app:\n    file: ./app.conf\n", "", "the Compose loader failed", "Compose specification"},
		{"alias bomb", aliasBomb(9), "", "excessive aliasing", "Compose specification"}, // 9^9 paths if each alias were indexed
		{"include missing", "include:\n  - missing.yaml\nservices:\n  api:\n    image: a:1\n", "", "no such file or directory", "check the path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := loadBytes(t, tc.compose)
			var le *project.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Load = %v, %v; want a *LoadError", p, err)
			}
			if le.Pos.String() != tc.pos || !strings.Contains(le.Err.Error(), tc.msg) || !strings.Contains(le.Fix, tc.fix) {
				t.Errorf("LoadError at %q: %v\nfix: %s\nwant at %q: ...%s...\nfix: ...%s...", le.Pos, le.Err, le.Fix, tc.pos, tc.msg, tc.fix)
			}
			prefix := ""
			if tc.pos != "" {
				prefix = tc.pos + ": "
			}
			if !strings.HasPrefix(le.Error(), prefix) || !strings.HasSuffix(le.Error(), "\nfix: "+le.Fix) {
				t.Errorf("Error() = %q", le.Error())
			}
		})
	}
}

func TestLoadOptionErrors(t *testing.T) {
	t.Chdir(t.TempDir())
	tests := []struct {
		name  string
		opts  project.Options
		check func(error) bool
	}{
		{"missing file", project.Options{Files: []string{"nope.yaml"}}, func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
		{"stdin", project.Options{Files: []string{"-"}}, func(err error) bool { return strings.Contains(err.Error(), "standard input") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Env = []string{}
			_, err := project.Load(t.Context(), tc.opts)
			var le *project.LoadError
			if !errors.As(err, &le) || !tc.check(err) || le.Fix == "" {
				t.Errorf("Load = %v", err)
			}
		})
	}
}

// TestLoadWorkingDir: with WorkingDir and no -f, compose.yaml and .env are
// found there, not in the current directory, and paths are shown relative
// to the current directory.
func TestLoadWorkingDir(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.MkdirAll("app", 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, "app/compose.yaml", "services:\n  api:\n    image: node:${TAG}\n    env_file: missing.env\n")
	write(t, "app/.env", "TAG=22.12-alpine\n")
	write(t, ".env", "TAG=wrong\n")
	p, err := project.Load(t.Context(), project.Options{WorkingDir: "app", Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Compose.Services["api"].Image; got != "node:22.12-alpine" {
		t.Errorf("image %q: .env read from the wrong directory", got)
	}
	if len(p.Files) != 1 || p.Files[0].Path != "app/compose.yaml" {
		t.Errorf("files %v", paths(p))
	}
	if len(p.Problems) != 1 || p.Problems[0].Rule != "env-file-missing" || p.Problems[0].Pos.String() != "app/compose.yaml:4:5" ||
		!strings.Contains(p.Problems[0].Message, "app/missing.env does not exist") {
		t.Errorf("problems %+v", p.Problems)
	}
}

func TestLoadEnv(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	write(t, "compose.yaml", "services:\n  api:\n    image: node:${TAG}\n    environment:\n      A: ${FROM_ENV}\n")
	p, err := project.Load(t.Context(), project.Options{Env: []string{"TAG=22", "FROM_ENV=x"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Compose.Services["api"].Image; got != "node:22" {
		t.Errorf("image %q", got)
	}
	if len(p.Problems) != 0 {
		t.Errorf("problems %+v", p.Problems)
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4g", 4 << 30, true},
		{"4G", 4 << 30, true},
		{"4GiB", 4 << 30, true},
		{"4gb", 4 << 30, true},
		{"8 GB", 8 << 30, true},
		{"512m", 512 << 20, true},
		{"1.5g", 3 << 29, true},
		{"64k", 64 << 10, true},
		{"2t", 2 << 40, true},
		{"4096", 4096, true},
		{"4096b", 4096, true},
		{" 1g ", 1 << 30, true},
		{"0", 0, true},
		{"", 0, false},
		{"lots", 0, false},
		{"-1g", 0, false},
		{"1e9", 0, false},
		{"4p", 0, false},
		{"1g1", 0, false},
		{"99999999999t", 0, false}, // would wrap around to a negative size
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := project.ParseBytes(tc.in)
			if got != tc.want || (err == nil) != tc.ok {
				t.Errorf("ParseBytes(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestValidateSettings(t *testing.T) {
	for _, v := range append([]string{""}, project.Environments...) {
		if err := project.ValidateEnvironment(v); err != nil {
			t.Errorf("ValidateEnvironment(%q) = %v", v, err)
		}
	}
	for _, v := range append([]string{""}, project.CloudflareSSLModes...) {
		if err := project.ValidateCloudflareSSL(v); err != nil {
			t.Errorf("ValidateCloudflareSSL(%q) = %v", v, err)
		}
	}
	if err := project.ValidateEnvironment("Production"); err == nil {
		t.Error("ValidateEnvironment(Production) = nil")
	}
	if err := project.ValidateCloudflareSSL("full-strict"); err == nil {
		t.Error("ValidateCloudflareSSL(full-strict) = nil")
	}
}

func TestSettings(t *testing.T) {
	p, err := loadBytes(t, `x-deployer:
  environment: production
  cloudflare-ssl: strict
  host-memory: 4g
  checks:
    ignore:
      - rule: image-latest
        service: cache
        reason: pinned by renovate
services:
  cache:
    image: redis
`)
	if err != nil {
		t.Fatal(err)
	}
	s := p.Settings
	if s.Environment != "production" || s.CloudflareSSL != "strict" || s.HostMemory != "4g" ||
		!slices.Equal(s.Checks.Ignore, []project.Suppression{{Rule: "image-latest", Service: "cache", Reason: "pinned by renovate"}}) {
		t.Errorf("settings %+v", s)
	}
}

func TestPositionString(t *testing.T) {
	tests := []struct {
		pos  project.Position
		want string
	}{
		{project.Position{File: "compose.yaml"}, "compose.yaml"},
		{project.Position{File: "compose.yaml", Line: 3}, "compose.yaml:3"},
		{project.Position{File: "compose.yaml", Line: 3, Column: 5}, "compose.yaml:3:5"},
	}
	for _, tc := range tests {
		if got := tc.pos.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.pos, got, tc.want)
		}
	}
}

// aliasBomb is a Compose file of a few hundred bytes whose aliases, each
// level nine times the one before, expand to 9^levels values.
func aliasBomb(levels int) string {
	var b strings.Builder
	b.WriteString("x-a0: &a0 [x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "x-a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9), ", "))
	}
	fmt.Fprintf(&b, "services:\n  api:\n    image: a:1\n    labels: *a%d\n", levels)
	return b.String()
}

func paths(p *project.Project) []string {
	var out []string
	for _, f := range p.Files {
		out = append(out, f.Path)
	}
	return out
}

func write(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
