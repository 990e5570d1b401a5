package main

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/deployer"
	"github.com/semalink/deploy-action/deployer/remote"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// connOptions say how to reach the hosts; deploy, releases, rollback and
// rotate share them.
type connOptions struct {
	hosts       []string
	sshKey      string
	knownHosts  string
	fingerprint string
	local       bool
	root        string
}

func (c *connOptions) addFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&c.hosts, "host", nil, "host to deploy to, [USER@]HOST[:PORT]; repeat for several (one at a time)")
	f.StringVar(&c.sshKey, "ssh-key", "", "private key file (OpenSSH or PEM); default: the SSH agent")
	f.StringVar(&c.knownHosts, "known-hosts", "", "known_hosts file that holds the host's key")
	f.StringVar(&c.fingerprint, "host-fingerprint", "", "the host key's SHA256:… fingerprint, instead of --known-hosts")
	f.BoolVar(&c.local, "local", false, "use this machine's Docker Engine, without SSH")
	f.StringVar(&c.root, "root", deployer.DefaultRoot, "directory of deployer's files on the host")
	_ = f.MarkHidden("root")
}

// configs turns the flags into SSH configs. Where a project goes and
// which host key vouches for a host are the operator's: x-deployer's
// hosts, known-hosts and host-fingerprint (the Compose file may come from
// a pull request) never choose them, and one that differs from the
// operator's is an error rather than a silent choice.
func (c *connOptions) configs(s project.Settings) ([]remote.Config, error) {
	if err := agree(s, c); err != nil {
		return nil, err
	}
	hosts, knownHosts, fingerprint := c.hosts, c.knownHosts, c.fingerprint
	if c.local {
		if len(c.hosts) > 0 {
			return nil, errors.New("--local and --host exclude each other: pick one")
		}
		return nil, nil
	}
	if len(hosts) == 0 {
		return nil, errors.New("no host: give --host USER@HOST (with --known-hosts or --host-fingerprint), or --local for this machine")
	}
	if knownHosts == "" && fingerprint == "" {
		return nil, errors.New("the host key cannot be verified: give --known-hosts FILE (get it with ssh-keyscan HOST and compare the fingerprint with your provider's console) or --host-fingerprint SHA256:…")
	}
	var out []remote.Config
	for _, h := range hosts {
		user, addr := "root", h
		if u, rest, ok := strings.Cut(h, "@"); ok {
			user, addr = u, rest
		}
		out = append(out, remote.Config{
			Addr: addr, User: user, KeyFile: c.sshKey, KnownHosts: knownHosts, Fingerprint: fingerprint,
			Passphrase: passphrase,
		})
	}
	return out, nil
}

