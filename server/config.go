package server

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/deployer"
	"github.com/semalink/deploy-action/internal/ghdeploy"
	"go.yaml.in/yaml/v4"
)

// DefaultConfig is where deployer serve reads its configuration.
const DefaultConfig = "/etc/deployer/server.yaml"

// Limits of the configuration.
const (
	maxConfig    = 1 << 20  // the file
	maxSecret    = 64 << 10 // a file: secret
	minSecretLen = 16       // bytes: shorter is guessable
)

// Config is the server's configuration file (docs/server.md).
type Config struct {
	Listen string `yaml:"listen"` // host:port; default 127.0.0.1:9000
	TLS    *TLS   `yaml:"tls"`
	State  string `yaml:"state"` // default /var/lib/deployer/server
	// Root is the deployer's directory on this host, as every other
	// front door's --root: default /srv/deployer.
	Root string `yaml:"root"`
	// Proxies are the addresses of reverse proxies in front of the
	// server (the stack's Caddy): their X-Forwarded-For names the client,
	// for the rate limit and the audit log.
	Proxies []string `yaml:"proxies"`
	// Readers are the networks that may read GET /deploys, their logs
	// and /metrics: default loopback only.
	Readers []string `yaml:"readers"`

	readers  []*net.IPNet
	Projects map[string]Project `yaml:"projects"`
	Hooks    Hooks              `yaml:"hooks"`
}

// TLS is the server's own certificate, when it is not behind a proxy.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Project is a project the server may deploy.
type Project struct {
	ComposeFiles []string `yaml:"compose-files"`
	EnvFiles     []string `yaml:"env-files"`
	Migrate      string   `yaml:"migrate"`
	Source       *Source  `yaml:"source"`

	line int
}

// Source is where a project's refs are fetched from, to deploy a ref.
type Source struct {
	Git    string `yaml:"git"`
	Dir    string `yaml:"dir"`
	Branch string `yaml:"branch"`
}

// Hooks are the endpoints the server answers, each with what it allows.
type Hooks struct {
	GitHub   *GitHubHook   `yaml:"github"`
	Slack    *SlackHook    `yaml:"slack"`
	Standard *StandardHook `yaml:"standard"`
}

// Secrets are a hook's secrets: a list of env:NAME and file:PATH.
type Secrets []Secret

// UnmarshalYAML refuses anything but a list without quoting it: a
// secret written in the wrong place must not end up in an error.
func (s *Secrets) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return errors.New("secrets: give a list of env:NAME or file:PATH")
	}
	for _, item := range n.Content {
		var one Secret
		if err := one.UnmarshalYAML(item); err != nil {
			return err
		}
		*s = append(*s, one)
	}
	return nil
}

// GitHubHook is POST /hooks/github.
type GitHubHook struct {
	Secrets      Secrets  `yaml:"secrets"`
	Repositories []string `yaml:"repositories"`
	Branches     []string `yaml:"branches"`
	Project      string   `yaml:"project"`
	// APIURL is where Deployment statuses go: default GitHub's API, or
	// an Enterprise server's https://HOST/api/v3.
	APIURL string `yaml:"api-url"`
	// Environments are the Deployment environments this server deploys;
	// deployment events for others are ignored. Empty: every one.
	Environments []string `yaml:"environments"`
}

// SlackHook is POST /hooks/slack.
type SlackHook struct {
	Secrets  Secrets  `yaml:"secrets"`
	Teams    []string `yaml:"teams"`
	Channels []string `yaml:"channels"`
	Users    []string `yaml:"users"`
	// ResponseURLs are the prefixes a response_url may start with; the
	// server posts results nowhere else. Default: https://hooks.slack.com/.
	ResponseURLs []string `yaml:"response-urls"`
	// Projects and Actions narrow what commands may ask for; empty:
	// every project, every action.
	Projects []string `yaml:"projects"`
	Actions  []string `yaml:"actions"`
}

