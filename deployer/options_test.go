package deployer

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semalink/deploy-action/checks/project"
	"golang.org/x/crypto/ssh"
)

// writeProject writes a small Compose project with the given x-deployer
// block and returns the options that load it.
func writeProject(t *testing.T, xDeployer string) project.Options {
	t.Helper()
	dir := t.TempDir()
	compose := "name: shop\n" + xDeployer + `
services:
  api:
    image: api:1
  migrate:
    image: api:1
    command: ["migrate"]
`
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	return project.Options{Files: []string{filepath.Join(dir, "compose.yaml")}, WorkingDir: dir, Env: []string{}}
}

func TestNewPlanMergesSettings(t *testing.T) {
	load := writeProject(t, "x-deployer:\n  migrate: migrate\n  keep: 9\n  health-timeout: 45s\n  builder: local\n")
	plan, err := NewPlan(t.Context(), Options{Load: load, Local: true, Commit: "abc", Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Name != "shop" || plan.Migrate != "migrate" || plan.Keep != 9 || plan.HealthTimeout != 45*time.Second || plan.Builder != BuilderLocal {
		t.Errorf("plan %+v: want the file's name, migrate, keep, health timeout and builder", plan)
	}
	// The operator's options win.
	plan, err = NewPlan(t.Context(), Options{Load: load, Local: true, Name: "other", Keep: 2, HealthTimeout: time.Minute, Builder: BuilderLocal})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Name != "other" || plan.Keep != 2 || plan.HealthTimeout != time.Minute {
		t.Errorf("plan %+v: want the options over the file", plan)
	}
}

func TestNewPlanErrorsAreConfigErrors(t *testing.T) {
	good := writeProject(t, "")
	broken := good
	broken.Files = []string{filepath.Join(t.TempDir(), "missing.yaml")}
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"load", Options{Load: broken, Local: true}, "load the Compose project"},
		{"no host", Options{Load: good}, "no host"},
		{"both", Options{Load: good, Local: true, Hosts: []string{"h"}}, "exclude each other"},
		{"unverified", Options{Load: good, Hosts: []string{"h"}}, "cannot be verified"},
		{"migrate", Options{Load: good, Local: true, Migrate: "nope"}, `migrate service "nope"`},
		{"name", Options{Load: good, Local: true, Name: "Bad Name"}, "project name"},
		{"key", Options{Load: good, Hosts: []string{"h"}, Fingerprint: "SHA256:x", SSHKey: "options_test.go"}, "parse SSH key options_test.go"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPlan(t.Context(), tc.o)
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) || ExitCode(err) != ExitConfig {
				t.Errorf("NewPlan = %v, want a *ConfigError saying %q", err, tc.want)
			}
		})
	}
}

func TestHostsFromOptions(t *testing.T) {
	pass := func() ([]byte, error) { return []byte("p"), nil }
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("p"))
	if err != nil {
		t.Fatal(err)
	}
	k := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(k, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Options{Hosts: []string{"deploy@203.0.113.7:2222", "203.0.113.8"}, SSHKey: k, Fingerprint: "SHA256:x", Passphrase: pass}
	cfgs, err := o.hosts(project.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s@%s %s@%s", cfgs[0].User, cfgs[0].Addr, cfgs[1].User, cfgs[1].Addr)
	if got != "deploy@203.0.113.7:2222 root@203.0.113.8" {
		t.Errorf("hosts %s", got)
	}
	for _, c := range cfgs {
		if c.KeyFile != k || c.Fingerprint != "SHA256:x" || c.Passphrase == nil {
			t.Errorf("config %+v lacks the key, fingerprint or passphrase", c)
		}
	}
}

// TestFileSettingsNeverChoose: x-deployer may only repeat what the
// operator says about hosts, host keys and an addressed builder.
func TestFileSettingsNeverChoose(t *testing.T) {
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	base := Options{Hosts: []string{"a", "b"}, KnownHosts: kh}
	for _, tc := range []struct {
		name string
		o    Options
		s    project.Settings
		want string // "" for no error
	}{
		{"same hosts", base, project.Settings{Hosts: []string{"b", "a"}}, ""},
		{"other hosts", base, project.Settings{Hosts: []string{"evil"}}, "x-deployer.hosts"},
		{"hosts only in the file", Options{KnownHosts: kh}, project.Settings{Hosts: []string{"a"}}, "only --host chooses"},
		{"fingerprint only in the file", base, project.Settings{HostFingerprint: "SHA256:evil"}, "x-deployer.host-fingerprint"},
		{"same known hosts", base, project.Settings{KnownHosts: kh}, ""},
		{"other known hosts", base, project.Settings{KnownHosts: "/etc/ssh/ssh_known_hosts"}, "x-deployer.known-hosts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.o.hosts(tc.s)
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("hosts = %v, want %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name          string
		flag, file    string
		insecure      bool
		want, wantErr string
	}{
		{"default", "", "", false, "", ""},
		{"file says local", "", "local", false, "local", ""},
		{"file names an address", "", "tcp://evil:1234", false, "", "only --builder chooses"},
		{"flags disagree", "host", "local", false, "", "must agree"},
		{"plaintext", "tcp://10.0.0.2:1234", "", false, "", "plaintext TCP"},
		{"plaintext allowed", "tcp://10.0.0.2:1234", "", true, "tcp://10.0.0.2:1234", ""},
		{"unix", "unix:///run/buildkit.sock", "unix:///run/buildkit.sock", false, "unix:///run/buildkit.sock", ""},
	} {
		t.Run("builder "+tc.name, func(t *testing.T) {
			got, err := Options{Builder: tc.flag, InsecureBuilder: tc.insecure}.builder(project.Settings{Builder: tc.file})
			if got != tc.want || (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("builder = %q, %v; want %q, %q", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{fmt.Errorf("host: %w", &CheckFailed{}), ExitFindings},
		{&ConfigError{Err: errors.New("bad")}, ExitConfig},
		{errors.New("unhealthy"), ExitFailed},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestNewHostPlan(t *testing.T) {
	// With a name and no files, no Compose file is read.
	plan, err := NewHostPlan(t.Context(), Options{Name: "shop", Local: true, Load: project.Options{WorkingDir: t.TempDir()}})
	if err != nil || plan.Name != "shop" || !plan.Local || plan.Trigger != "cli" {
		t.Errorf("NewHostPlan = %+v, %v", plan, err)
	}
	plan, err = NewHostPlan(t.Context(), Options{Load: writeProject(t, ""), Local: true})
	if err != nil || plan.Name != "shop" {
		t.Errorf("NewHostPlan from the file = %+v, %v", plan, err)
	}
	if _, err := NewHostPlan(t.Context(), Options{Name: "shop"}); ExitCode(err) != ExitConfig {
		t.Errorf("NewHostPlan with no host = %v, want a config error", err)
	}
}

// The front door's default builder yields to the operator's and to the
// file's choice between host and local.
func TestDefaultBuilder(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		file string
		want string
	}{
		{Options{DefaultBuilder: BuilderLocal}, "", BuilderLocal},
		{Options{DefaultBuilder: BuilderLocal}, BuilderHost, BuilderHost},
		{Options{DefaultBuilder: BuilderLocal, Builder: BuilderHost}, "", BuilderHost},
		{Options{}, "", ""},
	} {
		if got, err := tc.o.builder(project.Settings{Builder: tc.file}); err != nil || got != tc.want {
			t.Errorf("default %q, operator %q, file %q: %q (%v), want %q", tc.o.DefaultBuilder, tc.o.Builder, tc.file, got, err, tc.want)
		}
	}
}
