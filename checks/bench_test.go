package checks_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
)

const benchServices = 200

// writeBigProject writes a project of n services into dir: built services
// with multi-stage Dockerfiles, image services, stateful ones, depends_on
// chains, and a Caddy whose Caddyfile routes to every web service. It
// returns the number of services, Caddy included.
func writeBigProject(tb testing.TB, dir string, n int) int {
	tb.Helper()
	var compose, caddy strings.Builder
	compose.WriteString("name: big\n\nx-logging: &logging\n  driver: json-file\n  options:\n    max-size: 10m\n\nservices:\n")
	caddy.WriteString("{\n\temail ops@example.com\n}\n\n(common) {\n\tencode gzip\n\theader -Server\n}\n\n")
	for i := range n {
		name := fmt.Sprintf("svc%03d", i)
		fmt.Fprintf(&compose, "  %s:\n", name)
		switch i % 5 {
		case 0: // built, multi-stage
			ctx := filepath.Join(dir, name)
			if err := os.MkdirAll(ctx, 0o755); err != nil {
				tb.Fatal(err)
			}
			dockerfile := "FROM node:22-alpine AS deps\nWORKDIR /app\nCOPY package*.json ./\nRUN npm ci\n\n" +
				"FROM deps AS build\nCOPY . .\nRUN npm run build\n\n" +
				"FROM node:22-alpine AS runtime\nENV NODE_ENV=production\nWORKDIR /app\nCOPY package*.json ./\nRUN npm ci --omit=dev\n" +
				"COPY --from=build /app/dist ./dist\nHEALTHCHECK CMD wget -qO- http://127.0.0.1:3000/health || exit 1\nCMD [\"node\", \"dist/index.js\"]\n"
			if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
				tb.Fatal(err)
			}
			fmt.Fprintf(&compose, "    build:\n      context: ./%s\n      target: runtime\n    restart: unless-stopped\n    mem_limit: 256m\n    logging: *logging\n", name)
		case 1: // image, healthcheck, waits for the one before
			fmt.Fprintf(&compose, "    image: node:22.12-alpine\n    command: [\"node\", \"server.js\"]\n    restart: unless-stopped\n"+
				"    healthcheck:\n      test: [\"CMD\", \"wget\", \"-qO-\", \"http://localhost:3000/health\"]\n"+
				"    depends_on:\n      svc%03d:\n        condition: service_healthy\n", i-1)
		case 2: // stateful
			img, dir := [...]string{"postgres:16.4", "redis:7.4", "rabbitmq:3.13-management-alpine"}[i%3], [...]string{"/var/lib/postgresql/data", "/data", "/var/lib/rabbitmq"}[i%3]
			fmt.Fprintf(&compose, "    image: %s\n    restart: unless-stopped\n    command: [\"--appendonly\", \"yes\"]\n    volumes:\n      - %s_data:%s\n"+
				"    environment:\n      POSTGRES_PASSWORD: ${DB_PASSWORD:-x}\n    deploy:\n      resources:\n        limits:\n          memory: 512m\n", img, name, dir)
		case 3: // a worker in a depends_on chain, migrating at start-up
			fmt.Fprintf(&compose, "    image: node:22.12-alpine\n    command: sh -c \"npx prisma migrate deploy && node worker.js\"\n    restart: on-failure\n"+
				"    depends_on:\n      - svc%03d\n      - svc%03d\n", i-1, i-2)
		case 4: // environment with URLs
			fmt.Fprintf(&compose, "    image: ghcr.io/example/app\n    environment:\n      - DATABASE_URL=postgres://app:${DB_PASSWORD:-x}@ep-a%03d.eu-central-1.aws.neon.tech/db\n"+
				"      - REDIS_URL=rediss://default:${REDIS_PASS:-x}@eu1-x.upstash.io:6379\n      - PORT=3000\n    logging:\n      driver: json-file\n", i)
		}
		if i%5 == 0 || i%5 == 1 || i%5 == 4 {
			fmt.Fprintf(&caddy, "%s.example.com {\n\timport common\n\thandle /api/* {\n\t\treverse_proxy {\n\t\t\tto http://%s:3000\n\t\t\tlb_policy first\n\t\t}\n\t}\n\treverse_proxy %s:3000\n}\n\n", name, name, name)
		}
	}
	compose.WriteString("  caddy:\n    image: caddy:2.8-alpine\n    restart: unless-stopped\n    volumes:\n      - ./Caddyfile:/etc/caddy/Caddyfile:ro\n      - caddy_data:/data\n    depends_on:\n")
	for i := 0; i < n; i += 5 {
		fmt.Fprintf(&compose, "      - svc%03d\n", i)
	}
	compose.WriteString("\nvolumes:\n  caddy_data:\n")
	for i := 2; i < n; i += 5 {
		fmt.Fprintf(&compose, "  svc%03d_data:\n", i)
	}
	for name, data := range map[string]string{"compose.yaml": compose.String(), "Caddyfile": caddy.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return n + 1
}

func loadBig(tb testing.TB, dir string) *project.Project {
	tb.Helper()
	p, err := project.Load(tb.Context(), project.Options{Files: []string{filepath.Join(dir, "compose.yaml")}, Env: []string{}})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestBigProject keeps the benchmark honest: the generated project loads
// whole and the checks find in it what it was written to contain.
func TestBigProject(t *testing.T) {
	dir := t.TempDir()
	n := writeBigProject(t, dir, benchServices)
	p := loadBig(t, dir)
	if len(p.Compose.Services) != n || len(p.Dockerfiles) != benchServices/5 || p.Caddyfiles["caddy"] == nil || len(p.Problems) != 0 {
		t.Fatalf("%d services, %d Dockerfiles, Caddyfile %v, problems %v", len(p.Compose.Services), len(p.Dockerfiles), p.Caddyfiles["caddy"] != nil, p.Problems)
	}
	count := map[string]int{}
	for _, f := range checks.Run(p, checks.Options{Environment: "production", HostMemory: 8 << 30}) {
		count[f.Rule]++
	}
	for rule, want := range map[string]int{
		"healthcheck-localhost":  benchServices / 5, // case 1
		"migration-restart-loop": benchServices / 5, // case 3, on-failure without a count
		"neon-pooler":            benchServices / 5, // case 4
		"redis-eviction":         benchServices / 5,
		"depends-on-not-healthy": benchServices / 5 * 2, // case 3 waits on two with healthchecks; caddy waits on the built ones
		"image-latest":           benchServices / 5,
		"limits-exceed-host":     1,
	} {
		if count[rule] != want {
			t.Errorf("%s: %d findings, want %d (all: %v)", rule, count[rule], want, count)
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	dir := b.TempDir()
	writeBigProject(b, dir, benchServices)
	b.ReportAllocs()
	for b.Loop() {
		loadBig(b, dir)
	}
}

func BenchmarkRun(b *testing.B) {
	dir := b.TempDir()
	n := writeBigProject(b, dir, benchServices)
	p := loadBig(b, dir)
	o := checks.Options{Environment: "production", CloudflareSSL: "strict", HostMemory: 8 << 30}
	b.ReportAllocs()
	for b.Loop() {
		checks.Run(p, o)
	}
	static := 0
	for _, r := range checks.Rules() {
		if r.Static() {
			static++
		}
	}
	perRuleService := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(static*n)
	b.ReportMetric(perRuleService, "ns/rule/service")
}