// StandardHook is POST /hooks/standard.
type StandardHook struct {
	Secrets  Secrets  `yaml:"secrets"`
	Projects []string `yaml:"projects"`
	Actions  []string `yaml:"actions"`
}

// Actions a request may ask for.
var Actions = []string{"deploy", "redeploy", "rollback"}

// Secret is a hook's secret: env:NAME or file:PATH, never its value.
type Secret struct {
	Ref   string
	line  int
	value []byte
}

// UnmarshalYAML keeps the line, for the errors that name it.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("a secret is env:NAME or file:PATH")
	}
	s.Ref, s.line = n.Value, n.Line
	return nil
}

// Value is the secret, once LoadConfig has read it.
func (s Secret) Value() []byte { return s.value }

// LoadConfig reads and checks the server's configuration: unknown keys,
// secrets that are missing, empty, short or written into the file, hooks
// that name unknown projects or actions, and projects whose Compose files
// do not load are errors that name the line.
func LoadConfig(ctx context.Context, path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("server configuration: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfig+1))
	if err != nil {
		return nil, fmt.Errorf("server configuration %s: %w", path, err)
	}
	if len(data) > maxConfig {
		return nil, fmt.Errorf("server configuration %s: larger than %d bytes", path, maxConfig)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("server configuration %s: empty: see docs/server.md", path)
	} else if err != nil {
		return nil, fmt.Errorf("server configuration %s: %w", path, err)
	}
	var more any
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("server configuration %s: more than one YAML document: keep one", path)
	}
	projectLines(data, &c)
	if err := c.check(ctx); err != nil {
		return nil, fmt.Errorf("server configuration %s: %w", path, err)
	}
	return &c, nil
}

// projectLines notes the line of each project, for its errors.
func projectLines(data []byte, c *Config) {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return
	}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "projects" {
			continue
		}
		ps := top.Content[i+1]
		for j := 0; j+1 < len(ps.Content); j += 2 {
			name := ps.Content[j].Value
			if p, ok := c.Projects[name]; ok {
				p.line = ps.Content[j].Line
				c.Projects[name] = p
			}
		}
	}
}

