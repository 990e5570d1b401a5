package project

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// EnvFileVars returns what the env files (--env-file, or .env) set, as
// sorted KEY=VALUE pairs: the variables a release carries to the host.
func (p *Project) EnvFileVars() []string {
	var out []string
	for k, v := range p.envFileVars {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// SecretKey matches variable names that hold secrets.
var SecretKey = regexp.MustCompile(`(?i)(^|_)(pass|password|passwd|secret|token|api_?key|private_?key|access_?key|secret_?key|auth_?key|credentials?)$`)

// SecretValues returns every value that must never be printed: those of
// secret-looking variables in the env files and the services' environments,
// and the passwords inside URLs.
func (p *Project) SecretValues() []string {
	seen := map[string]bool{}
	add := func(key, value string) {
		if value == "" {
			return
		}
		if SecretKey.MatchString(key) && !strings.HasSuffix(strings.ToUpper(key), "_FILE") {
			seen[value] = true
		}
		if strings.Contains(value, "://") {
			if u, err := url.Parse(value); err == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && pw != "" {
					seen[pw] = true
					seen[value] = true
				}
			}
		}
	}
	for k, v := range p.envFileVars {
		add(k, v)
	}
	if p.Compose != nil {
		for _, s := range p.Compose.Services {
			for k, v := range s.Environment {
				if v != nil {
					add(k, *v)
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}
