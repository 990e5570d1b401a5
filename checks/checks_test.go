package checks_test

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
)

// fakeSecret is the only password in the test data. No finding may show it.
const fakeSecret = "not-a-real-password"

const (
	gib = int64(1) << 30
	mib = int64(1) << 20
)

// ruleCase is one directory under testdata/ loaded and checked as one
// project. Its findings of the rules under test must be exactly want.
type ruleCase struct {
	dir   string         // under testdata/: RULE/CASE
	files []string       // -f, relative to dir; empty: compose.yaml found as docker compose does
	opts  checks.Options // flags
	rules []string       // the rules compared; empty: the first element of dir
	want  []string       // "RULE SEVERITY SERVICE FILE:LINE", "-" for no service, " suppressed" when it is
}

var ruleCases = []ruleCase{
	// healthcheck-missing
	{dir: "healthcheck-missing/plain", want: []string{"healthcheck-missing warning api compose.yaml:2"}},
	{dir: "healthcheck-missing/depended", want: []string{ // depends_on in list form counts
		"healthcheck-missing error api compose.yaml:2",
		"healthcheck-missing warning worker compose.yaml:5",
	}},
	{dir: "healthcheck-missing/proxied", want: []string{ // a Caddyfile routing to it counts
		"healthcheck-missing warning caddy compose.yaml:2",
		"healthcheck-missing error api compose.yaml:8",
	}},
	{dir: "healthcheck-missing/in-compose"},
	{dir: "healthcheck-missing/in-dockerfile"},
	{dir: "healthcheck-missing/interval-only"}, // compose sets options only: the Dockerfile's test stays
	{dir: "healthcheck-missing/dockerfile-stages", want: []string{"healthcheck-missing warning bad compose.yaml:7"}},
	{dir: "healthcheck-missing/disabled", want: []string{"healthcheck-missing warning api compose.yaml:2"}},
	{dir: "healthcheck-missing/dockerfile-none", want: []string{"healthcheck-missing warning api compose.yaml:2"}},
	{dir: "healthcheck-missing/jobs"},

	// depends-on-not-healthy
	{dir: "depends-on-not-healthy/proxy-list", want: []string{"depends-on-not-healthy error caddy compose.yaml:5"}},
	{dir: "depends-on-not-healthy/list", want: []string{"depends-on-not-healthy warning web compose.yaml:4"}},
	{dir: "depends-on-not-healthy/started", want: []string{"depends-on-not-healthy warning web compose.yaml:5"}},
	{dir: "depends-on-not-healthy/fine"},

	// healthcheck-localhost
	{dir: "healthcheck-localhost/compose", want: []string{"healthcheck-localhost warning api compose.yaml:5"}},
	{dir: "healthcheck-localhost/dockerfile", want: []string{"healthcheck-localhost warning api Dockerfile:2"}},
	{dir: "healthcheck-localhost/loopback"},

	// start-first-unsafe
	{dir: "start-first-unsafe/unsafe", want: []string{
		"start-first-unsafe error api compose.yaml:4",
		"start-first-unsafe error api compose.yaml:5",
		"start-first-unsafe error api compose.yaml:7",
		"start-first-unsafe error worker compose.yaml:14",  // hostname
		"start-first-unsafe error worker compose.yaml:15",  // ipv4_address
		"start-first-unsafe error sidecar compose.yaml:23", // network_mode
	}},
	{dir: "start-first-unsafe/fine"},

	// proxy-swap-unsafe
	{dir: "proxy-swap-unsafe/unsafe", want: []string{
		"proxy-swap-unsafe warning caddy Caddyfile:2", // no retries
		"proxy-swap-unsafe warning caddy Caddyfile:3", // a fixed address
	}},
	{dir: "proxy-swap-unsafe/fine"},

	// stateful-volume-missing
	{dir: "stateful-volume-missing/rabbitmq", want: []string{"stateful-volume-missing error rabbitmq compose.yaml:2"}},
	{dir: "stateful-volume-missing/mounted"},
	{dir: "stateful-volume-missing/rabbitmq-hostname", want: []string{"stateful-volume-missing error broker compose.yaml:4"}},
	{dir: "stateful-volume-missing/anonymous", want: []string{"stateful-volume-missing error db compose.yaml:4"}},
	{dir: "stateful-volume-missing/pgdata", want: []string{"stateful-volume-missing error elsewhere compose.yaml:8"}},
	{dir: "stateful-volume-missing/redis", want: []string{
		"stateful-volume-missing error store compose.yaml:4",
		"stateful-volume-missing error saved compose.yaml:7",
	}},
	{dir: "stateful-volume-missing/caddy", want: []string{"stateful-volume-missing warning proxy compose.yaml:2"}},
	{dir: "stateful-volume-missing/built", want: []string{"stateful-volume-missing error db compose.yaml:2"}},

	// rabbitmq-password-drift: the deploy supplies what it read from the host.
	{dir: "rabbitmq-password-drift/rotated", opts: checks.Options{Host: &checks.HostFacts{ChangedSecrets: []checks.ChangedSecret{
		{Service: "rabbitmq", Key: "RABBITMQ_DEFAULT_PASS", Volume: "demo_rabbitmq_data"}}}},
		want: []string{"rabbitmq-password-drift error rabbitmq compose.yaml:7"}},
	{dir: "rabbitmq-password-drift/rotated", opts: checks.Options{Host: &checks.HostFacts{ChangedSecrets: []checks.ChangedSecret{
		{Service: "rabbitmq", Key: "RABBITMQ_DEFAULT_PASS"}}}}}, // no volume yet: a new broker takes the new password
	{dir: "rabbitmq-password-drift/rotated"}, // no host facts: a plain check cannot know

	// limits-missing
	{dir: "limits-missing/missing", want: []string{"limits-missing warning api compose.yaml:2"}},
	{dir: "limits-missing/set"},

	// limits-exceed-host: 1g leaves 768m after the headroom, 2g 1792m.
	{dir: "limits-exceed-host/two", opts: checks.Options{HostMemory: gib}, want: []string{"limits-exceed-host error - compose.yaml:7"}},
	// host-build-memory: 4g leaves 3.5g after the headroom, 1.5g after the
	// limits; 3g leaves 640m.
	{dir: "host-build-memory/built", opts: checks.Options{HostMemory: 3 * gib, Host: &checks.HostFacts{Builds: true}},
		want: []string{"host-build-memory warning api compose.yaml:3"}},
	{dir: "host-build-memory/built", opts: checks.Options{HostMemory: 4 * gib, Host: &checks.HostFacts{Builds: true}}},
	{dir: "host-build-memory/built", opts: checks.Options{HostMemory: 3 * gib, Host: &checks.HostFacts{}}}, // built elsewhere
	{dir: "host-build-memory/built", opts: checks.Options{Host: &checks.HostFacts{Builds: true}}},          // memory unknown
	{dir: "limits-exceed-host/two", opts: checks.Options{HostMemory: 2 * gib}},
	{dir: "limits-exceed-host/two"}, // host memory unknown
	{dir: "limits-exceed-host/mem-limit", opts: checks.Options{HostMemory: gib}, want: []string{"limits-exceed-host error - compose.yaml:10"}},
	{dir: "limits-exceed-host/replicas", opts: checks.Options{HostMemory: 2 * gib}, want: []string{"limits-exceed-host error - compose.yaml:8"}},
	{dir: "limits-exceed-host/replicas", opts: checks.Options{HostMemory: 4 * gib}},
	{dir: "limits-exceed-host/scale", opts: checks.Options{HostMemory: 2 * gib}, want: []string{"limits-exceed-host error - compose.yaml:5"}},
	{dir: "limits-exceed-host/fits", opts: checks.Options{HostMemory: gib}},
	{dir: "limits-exceed-host/stateful", opts: checks.Options{HostMemory: gib}, want: []string{"limits-exceed-host error db compose.yaml:7"}},
	{dir: "limits-exceed-host/settings", want: []string{"limits-exceed-host error - compose.yaml:6"}},
	{dir: "limits-exceed-host/settings", opts: checks.Options{HostMemory: 8 * gib}}, // the flag wins

	// migration-restart-loop
	{dir: "migration-restart-loop/command", want: []string{"migration-restart-loop error api compose.yaml:5"}},
	{dir: "migration-restart-loop/dockerfile-cmd", want: []string{"migration-restart-loop error api compose.yaml:4"}},
	{dir: "migration-restart-loop/command-overrides-cmd"},
	{dir: "migration-restart-loop/on-failure", want: []string{"migration-restart-loop warning api compose.yaml:5"}},
	{dir: "migration-restart-loop/capped"},
	{dir: "migration-restart-loop/deploy-any", want: []string{"migration-restart-loop error api compose.yaml:6"}},
	{dir: "migration-restart-loop/jobs"},

	// dockerfile-dev-deps
	{dir: "dockerfile-dev-deps/npm-ci", want: []string{"dockerfile-dev-deps warning api Dockerfile:4"}},
	{dir: "dockerfile-dev-deps/omit-dev"},
	{dir: "dockerfile-dev-deps/node-env"},
	{dir: "dockerfile-dev-deps/node-env-parent"},
	{dir: "dockerfile-dev-deps/pruned"},
	{dir: "dockerfile-dev-deps/single-stage-build", want: []string{"dockerfile-dev-deps warning api Dockerfile:6"}},
	{dir: "dockerfile-dev-deps/multi-stage", want: []string{"dockerfile-dev-deps warning dev Dockerfile:4"}},

	// build-no-cache
	{dir: "build-no-cache/on", want: []string{"build-no-cache warning api compose.yaml:5"}},
	{dir: "build-no-cache/off"},

	// caddy-tls-internal
	{dir: "caddy-tls-internal/internal", want: []string{"caddy-tls-internal warning caddy Caddyfile:2"}},
	{dir: "caddy-tls-internal/internal", opts: checks.Options{CloudflareSSL: "strict"}, want: []string{"caddy-tls-internal error caddy Caddyfile:2"}},
	{dir: "caddy-tls-internal/internal", opts: checks.Options{CloudflareSSL: "full"}, want: []string{"caddy-tls-internal info caddy Caddyfile:2"}},
	{dir: "caddy-tls-internal/internal", opts: checks.Options{CloudflareSSL: "off"}, want: []string{"caddy-tls-internal error caddy Caddyfile:2"}},
	{dir: "caddy-tls-internal/issuer", want: []string{"caddy-tls-internal warning caddy Caddyfile:6"}},
	{dir: "caddy-tls-internal/config", want: []string{"caddy-tls-internal warning proxy conf/Caddyfile:3"}},
	{dir: "caddy-tls-internal/acme", opts: checks.Options{CloudflareSSL: "strict"}},

	// proxy-upstream-unknown
	{dir: "proxy-upstream-unknown/typo", want: []string{"proxy-upstream-unknown error caddy Caddyfile:2"}},
	{dir: "proxy-upstream-unknown/localhost", want: []string{"proxy-upstream-unknown error caddy Caddyfile:2"}},
	{dir: "proxy-upstream-unknown/self", want: []string{"proxy-upstream-unknown error caddy Caddyfile:2", "proxy-upstream-unknown error caddy Caddyfile:3"}},
	{dir: "proxy-upstream-unknown/to-scheme", rules: []string{"proxy-upstream-unknown", "healthcheck-missing"}, want: []string{
		"proxy-upstream-unknown error caddy Caddyfile:4", // worker: not a service
		"healthcheck-missing warning caddy compose.yaml:2",
		"healthcheck-missing error api compose.yaml:7", // http://api:3000 in a `to` counts as routing to api
		"healthcheck-missing warning web compose.yaml:9",
	}},
	{dir: "proxy-upstream-unknown/known"},

	// neon-pooler
	{dir: "neon-pooler/direct", want: []string{"neon-pooler warning api compose.yaml:6"}},
	{dir: "neon-pooler/env-file", want: []string{"neon-pooler warning api compose.yaml:4"}},
	{dir: "neon-pooler/list", want: []string{"neon-pooler warning api compose.yaml:6"}},
	{dir: "neon-pooler/pooler"},

	// redis-eviction
	{dir: "redis-eviction/upstash", opts: checks.Options{Environment: "production"}, want: []string{"redis-eviction warning api compose.yaml:5"}},
	{dir: "redis-eviction/upstash", opts: checks.Options{Environment: "staging"}},
	{dir: "redis-eviction/upstash"},

	// logging-unbounded
	{dir: "logging-unbounded/default", want: []string{"logging-unbounded warning api compose.yaml:2"}},
	{dir: "logging-unbounded/json-file", want: []string{"logging-unbounded warning api compose.yaml:4"}},
	{dir: "logging-unbounded/bounded"},

	// logs-not-forwarded
	{dir: "logs-not-forwarded/none", want: []string{"logs-not-forwarded info - compose.yaml:2"}},
	{dir: "logs-not-forwarded/driver"},
	{dir: "logs-not-forwarded/shipper"},

	// image-latest
	{dir: "image-latest/unpinned", want: []string{
		"image-latest warning cache compose.yaml:3",
		"image-latest warning queue compose.yaml:5",
		"image-latest warning app compose.yaml:7",
	}},
	{dir: "image-latest/pinned"},

	// secret-in-compose
	{dir: "secret-in-compose/literals", want: []string{
		"secret-in-compose error api compose.yaml:5",
		"secret-in-compose error api compose.yaml:6",
		"secret-in-compose error worker compose.yaml:12",
	}},
	{dir: "secret-in-compose/from-vars"},

	// restart-missing
	{dir: "restart-missing/missing", want: []string{"restart-missing warning api compose.yaml:2"}},
	{dir: "restart-missing/set"},

	// single-host-production
	{dir: "single-host-production/flag", opts: checks.Options{Environment: "production"}, want: []string{"single-host-production info - compose.yaml:1"}},
	{dir: "single-host-production/flag", opts: checks.Options{Environment: "staging"}},
	{dir: "single-host-production/settings", want: []string{"single-host-production info - compose.yaml:3"}},
	{dir: "single-host-production/settings", opts: checks.Options{Environment: "staging"}}, // the flag wins

	// env-file-missing
	{dir: "env-file-missing/missing", want: []string{
		"env-file-missing error api compose.yaml:4",
		"env-file-missing error worker compose.yaml:9",
	}},
	{dir: "env-file-missing/optional"},

	// variable-unset
	{dir: "variable-unset/unset", want: []string{
		"variable-unset warning api compose.yaml:3",
		"variable-unset warning api compose.yaml:5",
	}},
	{dir: "variable-unset/set"},

	// dockerfile-invalid
	{dir: "dockerfile-invalid/missing", want: []string{"dockerfile-invalid error api compose.yaml:3"}},
	{dir: "dockerfile-invalid/target", want: []string{"dockerfile-invalid error api compose.yaml:5"}},
	{dir: "dockerfile-invalid/syntax", want: []string{"dockerfile-invalid error api api.Dockerfile:3"}},
	{dir: "dockerfile-invalid/valid"},

	// caddyfile-invalid
	{dir: "caddyfile-invalid/unbalanced", want: []string{"caddyfile-invalid error caddy Caddyfile:2"}},
	{dir: "caddyfile-invalid/missing", want: []string{"caddyfile-invalid error caddy compose.yaml:4"}},
	{dir: "caddyfile-invalid/valid"},

	// suppression-invalid: an invalid suppression is reported and not applied.
	{dir: "suppression-invalid/settings", rules: []string{"suppression-invalid", "image-latest"}, want: []string{
		"suppression-invalid warning - compose.yaml:4", // no reason
		"suppression-invalid warning - compose.yaml:5", // no such rule
		"suppression-invalid warning - compose.yaml:7", // no rule
		"image-latest warning cache compose.yaml:11",
	}},
	{dir: "suppression-invalid/inline", rules: []string{"suppression-invalid", "image-latest"}, want: []string{
		"suppression-invalid warning - compose.yaml:3",
		"image-latest warning cache compose.yaml:3",
		"suppression-invalid warning - compose.yaml:5",
		"image-latest warning queue compose.yaml:6",
		"suppression-invalid warning - compose.yaml:8",
		"image-latest warning web compose.yaml:9",
	}},
	{dir: "suppression-invalid/valid", rules: []string{"suppression-invalid", "image-latest", "restart-missing"}, want: []string{
		"image-latest warning cache compose.yaml:8 suppressed",
		"restart-missing warning cache compose.yaml:7 suppressed",
	}},

	// suppressions that apply
	{dir: "suppressed/settings", rules: []string{"image-latest", "limits-missing"}, want: []string{
		"limits-missing warning api compose.yaml:10 suppressed",
		"image-latest warning api compose.yaml:11 suppressed",
		"limits-missing warning worker compose.yaml:12", // the entry names api only
		"image-latest warning worker compose.yaml:13 suppressed",
	}},
	{dir: "suppressed/inline", rules: []string{"image-latest", "limits-missing"}, want: []string{
		"limits-missing warning api compose.yaml:2 suppressed",  // on the line
		"image-latest warning api compose.yaml:3 suppressed",    // on the line
		"limits-missing warning worker compose.yaml:4",          // no comment for it
		"image-latest warning worker compose.yaml:6 suppressed", // on the line above
		"limits-missing warning cron compose.yaml:9",            // two lines above: too far
		"image-latest warning cron compose.yaml:10",             // below: does not count
	}},

	// -f compose.yaml -f override.yaml: each finding points at the file that set the key.
	{dir: "overrides", files: []string{"compose.yaml", "override.yaml"},
		rules: []string{"image-latest", "logging-unbounded", "secret-in-compose", "limits-missing", "restart-missing"},
		want: []string{
			"logging-unbounded warning cache compose.yaml:4", // only the base sets logging
			"image-latest warning cache override.yaml:3",     // the override sets redis:latest
			"restart-missing warning cache override.yaml:2",  // a service is where it was last written
			"limits-missing warning cache override.yaml:2",
			"restart-missing warning api override.yaml:4",
			"logging-unbounded warning api override.yaml:4",
			"secret-in-compose error api override.yaml:6",
		}},
	{dir: "overrides", files: []string{"compose.yaml"}, rules: []string{"image-latest", "secret-in-compose", "limits-missing"}, want: []string{
		"limits-missing warning cache compose.yaml:2",
		"limits-missing warning api compose.yaml:6",
	}},

	// include: the included file's services point into it.
	{dir: "include", rules: []string{"stateful-volume-missing", "secret-in-compose", "logs-not-forwarded", "depends-on-not-healthy"}, want: []string{
		"logs-not-forwarded info - compose.yaml:3",
		"stateful-volume-missing error db db/compose.yaml:2",
		"secret-in-compose error db db/compose.yaml:7",
	}},

	// extends: a key the service sets itself points into its own file, an
	// inherited one into the file and service it extends.
	{dir: "extends", rules: []string{"image-latest", "logging-unbounded", "secret-in-compose", "restart-missing", "limits-missing"}, want: []string{
		"limits-missing warning web compose.yaml:2",
		"restart-missing warning web compose.yaml:2",
		"image-latest warning web compose.yaml:6",     // overrides nginx:1.27 of common.yaml
		"logging-unbounded warning web common.yaml:4", // inherited
		"limits-missing warning api compose.yaml:7",
		"logging-unbounded warning api common.yaml:9",      // inherited from node-base
		"secret-in-compose error node-base common.yaml:12", // written there, under that name
	}},
}

