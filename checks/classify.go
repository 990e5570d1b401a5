package checks

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/semalink/deploy-action/checks/project"
)

// kind is what software a service runs, as far as its image says.
type kind string

const (
	kindRabbitMQ      kind = "rabbitmq"
	kindPostgres      kind = "postgres"
	kindMySQL         kind = "mysql"
	kindMariaDB       kind = "mariadb"
	kindMongo         kind = "mongo"
	kindRedis         kind = "redis"
	kindElasticsearch kind = "elasticsearch"
	kindOpenSearch    kind = "opensearch"
	kindCaddy         kind = "caddy"
	kindNginx         kind = "nginx"
	kindTraefik       kind = "traefik"
	kindHAProxy       kind = "haproxy"
)

var knownKinds = []kind{kindRabbitMQ, kindPostgres, kindMySQL, kindMariaDB, kindMongo, kindRedis,
	kindElasticsearch, kindOpenSearch, kindCaddy, kindNginx, kindTraefik, kindHAProxy}

var kindAliases = map[string]kind{"postgresql": kindPostgres, "postgis": kindPostgres, "timescaledb": kindPostgres,
	"mongodb": kindMongo, "valkey": kindRedis, "redis-stack-server": kindRedis, "percona": kindMySQL}

// kindOf reads the kind from the image name (or a built image's base),
// falling back to a service named exactly after the software.
func (in *Input) kindOf(name string, s types.ServiceConfig) kind {
	images := []string{}
	if s.Build == nil {
		images = append(images, s.Image)
	} else if d := in.Dockerfiles[name]; d != nil {
		if st := d.Stage(s.Build.Target); st != nil {
			chain := d.Chain(st)
			images = append(images, chain[len(chain)-1].Base)
		}
	}
	images = append(images, name)
	for _, img := range images {
		base := imageBase(img)
		if k, ok := kindAliases[base]; ok {
			return k
		}
		for _, k := range knownKinds {
			if base == string(k) {
				return k
			}
		}
	}
	return ""
}

// imageBase is the last path element of an image reference, without tag
// or digest: "docker.io/library/rabbitmq:3-management" is "rabbitmq".
func imageBase(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	base := path.Base(ref)
	base, _, _ = strings.Cut(base, ":")
	return strings.ToLower(base)
}

func (k kind) proxy() bool {
	return k == kindCaddy || k == kindNginx || k == kindTraefik || k == kindHAProxy
}

// isJob reports whether a service runs once and exits (a migration, a
// seed): another service waits for it to complete, or its restart policy
// says not to restart it.
func (in *Input) isJob(name string, s types.ServiceConfig) bool {
	if policy, _, set := restartPolicy(s); set && policy == types.RestartPolicyNo {
		return true
	}
	for _, other := range in.Compose.Services {
		if d, ok := other.DependsOn[name]; ok && d.Condition == types.ServiceConditionCompletedSuccessfully {
			return true
		}
	}
	return false
}

// longRunning lists the services that are meant to stay up, in name order.
func (in *Input) longRunning() []string {
	var out []string
	for _, name := range in.serviceNames() {
		if !in.isJob(name, in.Compose.Services[name]) {
			out = append(out, name)
		}
	}
	return out
}

func (in *Input) serviceNames() []string { return in.Compose.ServiceNames() }

// healthcheck returns the service's healthcheck test and where it is
// written (the Compose file, or the Dockerfile's HEALTHCHECK); nil when
// it has none or disables it.
func (in *Input) healthcheck(name string, s types.ServiceConfig) ([]string, project.Position) {
	if hc := s.HealthCheck; hc != nil {
		if hc.Disable || (len(hc.Test) > 0 && hc.Test[0] == "NONE") {
			return nil, project.Position{}
		}
		if len(hc.Test) > 0 {
			return hc.Test, in.ServicePos(name, "healthcheck", "test")
		}
	}
	if st, d := in.stage(name, s); st != nil {
		for _, stage := range d.Chain(st) {
			for i := len(stage.Steps) - 1; i >= 0; i-- {
				if step := stage.Steps[i]; step.Kind == "healthcheck" {
					if len(step.Args) == 0 || step.Args[0] == "NONE" {
						return nil, project.Position{}
					}
					return step.Args, project.Position{File: d.Path, Line: step.Line}
				}
			}
		}
	}
	return nil, project.Position{}
}

