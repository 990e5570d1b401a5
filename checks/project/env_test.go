package project

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestSecretKey(t *testing.T) {
	for _, name := range []string{"PGPASSWORD", "MYSQL_PWD", "SECRET_KEY_BASE", "RAILS_MASTER_KEY", "STRIPE_KEY",
		"SENTRY_DSN", "SESSION_SALT", "API_TOKEN", "db_password", "GITHUB_APP_PRIVATE_KEY", "AWS_SECRET_ACCESS_KEY"} {
		if !SecretKey.MatchString(name) {
			t.Errorf("%s is not taken for a secret's name", name)
		}
	}
	for _, name := range []string{"PASSENGER", "NODE_ENV", "KEYBOARD_LAYOUT", "RELEASE", "PORT"} {
		if SecretKey.MatchString(name) {
			t.Errorf("%s is taken for a secret's name", name)
		}
	}
}

// TestSecretValues: every value of an env file is a secret, whatever its
// name; in the services' environments, by name and in URLs.
func TestSecretValues(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("compose.yaml", "services:\n  api:\n    image: app\n    environment:\n      PGPASSWORD: literal-pg\n      PASSENGER: fine\n      URL: postgres://u:url-pass@db/x\n")
	write("prod.env", "WHATEVER=value-from-env-file\nRELEASE=v1.2.3\n")
	p, err := Load(t.Context(), Options{Files: []string{filepath.Join(dir, "compose.yaml")}, EnvFiles: []string{filepath.Join(dir, "prod.env")}, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	got := p.SecretValues()
	for _, want := range []string{"value-from-env-file", "v1.2.3", "literal-pg", "url-pass"} {
		if !slices.Contains(got, want) {
			t.Errorf("%q is not among the secrets %q", want, got)
		}
	}
	if slices.Contains(got, "fine") {
		t.Errorf("PASSENGER's value is taken for a secret")
	}
}
