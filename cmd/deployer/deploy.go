package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/semalink/deploy-action/deployer"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// connOptions say how to reach the hosts; deploy, releases, rollback and
// rotate share them.
type connOptions struct {
	hosts          []string
	sshKey         string
	knownHosts     string
	fingerprint    string
	pass           []byte // the Action's input; the command line reads DEPLOYER_SSH_PASSPHRASE
	connectTimeout time.Duration
	local          bool
	root           string
}

func (c *connOptions) addFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&c.hosts, "host", nil, "host to deploy to, [USER@]HOST[:PORT]; repeat for several (one at a time)")
	f.StringVar(&c.sshKey, "ssh-key", "", "private key file (OpenSSH or PEM); default: the SSH agent")
	f.StringVar(&c.knownHosts, "known-hosts", "", "known_hosts file that holds the host's key")
	f.StringVar(&c.fingerprint, "host-fingerprint", "", "the host key's SHA256:… fingerprint, instead of --known-hosts")
	f.DurationVar(&c.connectTimeout, "connect-timeout", 0, "how long to wait for each host's TCP connection and SSH handshake (default 15s)")
	f.BoolVar(&c.local, "local", false, "use this machine's Docker Engine, without SSH")
	f.StringVar(&c.root, "root", deployer.DefaultRoot, "directory of deployer's files on the host")
	_ = f.MarkHidden("root")
}

// passphrase gives an encrypted key's passphrase: the Action's input, or
// the environment, so that it never sits in a flag (and in shell history).
func (c connOptions) passphrase() ([]byte, error) {
	if c.pass != nil {
		return c.pass, nil
	}
	if p, ok := os.LookupEnv("DEPLOYER_SSH_PASSPHRASE"); ok {
		return []byte(p), nil
	}
	return nil, errors.New("the SSH key is encrypted: set DEPLOYER_SSH_PASSPHRASE (in Actions, the ssh-passphrase input, from a secret)")
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
	redeploy        bool
}

func newDeployCommand() *cobra.Command {
	var o deployOptions
	cmd := &cobra.Command{
		Use:   "deploy -f FILE... (--host [USER@]HOST --known-hosts FILE | --local)",
		Short: "Check, then deploy the stack: migrations as a gate, a health-checked start, rollback on failure",
		Long: `deploy connects to each host (its key verified), runs the preflight checks
with the host's facts, builds the images (on the host by default), takes the
project's deploy lock, uploads the release, runs the migration service once
(a failure stops here and the running version keeps serving), starts the new
version, waits for every service to be healthy, and rolls back to the
previous release if one is not.

Hosts are deployed one at a time; the first failure stops the rest.`,
		Example: `  deployer deploy -f compose.yaml --host deploy@203.0.113.7 --known-hosts known_hosts --ssh-key ~/.ssh/deploy
  deployer deploy -f examples/demo/compose.yaml --local`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDeploy(cmd, o) },
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&o.format, "format", "text", "output: text, or json (each host's result on stdout: release, previous, status, images, bytes shipped, migration, steps, error; progress on stderr)")
	return cmd
}

func newRedeployCommand() *cobra.Command {
	o := deployOptions{redeploy: true}
	cmd := &cobra.Command{
		Use:   "redeploy -f FILE... (--host [USER@]HOST --known-hosts FILE | --local)",
		Short: "Deploy the live release's images again, without a build (after a host reboot or a changed secret)",
		Long: `redeploy is a deploy that takes the images of the services with build:
from the live release instead of building them, with the configuration and
environment given now: a changed secret reaches the containers, a host that
rebooted gets its stack back. It takes the deploy lock, runs the migration
gate (skipped when unchanged), waits for health and rolls back like deploy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDeploy(cmd, o) },
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&o.format, "format", "text", "output: text, or json (as deploy)")
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
	progress := cmd.OutOrStdout()
	switch o.format {
	case "", "text":
	case "json":
		// The results are the output; the progress goes to stderr.
		progress = cmd.ErrOrStderr()
	default:
		return &exitError{code: exitConfig, err: fmt.Errorf("--format %q: use text or json", o.format)}
	}
	plan, err := o.plan(cmd)
	if err != nil {
		return err
	}
	results, err := deployer.Run(cmd.Context(), plan, &deployer.TextReporter{W: progress})
	if o.format == "json" {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		if results == nil {
			results = []deployer.Result{}
		}
		if werr := enc.Encode(results); werr != nil && err == nil {
			err = werr
		}
	}
	return deployFailed(err, plan)
}

// deployFailed maps a pipeline error to its exit code, secrets redacted.
func deployFailed(err error, plan *deployer.Plan) error {
	if err == nil {
		return nil
	}
	return &exitError{code: deployer.ExitCode(err), err: errors.New(deployer.Redact(err.Error(), plan.Secrets))}
}

// options are the flags as deployer.Options.
func (o deployOptions) options(cmd *cobra.Command) (deployer.Options, error) {
	checks, err := o.checkOptions.checkOptions()
	if err != nil {
		return deployer.Options{}, err
	}
	opts := deployer.Options{
		Load: o.loadOptions(), Name: o.name,
		Hosts: o.conn.hosts, SSHKey: o.conn.sshKey, KnownHosts: o.conn.knownHosts, Fingerprint: o.conn.fingerprint,
		Passphrase: o.conn.passphrase, ConnectTimeout: o.conn.connectTimeout, Local: o.conn.local, Root: o.conn.root,
		Migrate: o.migrate, HealthTimeout: o.healthTimeout, MigrateTimeout: o.migrateTimeout, LockTimeout: o.lockTimeout,
		Keep: o.keep, NoRollback: o.noRollback, DryRun: o.dryRun, Redeploy: o.redeploy,
		Builder: o.builder, InsecureBuilder: o.insecureBuilder, CacheFrom: o.cacheFrom, CacheTo: o.cacheTo,
		Checks: checks, Strict: o.strict, Trigger: o.trigger,
	}
	progress := cmd.OutOrStdout()
	if o.format == "json" {
		progress = cmd.ErrOrStderr()
	}
	if isTerminal(progress) {
		opts.Progress = progress // BuildKit's live display
	}
	return opts, nil
}

// plan builds the deploy's Plan from the flags.
func (o deployOptions) plan(cmd *cobra.Command) (*deployer.Plan, error) {
	opts, err := o.options(cmd)
	if err != nil {
		return nil, &exitError{code: exitConfig, err: err}
	}
	plan, err := deployer.NewPlan(cmd.Context(), opts)
	if err != nil {
		return nil, &exitError{code: deployer.ExitCode(err), err: err}
	}
	return plan, nil
}
