package deployer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/checks/project"
)

func TestRender(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("compose.yaml", `name: shop
services:
  migrate:
    image: shop/api:1
    restart: "no"
  api:
    image: shop/api:1
    environment:
      GREETING: "costs $$5"
      TOKEN: ${TOKEN}
    depends_on:
      migrate: {condition: service_completed_successfully}
  proxy:
    image: caddy:2
    volumes:
      - ./Caddyfile:/etc/caddy/Caddyfile:ro
      - /var/run/docker.sock:/var/run/docker.sock
      - data:/data
volumes:
  data:
`)
	write("Caddyfile", ":80 {\n\treverse_proxy api:3000\n}\n")
	p, err := project.Load(t.Context(), project.Options{Files: []string{filepath.Join(dir, "compose.yaml")}, Env: []string{"TOKEN=s3cr$t"}})
	if err != nil {
		t.Fatal(err)
	}
	images := map[string]string{"migrate": "shop-migrate:aaa", "api": "shop-api:aaa", "proxy": "shop-proxy:bbb"}
	b, err := render(p, "shop-staging", "/srv/deployer/shop-staging", images, "migrate")
	if err != nil {
		t.Fatal(err)
	}
	got := string(b.compose)
	for _, want := range []string{
		"name: shop-staging",
		"name: shop-staging_data",      // default volume names follow the project name
		"image: shop-api:aaa",          // pinned
		"pull_policy: never",           //
		"costs $$5",                    // written $$5 for a literal $5: compose on the host reads $5 again
		"s3cr$$t",                      // an interpolated value is not interpolated again
		"- deployer-migrate",           // the migration is out of up
		"source: /var/run/docker.sock", // host paths stay
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered compose lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "service_completed_successfully") {
		t.Errorf("api still waits for the migration service in up:\n%s", got)
	}
	if len(b.files) != 1 {
		t.Fatalf("carried files: %v", b.files)
	}
	for name, data := range b.files {
		if !strings.HasPrefix(name, "files/") || !strings.HasSuffix(name, "/Caddyfile") || !strings.Contains(got, "source: /srv/deployer/shop-staging/"+name) {
			t.Errorf("Caddyfile carried as %s; compose:\n%s", name, got)
		}
		if string(data) != ":80 {\n\treverse_proxy api:3000\n}\n" {
			t.Errorf("carried content %q", data)
		}
	}
	// The same content lands on the same path: an unchanged Caddyfile does
	// not recreate the proxy.
	again, err := render(p, "shop-staging", "/srv/deployer/shop-staging", images, "migrate")
	if err != nil || string(again.compose) != got {
		t.Errorf("rendering twice differs: %v", err)
	}
}