// stage returns the Dockerfile stage a built service runs.
func (in *Input) stage(name string, s types.ServiceConfig) (*project.Stage, *project.Dockerfile) {
	d := in.Dockerfiles[name]
	if d == nil || s.Build == nil {
		return nil, nil
	}
	return d.Stage(s.Build.Target), d
}

// runs returns what the service's containers run: command and entrypoint
// from the Compose file, else the image's CMD and ENTRYPOINT from the
// Dockerfile, with where each is written.
func (in *Input) runs(name string, s types.ServiceConfig) (string, project.Position) {
	var parts []string
	var pos project.Position
	if len(s.Entrypoint) > 0 {
		parts = append(parts, strings.Join(s.Entrypoint, " "))
		pos = in.ServicePos(name, "entrypoint")
	}
	if len(s.Command) > 0 {
		parts = append(parts, strings.Join(s.Command, " "))
		pos = in.ServicePos(name, "command")
	}
	if len(parts) > 0 {
		return strings.Join(parts, " "), pos
	}
	if st, d := in.stage(name, s); st != nil {
		for _, stage := range d.Chain(st) {
			for _, step := range stage.Steps {
				if step.Kind == "cmd" || step.Kind == "entrypoint" {
					parts = append(parts, strings.Join(step.Args, " "))
					pos = project.Position{File: d.Path, Line: step.Line}
				}
			}
			if len(parts) > 0 {
				break
			}
		}
	}
	return strings.Join(parts, " "), pos
}

// memoryLimit is the service's memory limit in bytes, 0 when it has none.
func memoryLimit(s types.ServiceConfig) int64 {
	if s.Deploy != nil && s.Deploy.Resources.Limits != nil && s.Deploy.Resources.Limits.MemoryBytes > 0 {
		return int64(s.Deploy.Resources.Limits.MemoryBytes)
	}
	return int64(s.MemLimit)
}

// restartPolicy is the policy in force: restart:, else deploy.restart_policy.
//
// As in docker compose, deploy.restart_policy wins over restart: when both
// are set, and a restart_policy without a condition restarts nothing.
func restartPolicy(s types.ServiceConfig) (policy string, maxAttempts int, set bool) {
	if s.Deploy != nil && s.Deploy.RestartPolicy != nil {
		rp := s.Deploy.RestartPolicy
		if rp.MaxAttempts != nil {
			maxAttempts = int(*rp.MaxAttempts)
		}
		switch rp.Condition {
		case "on-failure", "unless-stopped":
			return rp.Condition, maxAttempts, true
		case "any", "always":
			return "always", maxAttempts, true
		default: // "none", "no" and no condition at all
			return "no", maxAttempts, true
		}
	}
	if s.Restart != "" {
		policy, n, _ := strings.Cut(s.Restart, ":")
		maxAttempts, _ = strconv.Atoi(n)
		return policy, maxAttempts, true
	}
	return "no", 0, false
}

// formatBytes writes n the way Compose files do.
func formatBytes(n int64) string {
	for _, u := range []struct {
		unit string
		size int64
	}{{"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
		if n >= u.size {
			v := float64(n) / float64(u.size)
			if v == float64(int64(v)) {
				return fmt.Sprintf("%d%s", int64(v), u.unit)
			}
			return fmt.Sprintf("%.1f%s", v, u.unit)
		}
	}
	return fmt.Sprintf("%db", n)
}
