package deployer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/deployer/remote"
)

// Options are a deploy's settings as a front door holds them: plain values
// from flags, the Action's inputs or a server's configuration. NewPlan
// turns them, with the project's x-deployer settings, into a Plan. Every
// front door goes through it, so the operator's settings win over the
// Compose file's (which may come from a pull request) the same way
// everywhere.
type Options struct {
	Load project.Options // the Compose project: files, env files, profiles, environment, root
	Name string          // the project's name on the host; default: the file's name:

	Hosts       []string               // [USER@]HOST[:PORT]; the user defaults to root
	SSHKey      string                 // private key file; "" for the SSH agent
	KnownHosts  string                 // known_hosts file that vouches for the hosts' keys
	Fingerprint string                 // or the host key's SHA256:… fingerprint
	Passphrase  func() ([]byte, error) // asked only for an encrypted key
	// ConnectTimeout bounds the TCP connection and SSH handshake with each
	// host; 0: remote's default.
	ConnectTimeout time.Duration
	Local          bool   // this machine's Docker Engine, without SSH
	Root           string // the deployer's directory on the host

	Migrate        string // default: x-deployer.migrate
	HealthTimeout  time.Duration
	MigrateTimeout time.Duration
	LockTimeout    time.Duration
	Keep           int
	NoRollback     bool
	DryRun         bool
	Redeploy       bool // the live release's images again, no build (Plan.Redeploy)

	Builder string // host, local, or a buildkitd address (only here, never from the file)
	// DefaultBuilder is the builder when neither Builder nor x-deployer
	// names one: "" (host) for the command line, local for the Action.
	DefaultBuilder     string
	InsecureBuilder    bool // allow a plaintext tcp:// builder
	CacheFrom, CacheTo []string
	Progress           io.Writer // BuildKit's live display (a terminal), or nil

	Checks checks.Options
	Strict bool

	Trigger string // cli, action, workflow_dispatch, webhook
	Commit  string // default: GITHUB_SHA, else the git HEAD of the directory the deployer runs in
	Actor   string // who asked (a GitHub login), recorded in the release
	RunURL  string // where the run that deploys can be read, recorded in the release
	// Deployment is the GitHub Deployment this deploy reports to, recorded
	// in the release so that a rollback can report to it again; 0: none.
	Deployment int64
}

// ConfigError is a deploy that cannot start as configured; nothing was
// contacted.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configError(err error) error {
	if err == nil {
		return nil
	}
	return &ConfigError{Err: err}
}

// Exit codes of every front door: what a failed deploy means.
const (
	ExitFindings = 1 // the preflight checks stopped it; nothing changed
	ExitConfig   = 2 // the configuration could not be loaded, or is wrong
	ExitFailed   = 3 // it failed on the host; the previous release serves
)

// ExitCode maps an error of NewPlan, Run, Rollback or the like to its exit
// code: 0 for none.
func ExitCode(err error) int {
	var cf *CheckFailed
	var ce *ConfigError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &cf):
		return ExitFindings
	case errors.As(err, &ce):
		return ExitConfig
	}
	return ExitFailed
}

// NewPlan loads the project and builds the Plan of a deploy: the options
// first, x-deployer's settings where an option is unset. Its errors are
// *ConfigErrors.
func NewPlan(ctx context.Context, o Options) (*Plan, error) {
	p, err := project.Load(ctx, o.Load)
	if err != nil {
		return nil, configError(fmt.Errorf("load the Compose project: %w", err))
	}
	s := p.Settings
	hosts, err := o.hosts(s)
	if err != nil {
		return nil, configError(err)
	}
	builder, err := o.builder(s)
	if err != nil {
		return nil, configError(err)
	}
	plan := &Plan{
		Project: p, Name: cmp.Or(o.Name, p.Compose.Name), Hosts: hosts, Local: o.Local, Root: o.Root,
		Migrate:        cmp.Or(o.Migrate, s.Migrate),
		HealthTimeout:  cmp.Or(o.HealthTimeout, s.HealthTimeout.Duration),
		MigrateTimeout: cmp.Or(o.MigrateTimeout, s.MigrateTimeout.Duration),
		LockTimeout:    cmp.Or(o.LockTimeout, s.LockTimeout.Duration),
		Keep:           cmp.Or(o.Keep, s.Keep),
		NoRollback:     o.NoRollback, DryRun: o.DryRun, Redeploy: o.Redeploy,
		Builder:   builder,
		CacheFrom: o.CacheFrom, CacheTo: o.CacheTo, Progress: o.Progress,
		Checks: o.Checks, Strict: o.Strict,
		Trigger: o.Trigger, Commit: o.Commit, Actor: o.Actor, RunURL: o.RunURL, Deployment: o.Deployment,
		Env:     p.EnvFileVars(),
		Secrets: p.SecretValues(),
	}
	if plan.Commit == "" {
		plan.Commit = commit(ctx)
	}
	if err := plan.Validate(); err != nil {
		return nil, configError(err)
	}
	return plan, nil
}

