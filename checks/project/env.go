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

// SecretKey matches variable names that hold secrets, wherever the word
// stands in the name: PGPASSWORD, MYSQL_PWD, SECRET_KEY_BASE,
// RAILS_MASTER_KEY, STRIPE_KEY, SENTRY_DSN, SESSION_SALT…
// A word of the name (between underscores) says so, or the name's end.
var SecretKey = regexp.MustCompile(`(?i)(^|_)(pass|password|passwd|pwd|secret|token|key|apikey|credentials?|dsn|salt|auth|private|cookie|signature)(_|$)|(password|passwd|pwd|token|secret|key)$`)

// SecretValues returns every value that must never be printed: every
// value of the env files, whatever its name (they are where secrets are
// kept), those of secret-looking variables in the services' environments,
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
		seen[v] = v != ""
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
	for v, secret := range seen {
		if secret {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}
