package checks

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
)

// rules is every rule, in the order of docs/checks.md.
var rules = []*Rule{
	healthcheckMissing,
	dependsOnNotHealthy,
	healthcheckLocalhost,
	statefulVolumeMissing,
	limitsMissing,
	limitsExceedHost,
	hostBuildMemory,
	migrationRestartLoop,
	dockerfileDevDeps,
	buildNoCache,
	caddyTLSInternal,
	proxyUpstreamUnknown,
	startFirstUnsafe,
	proxySwapUnsafe,
	neonPooler,
	redisEviction,
	loggingUnbounded,
	logsNotForwarded,
	imageLatest,
	secretInCompose,
	restartMissing,
	singleHostProduction,
	rabbitmqPasswordDrift,
	// Reported by the loader (project.Problem) or by suppression handling.
	{ID: "env-file-missing", Severity: Error, Title: "an env_file does not exist",
		Help: "docker compose refuses to create a service whose required env_file is missing, so the deploy would stop half-way. In CI the file is usually written from secrets in an earlier step."},
	{ID: "variable-unset", Severity: Warning, Title: "a variable used in the Compose file is not set",
		Help: "docker compose replaces an unset ${VAR} with an empty string and carries on: a service starts with an empty password or URL and fails in a way that is hard to trace back."},
	{ID: "dockerfile-invalid", Severity: Error, Title: "a service's Dockerfile cannot be read or has no such target",
		Help: "The build would fail: the Dockerfile is missing, does not parse, or the build target names no stage."},
	{ID: "caddyfile-invalid", Severity: Error, Title: "the Caddyfile mounted into a proxy cannot be read",
		Help: "Caddy would refuse to start with this Caddyfile, or the mount points at a file that is not there."},
	{ID: "suppression-invalid", Severity: Warning, Title: "a suppression has no reason or names no rule",
		Help: "Every suppression says why the finding does not apply, so the next reader can judge whether it still holds. One without a reason, or naming an unknown rule, is not applied."},
}

var restartMissing = &Rule{
	ID: "restart-missing", Severity: Warning,
	Title: "a long-running service has no restart policy",
	Help:  "Without a restart policy a service that crashes, or whose host reboots, stays down until someone starts it by hand.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.longRunning() {
			if _, _, set := restartPolicy(in.Compose.Services[name]); set {
				continue
			}
			out = append(out, Finding{Rule: "restart-missing", Service: name, Pos: in.ServicePos(name),
				Message: fmt.Sprintf("%s has no restart policy: after a crash or a reboot it stays down", name),
				Fix:     "restart: unless-stopped"})
		}
		return out
	},
}

var singleHostProduction = &Rule{
	ID: "single-host-production", Severity: Info,
	Title: "production runs on a single host",
	Help:  "Every service of the project runs on one host: a reboot, a kernel update or a host OOM takes all of them down together. Fine for staging; for production plan at least two API instances behind the proxy and managed services for state.",
	check: func(in *Input) []Finding {
		if in.Environment != "production" || len(in.Compose.Services) == 0 {
			return nil
		}
		pos, _, _ := in.Locate("services")
		return []Finding{{Rule: "single-host-production", Pos: pos,
			Message: "all services run on one host: one reboot or OOM takes the whole environment down",
			Fix:     "run at least two API instances behind the proxy (several --host values or a load balancer) and keep broker and database state in managed services"}}
	},
}

func sortedKeys[M ~map[K]V, K cmp.Ordered, V any](m M) []K { return slices.Sorted(maps.Keys(m)) }

var rabbitmqPasswordDrift = &Rule{
	ID: "rabbitmq-password-drift", Severity: Error,
	Title: "the RabbitMQ password changed, but the broker keeps the old one on its volume",
	Help:  "RABBITMQ_DEFAULT_PASS only takes effect when RabbitMQ initialises an empty data directory. After a rotation in the CI secrets, Compose recreates the broker with the new value, but the users stored on the volume still have the old password: RabbitMQ starts and every client using the new one gets ACCESS_REFUSED. Checked at deploy time, against a salted hash of the password the live release used.",
	check: func(in *Input) []Finding {
		if in.Host == nil {
			return nil
		}
		var out []Finding
		for _, c := range in.Host.ChangedSecrets {
			if c.Volume == "" {
				continue // a fresh broker initialises with the new value
			}
			out = append(out, Finding{Rule: "rabbitmq-password-drift", Service: c.Service, Pos: in.envPos(c.Service, c.Key),
				Message: fmt.Sprintf("%s of %s differs from the live release's, but the broker's users live on volume %s: it would keep the old password and clients using the new one get ACCESS_REFUSED", c.Key, c.Service, c.Volume),
				Fix:     fmt.Sprintf("run `deployer rotate rabbitmq-password` to change it inside the running broker (queues and messages are kept), or put the old value back in %s", c.Key)})
		}
		return out
	},
}
