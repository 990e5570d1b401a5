package checks

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/semalink/deploy-action/checks/project"
)

var healthcheckMissing = &Rule{
	ID: "healthcheck-missing", Severity: Warning,
	Title: "a long-running service has no healthcheck",
	Help:  "Without a healthcheck Docker only knows whether the process runs, not whether it answers. Services that depend on it start too early, a proxy keeps routing to a dead upstream, and the deploy cannot tell a healthy release from a broken one. It is an error when another service depends on it or a proxy routes to it.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.longRunning() {
			s := in.Compose.Services[name]
			if test, _ := in.healthcheck(name, s); test != nil {
				continue
			}
			f := Finding{Rule: "healthcheck-missing", Service: name, Pos: in.ServicePos(name),
				Message: fmt.Sprintf("%s has no healthcheck, so nothing can tell when it stops answering", name),
				Fix:     fmt.Sprintf("add to %s: healthcheck: {test: %s, interval: 15s, timeout: 5s, retries: 3, start_period: 30s}", name, healthcheckFor(in.kindOf(name, s)))}
			if users := in.usersOf(name); len(users) > 0 {
				f.Severity = Error
				f.Message = fmt.Sprintf("%s has no healthcheck, but %s rel%s on it: after it dies they keep sending it traffic", name, strings.Join(users, " and "), plural(len(users), "y", "ies"))
			}
			out = append(out, f)
		}
		return out
	},
}

// usersOf lists the services that depend on name or route to it.
func (in *Input) usersOf(name string) []string {
	var users []string
	for _, other := range in.serviceNames() {
		if _, ok := in.Compose.Services[other].DependsOn[name]; ok {
			users = append(users, other)
		} else if slices.Contains(in.upstreams(other), name) {
			users = append(users, other)
		}
	}
	return users
}

func plural(n int, many, one string) string {
	if n == 1 {
		return one
	}
	return many
}

// upstreams lists the services a proxy's Caddyfile routes to.
func (in *Input) upstreams(proxy string) []string {
	var out []string
	for _, u := range in.caddyUpstreams(proxy) {
		if _, ok := in.Compose.Services[u.host]; ok && !slices.Contains(out, u.host) {
			out = append(out, u.host)
		}
	}
	return out
}

type upstream struct {
	host string
	line int
}

// caddyUpstreams reads the hosts of reverse_proxy directives (and their
// "to" subdirectives). Placeholders such as {$UPSTREAM} are skipped.
func (in *Input) caddyUpstreams(proxy string) []upstream {
	cf := in.Caddyfiles[proxy]
	if cf == nil {
		return nil
	}
	var out []upstream
	cf.Walk(func(d project.Directive) {
		if d.Name == "reverse_proxy" {
			out = append(out, directiveUpstreams(d)...)
		}
	})
	return out
}

// upstreamsOf are the hosts of a reverse_proxy's (or its to's) arguments:
// matchers, placeholders and unix sockets are skipped.
func upstreamsOf(args []string, line int) []upstream {
	var out []upstream
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, "{}") || strings.HasPrefix(a, "@") || strings.HasPrefix(a, "/") || a == "*" || strings.HasPrefix(a, "unix/") {
			continue
		}
		hostport := a
		if _, rest, ok := strings.Cut(a, "://"); ok {
			hostport = rest
		}
		host := hostport
		if h, _, err := net.SplitHostPort(hostport); err == nil {
			host = h
		}
		out = append(out, upstream{host: host, line: line})
	}
	return out
}

var dependsOnNotHealthy = &Rule{
	ID: "depends-on-not-healthy", Severity: Warning,
	Title: "depends_on waits only for a dependency to start, though it has a healthcheck",
	Help:  "depends_on without a condition waits until the dependency's container has started, not until it answers. The dependent starts against a service that is still booting; for a reverse proxy that means errors served to users during every deploy. It is an error for reverse proxies.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.serviceNames() {
			s := in.Compose.Services[name]
			proxy := in.kindOf(name, s).proxy()
			for _, dep := range sortedKeys(s.DependsOn) {
				d := s.DependsOn[dep]
				target, ok := in.Compose.Services[dep]
				if !ok || (d.Condition != "" && d.Condition != types.ServiceConditionStarted) {
					continue
				}
				test, _ := in.healthcheck(dep, target)
				if test == nil && !proxy {
					continue // healthcheck-missing says what to do first
				}
				f := Finding{Rule: "depends-on-not-healthy", Service: name, Pos: in.ServicePos(name, "depends_on", dep),
					Message: fmt.Sprintf("%s starts as soon as %s's container starts, not when %s is healthy", name, dep, dep),
					Fix:     fmt.Sprintf("depends_on: {%s: {condition: service_healthy}}", dep)}
				if test == nil {
					f.Fix = fmt.Sprintf("give %s a healthcheck, then wait for it: depends_on: {%s: {condition: service_healthy}}", dep, dep)
				}
				if proxy {
					f.Severity = Error
					f.Message += "; as a proxy it will route requests to an upstream that is not ready"
				}
				out = append(out, f)
			}
		}
		return out
	},
}

var localhostWord = regexp.MustCompile(`\blocalhost\b`)

var healthcheckLocalhost = &Rule{
	ID: "healthcheck-localhost", Severity: Warning,
	Title: "a healthcheck calls localhost",
	Help:  "Alpine and busybox images resolve localhost to ::1 first; a server that listens on IPv4 only then fails its healthcheck although it works. 127.0.0.1 is unambiguous.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.serviceNames() {
			test, pos := in.healthcheck(name, in.Compose.Services[name])
			if test == nil || !localhostWord.MatchString(strings.Join(test, " ")) {
				continue
			}
			out = append(out, Finding{Rule: "healthcheck-localhost", Service: name, Pos: pos,
				Message: fmt.Sprintf("the healthcheck of %s calls localhost, which busybox/Alpine resolve to ::1 first", name),
				Fix:     "use 127.0.0.1 instead of localhost in the healthcheck command"})
		}
		return out
	},
}

// healthcheckFor suggests a healthcheck test that works in the usual image
// of a kind of service.
func healthcheckFor(k kind) string {
	switch k {
	case kindRabbitMQ:
		return `["CMD", "rabbitmq-diagnostics", "-q", "check_running"]`
	case kindPostgres:
		return `["CMD-SHELL", "pg_isready -U $${POSTGRES_USER:-postgres}"]`
	case kindRedis:
		return `["CMD", "redis-cli", "ping"]`
	case kindMySQL, kindMariaDB:
		return `["CMD", "mysqladmin", "ping", "-h", "127.0.0.1"]`
	case kindMongo:
		return `["CMD", "mongosh", "--quiet", "--eval", "db.adminCommand('ping')"]`
	case kindCaddy:
		return `["CMD", "wget", "-qO-", "http://127.0.0.1:2019/config/"]`
	}
	return `["CMD-SHELL", "wget -qO- http://127.0.0.1:PORT/health || exit 1"]`
}