func (c *Config) check(ctx context.Context) error {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9000"
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || !validPort(port) {
		return fmt.Errorf("listen %q: give HOST:PORT, e.g. 127.0.0.1:9000 or :443 with tls", c.Listen)
	}
	if c.TLS != nil {
		if _, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key); err != nil {
			return fmt.Errorf("tls: %w (give a PEM certificate and its key)", err)
		}
	}
	if c.State == "" {
		c.State = "/var/lib/deployer/server"
	}
	if !filepath.IsAbs(c.State) {
		return fmt.Errorf("state %q: give an absolute path", c.State)
	}
	if c.Root == "" {
		c.Root = deployer.DefaultRoot
	}
	if !filepath.IsAbs(c.Root) {
		return fmt.Errorf("root %q: give an absolute path", c.Root)
	}
	for _, p := range c.Proxies {
		if net.ParseIP(p) == nil {
			return fmt.Errorf("proxies: %q is not an IP address", p)
		}
	}
	if len(c.Readers) == 0 {
		c.Readers = []string{"127.0.0.0/8", "::1/128"}
	}
	for _, r := range c.Readers {
		_, n, err := net.ParseCIDR(r)
		if err != nil {
			return fmt.Errorf("readers: %q is not a network: give e.g. 127.0.0.0/8 or 10.0.0.5/32", r)
		}
		c.readers = append(c.readers, n)
	}
	if len(c.Projects) == 0 {
		return errors.New("projects: none: name at least one, with its compose-files")
	}
	dirs := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(c.Projects)) {
		if s := c.Projects[name].Source; s != nil {
			dir := filepath.Clean(s.Dir)
			for other, owner := range dirs {
				if other == dir || strings.HasPrefix(dir, other+"/") || strings.HasPrefix(other, dir+"/") {
					return fmt.Errorf("line %d: project %s: source.dir %s overlaps %s's %s: give each project a clone of its own, side by side", c.Projects[name].line, name, s.Dir, owner, other)
				}
			}
			dirs[dir] = name
		}
		if !projectName.MatchString(name) {
			return fmt.Errorf("line %d: project %q: use lower-case letters, digits, - and _", c.Projects[name].line, name)
		}
		p := c.Projects[name]
		if err := p.load(ctx, name); err != nil {
			return err
		}
		c.Projects[name] = p
	}
	h := c.Hooks
	if h.GitHub == nil && h.Slack == nil && h.Standard == nil {
		return errors.New("hooks: none: configure github, slack or standard")
	}
	if g := h.GitHub; g != nil {
		if err := readSecrets("github", g.Secrets, false); err != nil {
			return err
		}
		if _, ok := c.Projects[g.Project]; !ok {
			return fmt.Errorf("hooks.github.project %q is not one of the projects", g.Project)
		}
		if len(g.Repositories) == 0 {
			return errors.New("hooks.github.repositories: name the repositories (OWNER/NAME) whose events may deploy")
		}
		if g.APIURL != "" {
			if _, err := ghdeploy.New("token", g.APIURL, "owner/repo"); err != nil {
				return fmt.Errorf("hooks.github.api-url: %w", err)
			}
		}
		if c.Projects[g.Project].Source == nil {
			return fmt.Errorf("hooks.github.project %s has no source: GitHub's events deploy a commit, which needs source.git and source.dir", g.Project)
		}
	}
	if s := h.Slack; s != nil {
		if err := readSecrets("slack", s.Secrets, false); err != nil {
			return err
		}
		if len(s.Teams) == 0 {
			return errors.New("hooks.slack.teams: name the Slack teams (T…) whose commands may deploy")
		}
		if err := c.known("hooks.slack", s.Projects, s.Actions); err != nil {
			return err
		}
		if len(s.ResponseURLs) == 0 {
			s.ResponseURLs = []string{"https://hooks.slack.com/"}
		}
		for _, u := range s.ResponseURLs {
			if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") || strings.Count(u, "/") < 3 {
				return fmt.Errorf("hooks.slack.response-urls: %q: give a prefix with a scheme, host and path, e.g. https://hooks.slack.com/", u)
			}
		}
	}
	if s := h.Standard; s != nil {
		if err := readSecrets("standard", s.Secrets, true); err != nil {
			return err
		}
		if err := c.known("hooks.standard", s.Projects, s.Actions); err != nil {
			return err
		}
		if len(s.Projects) == 0 || len(s.Actions) == 0 {
			return errors.New("hooks.standard: name the projects and the actions its requests may ask for")
		}
	}
	return nil
}

// known checks that a hook's projects and actions exist.
func (c *Config) known(hook string, projects, actions []string) error {
	for _, p := range projects {
		if _, ok := c.Projects[p]; !ok {
			return fmt.Errorf("%s.projects: %q is not one of the projects", hook, p)
		}
	}
	for _, a := range actions {
		if !slices.Contains(Actions, a) {
			return fmt.Errorf("%s.actions: %q is not an action: use %s", hook, a, strings.Join(Actions, ", "))
		}
	}
	return nil
}

