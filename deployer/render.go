package deployer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/semalink/deploy-action/checks/project"
	"go.yaml.in/yaml/v4"
)

// migrateProfile keeps the migration service out of `up`: it runs once,
// as the gate, before the new version starts.
const migrateProfile = "deployer-migrate"

// maxBundled bounds the files a release carries (bind-mounted config such
// as a Caddyfile): they are uploaded on every deploy.
const maxBundled = 16 << 20

// bundle is the release as it is written to the host.
type bundle struct {
	compose []byte            // the rendered Compose file
	files   map[string][]byte // project-relative path → content, for bind mounts
}

// render writes the project as the host will run it: images pinned,
// nothing left to build, environment resolved (env_file paths of this
// machine mean nothing there), bind-mounted files of the project carried
// to the host, and the migration service moved out of `up`.
//
// Carried files live under dir/files/<hash of their content>/, so a
// rollback mounts its own Caddyfile, and an unchanged file keeps its path:
// a new path would make compose recreate the container on every deploy.
func render(proj *project.Project, name, dir string, images map[string]string, migrate string) (*bundle, error) {
	src := proj.Compose
	p, err := src.WithServicesTransform(func(name string, s types.ServiceConfig) (types.ServiceConfig, error) {
		return s, nil // a deep copy: the caller's project stays as loaded
	})
	if err != nil {
		return nil, err
	}
	rename(p, name)
	b := &bundle{files: map[string][]byte{}}
	budget := int64(maxBundled)
	carry := func(source string) (string, error) {
		if !proj.Dir.Contains(source) {
			return source, nil // outside the project: a path on the host, such as the Docker socket
		}
		rel, _ := filepath.Rel(proj.Dir.Path(), source)
		// Through the project directory: a link that leads out of it, a
		// device or a pipe is refused before anything is read.
		found := map[string][]byte{} // path below source → content
		err := proj.Dir.Walk(source, &budget, func(r string, data []byte) error {
			found[filepath.ToSlash(r)] = data
			return nil
		})
		if _, over := errors.AsType[*project.TooLargeError](err); over && budget < project.MaxFileSize {
			err = fmt.Errorf("bind-mounted files add up to more than %d MiB: mount large data from a volume instead", maxBundled>>20)
		}
		if err != nil {
			return "", fmt.Errorf("carry %s to the host: %w", rel, err)
		}
		h := sha256.New()
		for _, name := range slices.Sorted(maps.Keys(found)) {
			fmt.Fprintf(h, "%q %d\n", name, len(found[name]))
			h.Write(found[name])
		}
		base := path.Join("files", hex.EncodeToString(h.Sum(nil))[:16], filepath.ToSlash(rel))
		for name, data := range found {
			b.files[path.Join(base, name)] = data
		}
		return path.Join(dir, base), nil
	}
	for name, s := range p.Services {
		ref, ok := images[name]
		if !ok {
			return nil, fmt.Errorf("no image for service %s", name)
		}
		s.Image, s.Build, s.PullPolicy = ref, nil, types.PullPolicyNever
		s.EnvFiles = nil
		for i, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if s.Volumes[i].Source, err = carry(v.Source); err != nil {
				return nil, fmt.Errorf("service %s: %w", name, err)
			}
		}
		if name == migrate {
			s.Profiles = []string{migrateProfile}
		} else if _, waits := s.DependsOn[migrate]; waits {
			delete(s.DependsOn, migrate) // the gate has run by the time up starts
		}
		p.Services[name] = s
	}
	for _, group := range []types.Configs{p.Configs} {
		for name, c := range group {
			if c.File != "" {
				if c.File, err = carry(c.File); err != nil {
					return nil, err
				}
				group[name] = c
			}
		}
	}
	for name, c := range p.Secrets {
		if c.File != "" {
			if c.File, err = carry(c.File); err != nil {
				return nil, err
			}
			p.Secrets[name] = c
		}
	}
	out, err := p.MarshalYAML()
	if err != nil {
		return nil, fmt.Errorf("render the Compose file: %w", err)
	}
	if b.compose, err = escapeDollars(out); err != nil {
		return nil, fmt.Errorf("render the Compose file: %w", err)
	}
	return b, nil
}

// escapeDollars protects values that were interpolated already (or were
// $$-escaped) from a second interpolation by compose on the host.
func escapeDollars(doc []byte) ([]byte, error) {
	if !bytes.Contains(doc, []byte("$")) {
		return doc, nil
	}
	var n yaml.Node
	if err := yaml.Unmarshal(doc, &n); err != nil {
		return nil, err
	}
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		switch n.Kind {
		case yaml.ScalarNode:
			n.Value = strings.ReplaceAll(n.Value, "$", "$$")
		case yaml.MappingNode:
			for i := 1; i < len(n.Content); i += 2 { // values only: keys are not interpolated
				walk(n.Content[i])
			}
		default:
			for _, c := range n.Content {
				walk(c)
			}
		}
	}
	walk(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rename gives the project the name it is deployed under (--project), with
// the default names of its volumes and networks following: they are
// written out explicitly, and would otherwise be shared with the project
// the file names.
func rename(p *types.Project, name string) {
	old := p.Name
	if name == "" || name == old {
		return
	}
	p.Name = name
	for key, v := range p.Volumes {
		if !bool(v.External) && v.Name == old+"_"+key {
			v.Name = name + "_" + key
			p.Volumes[key] = v
		}
	}
	for key, n := range p.Networks {
		if !bool(n.External) && n.Name == old+"_"+key {
			n.Name = name + "_" + key
			p.Networks[key] = n
		}
	}
}