// agree checks x-deployer's hosts and host keys against the operator's:
// in the file they only state what the operator must also say.
func agree(s project.Settings, c *connOptions) error {
	conflict := func(key, file, flag, given string) error {
		if given == "" {
			return fmt.Errorf("x-deployer.%s in the Compose file says %s, but only %s chooses that (the file may come from a pull request): give %s, or remove it from the file", key, file, flag, flag)
		}
		return fmt.Errorf("x-deployer.%s in the Compose file says %s, but %s says %s: the two must agree; fix or remove the file's", key, file, flag, given)
	}
	if len(s.Hosts) > 0 && !slices.Equal(slices.Sorted(slices.Values(s.Hosts)), slices.Sorted(slices.Values(c.hosts))) {
		return conflict("hosts", strings.Join(s.Hosts, ", "), "--host", strings.Join(c.hosts, ", "))
	}
	if s.HostFingerprint != "" && s.HostFingerprint != c.fingerprint {
		return conflict("host-fingerprint", s.HostFingerprint, "--host-fingerprint", c.fingerprint)
	}
	if s.KnownHosts != "" && !sameFile(s.KnownHosts, c.knownHosts) {
		return conflict("known-hosts", s.KnownHosts, "--known-hosts", c.knownHosts)
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

// builder is where images are built: the operator's --builder, else
// x-deployer.builder when it says host or local. An address of a buildkitd
// (which receives the build context and the build secrets) is the
// operator's alone to give, and a plaintext tcp:// one needs
// --insecure-builder.
func (o deployOptions) builderFor(s project.Settings) (string, error) {
	b := o.builder
	switch {
	case s.Builder == "" || s.Builder == o.builder:
	case o.builder != "":
		return "", fmt.Errorf("x-deployer.builder in the Compose file says %s, but --builder says %s: the two must agree; fix or remove the file's", s.Builder, o.builder)
	case s.Builder == deployer.BuilderHost || s.Builder == deployer.BuilderLocal:
		b = s.Builder
	default:
		return "", fmt.Errorf("x-deployer.builder in the Compose file names the builder %s, which would receive the build context and secrets: only --builder chooses a builder by address (the file may come from a pull request)", s.Builder)
	}
	if strings.HasPrefix(b, "tcp://") && !o.insecureBuilder {
		return "", fmt.Errorf("builder %s is plaintext TCP: the build context and build secrets would cross the network unencrypted; reach it through unix:// or docker-container://, or give --insecure-builder if the network is yours alone", b)
	}
	return b, nil
}

// passphrase reads an encrypted key's passphrase from the environment, so
// it never sits in a flag (and in shell history).
func passphrase() ([]byte, error) {
	if p, ok := os.LookupEnv("DEPLOYER_SSH_PASSPHRASE"); ok {
		return []byte(p), nil
	}
	return nil, errors.New("the SSH key is encrypted: set DEPLOYER_SSH_PASSPHRASE (in Actions, from a secret)")
}

type deployOptions struct {
	checkOptions
	conn            connOptions
	name            string
	migrate         string
	healthTimeout   time.Duration
	migrateTimeout  time.Duration
	lockTimeout     time.Duration
	keep            int
	noRollback      bool
	dryRun          bool
	trigger         string
	builder         string
	cacheFrom       []string
	cacheTo         []string
	insecureBuilder bool
}

func newDeployCommand() *cobra.Command {
	var o deployOptions
	cmd := &cobra.Command{
		Use:   "deploy -f FILE... (--host [USER@]HOST --known-hosts FILE | --local)",
		Short: "Check, then deploy the stack: migrations as a gate, a health-checked start, rollback on failure",
		Long: `deploy runs the preflight checks, connects to each host (its key verified),
takes the project's deploy lock, builds the images on the host, uploads the
release, runs the migration service once (a failure stops here and the
running version keeps serving), starts the new version, waits for every
service to be healthy, and rolls back to the previous release if one is not.

Hosts are deployed one at a time; the first failure stops the rest.`,
		Example: `  deployer deploy -f compose.yaml --host deploy@203.0.113.7 --known-hosts known_hosts --ssh-key ~/.ssh/deploy
  deployer deploy -f examples/demo/compose.yaml --local`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDeploy(cmd, o) },
	}
	o.addFlags(cmd)
	return cmd
}

// addFlags registers the deploy flags; rotate takes them too.
func (o *deployOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	o.checkOptions.addFlags(f)
	registerCheckCompletions(cmd)
	o.conn.addFlags(f)
	f.StringVarP(&o.name, "project", "p", "", "project name on the host (default: the Compose file's name:)")
	f.StringVar(&o.migrate, "migrate", "", "one-off migration service to run before up (default: x-deployer.migrate)")
	f.DurationVar(&o.healthTimeout, "health-timeout", 0, "how long each service may take to turn healthy (default 2m)")
	f.DurationVar(&o.migrateTimeout, "migrate-timeout", 0, "how long the migration may run (default 10m)")
	f.DurationVar(&o.lockTimeout, "lock-timeout", 0, "how long to wait for another deploy to finish (default 5m)")
	f.IntVar(&o.keep, "keep", 0, "releases to keep on the host, the live one included (default 5)")
	f.BoolVar(&o.noRollback, "no-rollback", false, "leave an unhealthy release running instead of rolling back (for debugging)")
	f.BoolVar(&o.dryRun, "dry-run", false, "check and connect, change nothing")
	f.StringVar(&o.builder, "builder", "", "where images are built: host (its BuildKit; the default), local (this machine's, then only missing layers are shipped), or a buildkitd address unix://… tcp://… docker-container://NAME")
	f.BoolVar(&o.insecureBuilder, "insecure-builder", false, "allow a plaintext tcp:// builder address (the build context and secrets cross the network unencrypted)")
	f.StringArrayVar(&o.cacheFrom, "cache-from", nil, "BuildKit cache to import, e.g. type=local,src=DIR or type=gha (repeatable)")
	f.StringArrayVar(&o.cacheTo, "cache-to", nil, "BuildKit cache to export, e.g. type=local,dest=DIR,mode=max or type=gha (repeatable)")
	f.StringVar(&o.trigger, "trigger", "cli", "who asked for this deploy, recorded in the release")
	_ = f.MarkHidden("trigger")
}

func runDeploy(cmd *cobra.Command, o deployOptions) error {
	plan, err := o.plan(cmd)
	if err != nil {
		return err
	}
	return deployFailed(deployer.Run(cmd.Context(), plan, &deployer.TextReporter{W: cmd.OutOrStdout()}), plan)
}

// deployFailed maps a pipeline error to its exit code, secrets redacted:
// 1 when the preflight checks stopped it (nothing changed), 3 otherwise.
func deployFailed(err error, plan *deployer.Plan) error {
	if err == nil {
		return nil
	}
	code := exitFailed
	var cf *deployer.CheckFailed
	if errors.As(err, &cf) {
		code = exitFindings
	}
	return &exitError{code: code, err: errors.New(deployer.Redact(err.Error(), plan.Secrets))}
}

// plan loads the project and fills a deployer.Plan from flags and
// x-deployer settings; flags win.
func (o deployOptions) plan(cmd *cobra.Command) (*deployer.Plan, error) {
	opts, err := o.checkOptions.checkOptions()
	if err != nil {
		return nil, &exitError{code: exitConfig, err: err}
	}
	p, err := project.Load(cmd.Context(), o.loadOptions())
	if err != nil {
		return nil, &exitError{code: exitConfig, err: fmt.Errorf("load the Compose project: %w", err)}
	}
	s := p.Settings
	hosts, err := o.conn.configs(s)
	if err != nil {
		return nil, &exitError{code: exitConfig, err: err}
	}
	builder, err := o.builderFor(s)
	if err != nil {
		return nil, &exitError{code: exitConfig, err: err}
	}
	plan := &deployer.Plan{
		Project: p, Name: o.name, Hosts: hosts, Local: o.conn.local, Root: o.conn.root,
		Migrate:        cmp.Or(o.migrate, s.Migrate),
		HealthTimeout:  cmp.Or(o.healthTimeout, s.HealthTimeout.Duration),
		MigrateTimeout: cmp.Or(o.migrateTimeout, s.MigrateTimeout.Duration),
		LockTimeout:    cmp.Or(o.lockTimeout, s.LockTimeout.Duration),
		Keep:           cmp.Or(o.keep, s.Keep),
		NoRollback:     o.noRollback, DryRun: o.dryRun,
		Builder:   builder,
		CacheFrom: o.cacheFrom, CacheTo: o.cacheTo,
		Checks: opts, Strict: o.strict,
		Trigger: o.trigger, Commit: commit(),
		Env:     p.EnvFileVars(),
		Secrets: p.SecretValues(),
	}
	if isTerminal(cmd.OutOrStdout()) {
		plan.Progress = cmd.OutOrStdout() // BuildKit's live display
	}
	if err := plan.Validate(); err != nil {
		return nil, &exitError{code: exitConfig, err: err}
	}
	return plan, nil
}

// commit is the source revision being deployed, when it can be known.
func commit() string {
	if sha := os.Getenv("GITHUB_SHA"); sha != "" {
		return sha
	}
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