// load checks that a project's Compose files load as a deploy would load
// them. With a source, relative compose-files and env-files are in its
// work tree, where a deploy checks the ref out.
func (p *Project) load(ctx context.Context, name string) error {
	if len(p.ComposeFiles) == 0 {
		return fmt.Errorf("line %d: project %s: no compose-files", p.line, name)
	}
	if s := p.Source; s != nil {
		if s.Git == "" || !filepath.IsAbs(s.Dir) {
			return fmt.Errorf("line %d: project %s: source needs git (a URL) and dir (an absolute path)", p.line, name)
		}
		if strings.HasPrefix(s.Git, "-") || (s.Branch != "" && !validRef(s.Branch)) {
			return fmt.Errorf("line %d: project %s: source: git must be a URL or path, branch a branch name", p.line, name)
		}
		if u, err := url.Parse(s.Git); err == nil && u.User != nil {
			_, password := u.User.Password()
			if password || u.Scheme == "http" || u.Scheme == "https" {
				return fmt.Errorf("line %d: project %s: source.git holds a credential, which would show in errors and logs: use an SSH deploy key or a credential helper", p.line, name)
			}
		}
		if !workTree(s.Dir) {
			return fmt.Errorf("line %d: project %s: source.dir %s is not a git work tree: clone it once, as the server's user: git clone %s %s", p.line, name, s.Dir, s.Git, s.Dir)
		}
		for _, files := range []*[]string{&p.ComposeFiles, &p.EnvFiles} {
			for i, f := range *files {
				if !filepath.IsAbs(f) {
					(*files)[i] = filepath.Join(s.Dir, f)
				}
			}
		}
	}
	for _, f := range slices.Concat(p.ComposeFiles, p.EnvFiles) {
		if !filepath.IsAbs(f) {
			return fmt.Errorf("line %d: project %s: %s: give an absolute path (or one in source.dir, with a source)", p.line, name, f)
		}
	}
	loaded, err := project.Load(ctx, project.Options{Files: p.ComposeFiles, EnvFiles: p.EnvFiles, Env: []string{}})
	if err != nil {
		return fmt.Errorf("line %d: project %s: %w", p.line, name, err)
	}
	if m := cmp.Or(p.Migrate, loaded.Settings.Migrate); m != "" {
		if _, ok := loaded.Compose.Services[m]; !ok {
			return fmt.Errorf("line %d: project %s: migrate service %q is not a service of its Compose files: name one of %v", p.line, name, m, loaded.Compose.ServiceNames())
		}
	}
	return nil
}

// secrets are every hook's secrets.
func (c *Config) secrets() []Secret {
	var all []Secret
	if g := c.Hooks.GitHub; g != nil {
		all = append(all, g.Secrets...)
	}
	if s := c.Hooks.Slack; s != nil {
		all = append(all, s.Secrets...)
	}
	if s := c.Hooks.Standard; s != nil {
		all = append(all, s.Secrets...)
	}
	return all
}

func values(secrets []Secret) [][]byte {
	out := make([][]byte, len(secrets))
	for i, s := range secrets {
		out[i] = s.value
	}
	return out
}

// readSecrets reads a hook's secrets, refusing any that is written into
// the file, missing, empty or shorter than 16 bytes.
func readSecrets(hook string, secrets []Secret, standard bool) error {
	if len(secrets) == 0 {
		return fmt.Errorf("hooks.%s.secrets: none: give env:NAME or file:PATH", hook)
	}
	for i := range secrets {
		s := &secrets[i]
		where := fmt.Sprintf("line %d: hooks.%s secret %s", s.line, hook, s.Ref)
		switch kind, ref, _ := strings.Cut(s.Ref, ":"); kind {
		case "env":
			v, ok := os.LookupEnv(ref)
			if !ok {
				return fmt.Errorf("%s: the variable is not set", where)
			}
			s.value = []byte(v)
		case "file":
			v, err := readSecretFile(ref)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			s.value = v
		default:
			return fmt.Errorf("line %d: hooks.%s: a secret is env:NAME or file:PATH, never the secret itself in this file", s.line, hook)
		}
		n := len(s.value)
		if standard {
			key, err := StandardKey(string(s.value))
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			n = len(key)
		}
		if n < minSecretLen {
			return fmt.Errorf("%s: %d bytes, fewer than %d: make a longer one (openssl rand -hex 32)", where, n, minSecretLen)
		}
	}
	return nil
}

// readSecretFile reads a regular file of at most maxSecret bytes (not a
// FIFO, which would block, nor a device), without its last line break.
func readSecretFile(path string) ([]byte, error) {
	b, err := project.ReadPlainFile(path, maxSecret)
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(b, "\r\n"), nil
}

var projectName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n < 65536 // 0: any free port, which the log names
}