// NewHostPlan is the Plan of a command that works on what is deployed
// (releases, rollback): the project's name and hosts, the Compose file
// read only when the name is not given or files are.
func NewHostPlan(ctx context.Context, o Options) (*Plan, error) {
	var s project.Settings
	name := o.Name
	if name == "" || len(o.Load.Files) > 0 {
		p, err := project.Load(ctx, o.Load)
		if err != nil {
			return nil, configError(fmt.Errorf("load the Compose project (or give --project NAME): %w", err))
		}
		s, name = p.Settings, cmp.Or(name, p.Compose.Name)
	}
	hosts, err := o.hosts(s)
	if err != nil {
		return nil, configError(err)
	}
	return &Plan{Name: name, Hosts: hosts, Local: o.Local, Root: o.Root, Trigger: cmp.Or(o.Trigger, "cli"), Actor: o.Actor, RunURL: o.RunURL}, nil
}

// hosts turns the options into SSH configs. Where a project goes and which
// host key vouches for a host are the operator's: x-deployer's hosts,
// known-hosts and host-fingerprint never choose them, and one that differs
// from the operator's is an error rather than a silent choice.
func (o Options) hosts(s project.Settings) ([]remote.Config, error) {
	if err := o.agree(s); err != nil {
		return nil, err
	}
	if o.Local {
		if len(o.Hosts) > 0 {
			return nil, errors.New("--local and --host exclude each other: pick one")
		}
		return nil, nil
	}
	if len(o.Hosts) == 0 {
		return nil, errors.New("no host: give --host USER@HOST (with --known-hosts or --host-fingerprint), or --local for this machine")
	}
	if o.KnownHosts == "" && o.Fingerprint == "" {
		return nil, errors.New("the host key cannot be verified: give --known-hosts FILE (get it with ssh-keyscan HOST and compare the fingerprint with your provider's console) or --host-fingerprint SHA256:…")
	}
	if o.SSHKey != "" {
		if err := remote.CheckKey(o.SSHKey, o.Passphrase); err != nil {
			return nil, err
		}
	}
	var out []remote.Config
	for _, h := range o.Hosts {
		user, addr := "root", h
		if u, rest, ok := strings.Cut(h, "@"); ok {
			user, addr = u, rest
		}
		out = append(out, remote.Config{
			Addr: addr, User: user, KeyFile: o.SSHKey, KnownHosts: o.KnownHosts, Fingerprint: o.Fingerprint,
			Passphrase: o.Passphrase, ConnectTimeout: o.ConnectTimeout,
		})
	}
	return out, nil
}

// agree checks x-deployer's hosts and host keys against the operator's:
// in the file they only state what the operator must also say.
func (o Options) agree(s project.Settings) error {
	conflict := func(key, file, flag, given string) error {
		if given == "" {
			return fmt.Errorf("x-deployer.%s in the Compose file says %s, but only %s chooses that (the file may come from a pull request): give %s, or remove it from the file", key, file, flag, flag)
		}
		return fmt.Errorf("x-deployer.%s in the Compose file says %s, but %s says %s: the two must agree; fix or remove the file's", key, file, flag, given)
	}
	if len(s.Hosts) > 0 && !slices.Equal(slices.Sorted(slices.Values(s.Hosts)), slices.Sorted(slices.Values(o.Hosts))) {
		return conflict("hosts", strings.Join(s.Hosts, ", "), "--host", strings.Join(o.Hosts, ", "))
	}
	if s.HostFingerprint != "" && s.HostFingerprint != o.Fingerprint {
		return conflict("host-fingerprint", s.HostFingerprint, "--host-fingerprint", o.Fingerprint)
	}
	if s.KnownHosts != "" && !sameFile(s.KnownHosts, o.KnownHosts) {
		return conflict("known-hosts", s.KnownHosts, "--known-hosts", o.KnownHosts)
	}
	return nil
}

func sameFile(a, b string) bool {
	if b == "" {
		return false
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// builder is where images are built: the operator's Builder, else
// x-deployer.builder when it says host or local. An address of a buildkitd
// (which receives the build context and the build secrets) is the
// operator's alone to give, and a plaintext tcp:// one needs
// InsecureBuilder.
func (o Options) builder(s project.Settings) (string, error) {
	b := o.Builder
	if b == "" && s.Builder == "" {
		b = o.DefaultBuilder
	}
	switch {
	case s.Builder == "" || s.Builder == o.Builder:
	case o.Builder != "":
		return "", fmt.Errorf("x-deployer.builder in the Compose file says %s, but --builder says %s: the two must agree; fix or remove the file's", s.Builder, o.Builder)
	case s.Builder == BuilderHost || s.Builder == BuilderLocal:
		b = s.Builder
	default:
		return "", fmt.Errorf("x-deployer.builder in the Compose file names the builder %s, which would receive the build context and secrets: only --builder chooses a builder by address (the file may come from a pull request)", s.Builder)
	}
	if strings.HasPrefix(b, "tcp://") && !o.InsecureBuilder {
		return "", fmt.Errorf("builder %s is plaintext TCP: the build context and build secrets would cross the network unencrypted; reach it through unix:// or docker-container://, or give --insecure-builder if the network is yours alone", b)
	}
	return b, nil
}

// commit is the source revision being deployed, when it can be known: the
// workflow's, or the git HEAD of the directory the deployer runs in (the
// operator's choice, not the project's, which may hold a repository of a
// pull request's making; a bare one is never taken).
func commit(ctx context.Context) string {
	if sha := os.Getenv("GITHUB_SHA"); sha != "" {
		return sha
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "-c", "safe.bareRepository=explicit", "rev-parse", "--verify", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
