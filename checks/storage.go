package checks

import (
	"fmt"
	"path"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// dataDirs is where each stateful kind keeps what must survive a
// container being recreated.
var dataDirs = map[kind]string{
	kindRabbitMQ:      "/var/lib/rabbitmq",
	kindPostgres:      "/var/lib/postgresql/data",
	kindMySQL:         "/var/lib/mysql",
	kindMariaDB:       "/var/lib/mysql",
	kindMongo:         "/data/db",
	kindRedis:         "/data",
	kindElasticsearch: "/usr/share/elasticsearch/data",
	kindOpenSearch:    "/usr/share/opensearch/data",
	kindCaddy:         "/data",
}

var statefulVolumeMissing = &Rule{
	ID: "stateful-volume-missing", Severity: Error,
	Title: "a stateful service keeps its data in the container",
	Help:  "Data kept in the container, or on the anonymous volume its image declares, does not outlive the container: docker compose down then up, rm, up -V or a volume prune start the broker or database empty, without its queues, messages or tables. A named volume on the data directory keeps them. RabbitMQ also names its data directory after the node (rabbit@HOSTNAME), so it needs a fixed hostname too, or each new container starts empty on the same volume. Caddy keeps its certificates in /data; without a volume it asks the CA again and runs into rate limits, so for Caddy it is a warning.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.serviceNames() {
			s := in.Compose.Services[name]
			k := in.kindOf(name, s)
			dir, ok := dataDirs[k]
			if !ok || (k == kindRedis && !redisPersists(s)) {
				continue
			}
			if k == kindPostgres {
				if v, ok := s.Environment["PGDATA"]; ok && v != nil && *v != "" {
					dir = *v
				}
			}
			mount, found := mountFor(s, dir)
			if found && (mount.Type == types.VolumeTypeBind || mount.Source != "") {
				if k == kindRabbitMQ && s.Hostname == "" && !hasEnv(s, "RABBITMQ_NODENAME") {
					out = append(out, Finding{Rule: "stateful-volume-missing", Service: name, Pos: in.ServicePos(name, "volumes"),
						Message: fmt.Sprintf("%s keeps its data under a directory named after its hostname, which is new for every container: a recreated broker starts empty although the volume survives", name),
						Fix:     fmt.Sprintf("give %s a fixed hostname: hostname: %s", name, name)})
				}
				continue
			}
			f := Finding{Rule: "stateful-volume-missing", Service: name, Pos: in.ServicePos(name),
				Message: fmt.Sprintf("%s (%s) keeps %s in the container: it is lost when the container is removed (down, rm, up -V)", name, k, dir),
				Fix:     fmt.Sprintf("mount a named volume there: volumes: [\"%s_data:%s\"] under %s, and declare %s_data under the top-level volumes:", name, dir, name, name)}
			if found {
				f.Pos = in.ServicePos(name, "volumes")
				f.Message = fmt.Sprintf("%s (%s) keeps %s on an anonymous volume: a new one is made when the container is recreated after down", name, k, dir)
			}
			if k == kindCaddy {
				f.Severity = Warning
				f.Message += "; its certificates would be requested again each time"
			}
			out = append(out, f)
		}
		return out
	},
}

// mountFor finds a volume, bind or tmpfs at dir, above it or inside it.
func mountFor(s types.ServiceConfig, dir string) (types.ServiceVolumeConfig, bool) {
	for _, v := range s.Volumes {
		t := path.Clean(v.Target)
		if v.Type == types.VolumeTypeTmpfs {
			continue
		}
		if t == dir || strings.HasPrefix(dir, t+"/") || strings.HasPrefix(t, dir+"/") || t == "/" {
			return v, true
		}
	}
	return types.ServiceVolumeConfig{}, false
}

// redisPersists: Redis as a cache needs no volume; with AOF or RDB saves
// turned on it does.
func redisPersists(s types.ServiceConfig) bool {
	// An empty argument must stay visible: --save "" turns saving off.
	args := make([]string, len(s.Command))
	for i, a := range s.Command {
		if a == "" {
			a = `""`
		}
		args[i] = a
	}
	cmd := strings.Join(args, " ")
	return strings.Contains(cmd, "--appendonly yes") || (strings.Contains(cmd, "--save") && !strings.Contains(cmd, `--save ""`) && !strings.Contains(cmd, "--save ''"))
}

func hasEnv(s types.ServiceConfig, key string) bool {
	v, ok := s.Environment[key]
	return ok && v != nil && *v != ""
}