func TestRules(t *testing.T) {
	for _, tc := range ruleCases {
		t.Run(caseName(tc), func(t *testing.T) {
			fs := run(t, tc.dir, tc.files, tc.opts)
			rules := tc.rules
			if len(rules) == 0 {
				rules = []string{strings.Split(tc.dir, "/")[0]}
			}
			var got []string
			for _, f := range fs {
				if slices.Contains(rules, f.Rule) {
					got = append(got, key(f))
				}
			}
			want := slices.Clone(tc.want)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("findings of %s:\ngot:\n\t%s\nwant:\n\t%s", strings.Join(rules, ", "), strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
			for _, f := range fs {
				checkFinding(t, f)
			}
		})
	}
}

// TestRulesCovered makes the table above keep up with Rules(): every rule
// has a case that finds it and one, with the same rule under test, that
// does not.
func TestRulesCovered(t *testing.T) {
	found, clean := map[string]bool{}, map[string]bool{}
	for _, tc := range ruleCases {
		rules := tc.rules
		if len(rules) == 0 {
			rules = []string{strings.Split(tc.dir, "/")[0]}
		}
		for _, r := range rules {
			n := 0
			for _, w := range tc.want {
				if strings.HasPrefix(w, r+" ") {
					n++
				}
			}
			if n > 0 {
				found[r] = true
			} else {
				clean[r] = true
			}
		}
	}
	for _, r := range checks.Rules() {
		if !found[r.ID] {
			t.Errorf("no case finds %s", r.ID)
		}
		if !clean[r.ID] {
			t.Errorf("no case checks that %s stays quiet", r.ID)
		}
	}
}

// TestRuleIDs: IDs are unique, RuleByID finds each, and every rule says
// what it is about.
func TestRuleIDs(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range checks.Rules() {
		if seen[r.ID] {
			t.Errorf("rule %s is listed twice", r.ID)
		}
		seen[r.ID] = true
		if checks.RuleByID(r.ID) != r {
			t.Errorf("RuleByID(%q) does not return the rule", r.ID)
		}
		if r.Title == "" || r.Help == "" || r.Severity < checks.Info || r.Severity > checks.Error {
			t.Errorf("rule %s: title %q, help %q, severity %v", r.ID, r.Title, r.Help, r.Severity)
		}
		if !strings.HasSuffix(r.DocURL(), "#"+r.ID) {
			t.Errorf("rule %s: doc URL %s", r.ID, r.DocURL())
		}
	}
	if checks.RuleByID("no-such-rule") != nil {
		t.Error("RuleByID found a rule that does not exist")
	}
}

// TestSeed runs the checks over the staging stack of the operations notes:
// before their fixes, with production's settings, every problem they
// describe is found; after them, as staging, nothing is left to warn about.
func TestSeed(t *testing.T) {
	t.Run("before", func(t *testing.T) {
		fs := run(t, "../../testdata/seed/before", []string{"docker-compose.staging.yml"},
			checks.Options{Environment: "production", CloudflareSSL: "strict", HostMemory: 4 * gib})
		want := []string{
			"healthcheck-missing error api docker-compose.staging.yml:17",          // caddy relies on it
			"healthcheck-missing warning caddy docker-compose.staging.yml:5",       // nothing depends on the proxy
			"depends-on-not-healthy error caddy docker-compose.staging.yml:14",     // list form, a proxy
			"stateful-volume-missing error rabbitmq docker-compose.staging.yml:31", // queue state in the container
			"limits-missing warning caddy docker-compose.staging.yml:5",            // no limits anywhere
			"limits-missing warning api docker-compose.staging.yml:17",             //
			"limits-missing warning rabbitmq docker-compose.staging.yml:31",        //
			"migration-restart-loop error api docker-compose.staging.yml:21",       // drizzle-kit migrate in the Dockerfile's CMD, restart: unless-stopped
			"dockerfile-dev-deps warning api api/Dockerfile:6",                     // npm ci without --omit=dev
			"caddy-tls-internal error caddy Caddyfile:2",                           // Cloudflare Full (strict)
			"neon-pooler warning api docker-compose.staging.yml:22",                // DATABASE_URL from .env, not -pooler
			"redis-eviction warning api docker-compose.staging.yml:22",             // Upstash in production
			"logging-unbounded warning caddy docker-compose.staging.yml:5",         // json-file without max-size
			"logging-unbounded warning api docker-compose.staging.yml:17",          //
			"logging-unbounded warning rabbitmq docker-compose.staging.yml:31",     //
			"logs-not-forwarded info - docker-compose.staging.yml:4",               // only docker compose logs over SSH
			"single-host-production info - docker-compose.staging.yml:4",           // one droplet
		}
		got := keys(fs)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("findings:\ngot:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
		if !checks.Failed(fs, false) {
			t.Error("Failed(before) = false, want true: it has errors")
		}
		for _, f := range fs {
			checkFinding(t, f)
		}
	})
	t.Run("after", func(t *testing.T) {
		p := load(t, "../../testdata/seed/after", "docker-compose.staging.yml")
		if p.Settings.Environment != "staging" {
			t.Fatalf("x-deployer environment = %q, want staging", p.Settings.Environment)
		}
		fs := checks.Run(p, checks.Options{})
		for _, f := range fs {
			checkFinding(t, f)
			if f.Severity >= checks.Warning {
				t.Errorf("after the fixes: %s: %s", key(f), f.Message)
			}
		}
		if checks.Failed(fs, true) {
			t.Error("Failed(after, strict) = true, want false")
		}
		// The same stack claimed for production: only what the notes
		// accept for staging is left.
		got := keys(checks.Run(p, checks.Options{Environment: "production", CloudflareSSL: "strict"}))
		want := []string{
			"redis-eviction warning api docker-compose.staging.yml:51", // both read REDIS_URL from .env
			"redis-eviction warning migrate docker-compose.staging.yml:42",
			"single-host-production info - docker-compose.staging.yml:15",
		}
		if !slices.Equal(got, want) {
			t.Errorf("after, as production:\ngot:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	})
}

// TestRunOrder: findings come sorted by file and line, whatever order the
// rules ran in.
func TestRunOrder(t *testing.T) {
	fs := run(t, "../../testdata/seed/before", []string{"docker-compose.staging.yml"}, checks.Options{Environment: "production"})
	if len(fs) < 2 {
		t.Fatalf("%d findings, want several", len(fs))
	}
	sorted := slices.IsSortedFunc(fs, func(a, b checks.Finding) int {
		return cmp.Or(strings.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Column, b.Pos.Column))
	})
	if !sorted {
		t.Errorf("findings are not sorted by place: %v", keys(fs))
	}
}

func TestFailed(t *testing.T) {
	warn := checks.Finding{Rule: "image-latest", Severity: checks.Warning}
	errf := checks.Finding{Rule: "secret-in-compose", Severity: checks.Error}
	info := checks.Finding{Rule: "logs-not-forwarded", Severity: checks.Info}
	suppressed := errf
	suppressed.Suppressed = &project.Suppression{Rule: errf.Rule, Reason: "test"}
	tests := []struct {
		name   string
		fs     []checks.Finding
		strict bool
		want   bool
	}{
		{"none", nil, true, false},
		{"info", []checks.Finding{info}, true, false},
		{"warning", []checks.Finding{info, warn}, false, false},
		{"warning strict", []checks.Finding{info, warn}, true, true},
		{"error", []checks.Finding{errf}, false, true},
		{"suppressed error", []checks.Finding{suppressed, warn}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := checks.Failed(tc.fs, tc.strict); got != tc.want {
				t.Errorf("Failed(strict=%v) = %v, want %v", tc.strict, got, tc.want)
			}
		})
	}
}

func TestSeverityText(t *testing.T) {
	for _, s := range []checks.Severity{checks.Info, checks.Warning, checks.Error} {
		b, err := s.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back checks.Severity
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", b, back, err, s)
		}
	}
	for _, bad := range []string{"", "unknown", "fatal", "Error"} {
		var s checks.Severity
		if err := s.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) = %v, want an error", bad, s)
		}
	}
	if got := checks.Severity(42).String(); got != "unknown" {
		t.Errorf("Severity(42) = %q", got)
	}
}

// checkFinding holds for every finding: a known rule, a real severity, a
// place, a message and a fix, and no secret in any of it.
func checkFinding(t *testing.T, f checks.Finding) {
	t.Helper()
	if checks.RuleByID(f.Rule) == nil {
		t.Errorf("%s: unknown rule", key(f))
	}
	if f.Severity < checks.Info || f.Severity > checks.Error {
		t.Errorf("%s: severity %d", key(f), f.Severity)
	}
	if f.Pos.File == "" || filepath.IsAbs(f.Pos.File) || f.Message == "" || f.Fix == "" {
		t.Errorf("%s: incomplete finding %+v", key(f), f)
	}
	fields := []string{f.Rule, f.Service, f.Pos.String(), f.Message, f.Fix}
	if f.Suppressed != nil {
		fields = append(fields, f.Suppressed.Rule, f.Suppressed.Service, f.Suppressed.Reason)
	}
	for _, s := range fields {
		if strings.Contains(s, fakeSecret) {
			t.Errorf("%s shows the secret: %q", key(f), s)
		}
		if strings.Contains(s, "/work/") || strings.Contains(s, "testdata") {
			t.Errorf("%s names a path that depends on the checkout: %q", key(f), s)
		}
	}
}

func caseName(tc ruleCase) string {
	name := tc.dir
	if len(tc.files) > 0 {
		name += "/-f=" + strings.Join(tc.files, ",")
	}
	if tc.opts != (checks.Options{}) {
		name += fmt.Sprintf("/%s,%s,%d", tc.opts.Environment, tc.opts.CloudflareSSL, tc.opts.HostMemory/mib)
	}
	return name
}

// run loads the case directory as docker compose would from inside it,
// with an empty environment, and runs every check.
func run(t *testing.T, dir string, files []string, o checks.Options) []checks.Finding {
	t.Helper()
	return checks.Run(load(t, dir, files...), o)
}

func load(t *testing.T, dir string, files ...string) *project.Project {
	t.Helper()
	t.Chdir(filepath.Join("testdata", dir))
	p, err := project.Load(t.Context(), project.Options{Files: files, Env: []string{}})
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	return p
}

func key(f checks.Finding) string {
	s := fmt.Sprintf("%s %s %s %s:%d", f.Rule, f.Severity, cmp.Or(f.Service, "-"), f.Pos.File, f.Pos.Line)
	if f.Suppressed != nil {
		s += " suppressed"
	}
	return s
}

func keys(fs []checks.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, key(f))
	}
	slices.Sort(out)
	return out
}
