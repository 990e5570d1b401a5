package deployer

import (
	"context"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/semalink/deploy-action/checks"
)

// initOnlySecrets are passwords an image reads only when it initialises an
// empty data directory: changing them later changes nothing in the running
// broker, and the clients that use the new value are locked out.
var initOnlySecrets = []string{rabbitMQPassKey}

// rabbitMQPassKey is the RabbitMQ image's init-only password;
// RotateRabbitMQPassword changes it inside a running broker.
const rabbitMQPassKey = "RABBITMQ_DEFAULT_PASS"

// dataDirs are where the images of initOnlySecrets keep their data: the
// volume mounted there is the one that holds the old password.
var dataDirs = []string{"/var/lib/rabbitmq"}

// secretHashes hashes each service's init-only secrets for release.json.
func secretHashes(p *types.Project) map[string]SecretHash {
	out := map[string]SecretHash{}
	for name, s := range p.Services {
		for _, key := range initOnlySecrets {
			if v, ok := s.Environment[key]; ok && v != nil && *v != "" {
				out[name+"/"+key] = HashSecret(*v)
			}
		}
	}
	return out
}

// drift compares the init-only secrets with the ones the live release
// (nil: none) was deployed with: the facts for rule
// rabbitmq-password-drift. Nil when nothing differs.
func (t *target) drift(ctx context.Context, rel *Release) *checks.HostFacts {
	if rel == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	facts := &checks.HostFacts{}
	p := t.plan.Project.Compose
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		for _, key := range initOnlySecrets {
			old, had := rel.Secrets[name+"/"+key]
			v, ok := s.Environment[key]
			if !had || !ok || v == nil || old.Matches(*v) {
				continue
			}
			facts.ChangedSecrets = append(facts.ChangedSecrets, checks.ChangedSecret{Service: name, Key: key, Volume: t.dataVolume(ctx, s)})
		}
	}
	if len(facts.ChangedSecrets) == 0 {
		return nil
	}
	return facts
}

// liveRecord is the live release's record, nil when none is live or it
// cannot be read (then the secrets cannot be compared, which is said).
func (t *target) liveRecord(ctx context.Context, live string) *Release {
	if live == "" {
		return nil
	}
	rel, err := t.readRelease(ctx, live)
	if err != nil {
		t.rep.Warnf("cannot compare secrets with the live release: %v", err)
		return nil
	}
	return rel
}

// dataVolume returns the named volume of a service that exists on the
// host, the one mounted on a data directory first, "" when there is none.
func (t *target) dataVolume(ctx context.Context, s types.ServiceConfig) string {
	for _, wantDataDir := range []bool{true, false} {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeVolume || v.Source == "" || onDataDir(v.Target) != wantDataDir {
				continue
			}
			// As render names it: a default name follows the project's
			// name on the host (--project), an explicit one stays.
			name := t.plan.Name + "_" + v.Source
			p := t.plan.Project.Compose
			if vol, ok := p.Volumes[v.Source]; ok && vol.Name != "" && (bool(vol.External) || vol.Name != p.Name+"_"+v.Source) {
				name = vol.Name
			}
			if _, err := t.docker.VolumeInspect(ctx, name); err == nil {
				return name
			}
		}
	}
	return ""
}

func onDataDir(target string) bool {
	return slices.ContainsFunc(dataDirs, func(dir string) bool { return target == dir || strings.HasPrefix(target, dir+"/") })
}
