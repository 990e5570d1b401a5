package checks

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/semalink/deploy-action/checks/project"
	"go.yaml.in/yaml/v4"
)

var (
	secretKey     = project.SecretKey
	urlWithSecret = regexp.MustCompile(`://[^/:@\s]+:([^@\s]+)@`)
)

var secretInCompose = &Rule{
	ID: "secret-in-compose", Severity: Error,
	Title: "a secret is written into the Compose file",
	Help:  "A password, token or key written as a literal in the Compose file is in the repository's history for good, readable by everyone with access, and cannot be rotated without a commit. Take it from a variable that CI fills from its secret store, written to a .env file with mode 0600 on the host.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, f := range in.Files {
			_, services, ok := f.Lookup("services")
			if !ok || services.Kind != yaml.MappingNode {
				continue
			}
			for i := 0; i+1 < len(services.Content); i += 2 {
				name := services.Content[i].Value
				for _, e := range literalEnv(f, name) {
					if e.value == "" || strings.Contains(e.value, "$") {
						continue
					}
					what := ""
					switch {
					case secretKey.MatchString(e.key) && !strings.HasSuffix(strings.ToUpper(e.key), "_FILE"):
						what = "a literal value"
					case urlWithSecret.MatchString(e.value) && !strings.Contains(urlWithSecret.FindStringSubmatch(e.value)[1], "$"):
						what = "a URL with a literal password"
					default:
						continue
					}
					out = append(out, Finding{Rule: "secret-in-compose", Service: name, Pos: e.pos,
						Message: fmt.Sprintf("%s of %s is %s (value not shown)", e.key, name, what),
						Fix:     fmt.Sprintf("write %s: ${%s} and set %s in the .env file or, in CI, from a secret; then rotate the exposed value", e.key, e.key, e.key)})
				}
			}
		}
		return out
	},
}

type envEntry struct {
	key, value string
	pos        project.Position
}

// literalEnv lists a service's environment as written in one file, in
// either the mapping or the list form.
func literalEnv(f *project.File, service string) []envEntry {
	_, env, ok := f.Lookup("services", service, "environment")
	if !ok {
		return nil
	}
	var out []envEntry
	switch env.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(env.Content); i += 2 {
			k, v := env.Content[i], env.Content[i+1]
			out = append(out, envEntry{k.Value, v.Value, project.Position{File: f.Path, Line: k.Line, Column: k.Column}})
		}
	case yaml.SequenceNode:
		for i, item := range env.Content {
			k, v, _ := strings.Cut(item.Value, "=")
			pos, _, _ := f.Lookup("services", service, "environment", strconv.Itoa(i))
			out = append(out, envEntry{k, v, pos})
		}
	}
	return out
}
