package checks

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/semalink/deploy-action/checks/project"
	"go.yaml.in/yaml/v4"
)

var neonPooler = &Rule{
	ID: "neon-pooler", Severity: Warning,
	Title: "a Neon Postgres URL bypasses the connection pooler",
	Help:  "Neon limits direct connections per compute (from about 100 on the free tier). An API that opens connections per request, or leaks them, hits the limit and gets `FATAL: remaining connection slots are reserved`. The -pooler host goes through PgBouncer, which multiplexes many client connections onto a few real ones.",
	check: func(in *Input) []Finding {
		return in.eachURL(func(name, key string, u *url.URL) *Finding {
			host := u.Hostname()
			if !strings.HasPrefix(u.Scheme, "postgres") || !strings.HasSuffix(host, ".neon.tech") {
				return nil
			}
			first, _, _ := strings.Cut(host, ".")
			if strings.HasSuffix(first, "-pooler") {
				return nil
			}
			return &Finding{Rule: "neon-pooler",
				Message: fmt.Sprintf("%s in %s connects to Neon directly (%s), not through its pooler", key, name, host),
				Fix:     fmt.Sprintf("use the pooled host %s-pooler.%s, and keep the client's pool small (max: 10)", first, strings.TrimPrefix(host, first+"."))}
		})
	},
}

var redisEviction = &Rule{
	ID: "redis-eviction", Severity: Warning,
	Title: "production uses an Upstash Redis that may evict keys",
	Help:  "Upstash's free and capped plans evict keys (LRU) when the data size limit is reached: sessions, rate-limit counters and cached entries disappear silently. Acceptable for staging; in production use a plan without eviction, or a Redis whose eviction policy you set.",
	check: func(in *Input) []Finding {
		if in.Environment != "production" {
			return nil
		}
		return in.eachURL(func(name, key string, u *url.URL) *Finding {
			if !strings.HasPrefix(u.Scheme, "redis") || !strings.HasSuffix(u.Hostname(), ".upstash.io") {
				return nil
			}
			return &Finding{Rule: "redis-eviction",
				Message: fmt.Sprintf("%s in %s points production at Upstash (%s), which evicts keys when its size limit is reached", key, name, u.Hostname()),
				Fix:     "move to an Upstash plan without eviction, or a managed Redis with maxmemory-policy noeviction, and alert on memory use"}
		})
	},
}

// eachURL calls fn for every URL in every service's environment. fn
// returns a finding without place or service; eachURL adds them.
func (in *Input) eachURL(fn func(service, key string, u *url.URL) *Finding) []Finding {
	var out []Finding
	for _, name := range in.serviceNames() {
		env := in.Compose.Services[name].Environment
		for _, key := range sortedKeys(env) {
			v := env[key]
			if v == nil || !strings.Contains(*v, "://") {
				continue
			}
			u, err := url.Parse(strings.TrimSpace(*v))
			if err != nil {
				continue
			}
			if f := fn(name, key, u); f != nil {
				f.Service, f.Pos = name, in.envPos(name, key)
				out = append(out, *f)
			}
		}
	}
	return out
}

// envPos is where an environment variable of a service is written: its
// environment entry in either form, else its env_file.
func (in *Input) envPos(service, key string) project.Position {
	if pos, n, ok := in.Locate("services", service, "environment", key); ok && n != nil {
		return pos
	}
	if _, list, _ := in.Locate("services", service, "environment"); list != nil && list.Kind == yaml.SequenceNode {
		for i, item := range list.Content {
			if k, _, _ := strings.Cut(item.Value, "="); k == key {
				return in.ServicePos(service, "environment", strconv.Itoa(i))
			}
		}
	}
	if _, _, ok := in.Locate("services", service, "env_file"); ok {
		return in.ServicePos(service, "env_file")
	}
	return in.ServicePos(service)
}
