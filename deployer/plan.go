package deployer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/deployer/remote"
)

// Plan is everything one deploy needs. Every front door fills one and
// calls Run.
type Plan struct {
	Project *project.Project
	Name    string // the Compose project name on the host

	Hosts []remote.Config // deployed one at a time, each health-gated
	Local bool            // deploy to this machine's Docker Engine, without SSH

	Migrate string // the one-off migration service; "" for none

	HealthTimeout  time.Duration // per service
	Settle         time.Duration // how long services without a healthcheck must stay up
	MigrateTimeout time.Duration
	LockTimeout    time.Duration
	Keep           int  // releases kept on the host, the live one included
	NoRollback     bool // leave a failed release running, for debugging
	DryRun         bool // connect and check, change nothing
	// Redeploy deploys the live release's images again instead of building:
	// the same code, with this plan's configuration and environment.
	Redeploy bool

	// Builder is where images are built: BuilderHost (the default),
	// BuilderLocal, or a standalone buildkitd's address.
	Builder            string
	CacheFrom, CacheTo []string  // BuildKit syntax: type=local,src=DIR …
	Progress           io.Writer // BuildKit's live progress (a terminal); nil: plain, through the Reporter

	Checks checks.Options
	Strict bool // warnings stop the deploy too

	Trigger string // who asked: cli, action, workflow_dispatch, webhook
	Commit  string // the source revision, when known
	Actor   string // who ran it, when known (a GitHub login)
	RunURL  string // the run that deploys (a workflow run's URL), when there is one
	// Deployment is the GitHub Deployment the front door reports this
	// deploy to (0: none); the release records it.
	Deployment int64
	Env        []string // KEY=VALUE from the env files: uploaded as the release's .env
	Secrets    []string // values never to print
	Root       string   // the deployer directory on the host; default /srv/deployer
	Now        func() time.Time

	// connect reaches a host; nil: over SSH. The tests' fakes come in here.
	connect func(context.Context, remote.Config) (Host, func() error, error)
}

// Defaults for the Plan's durations and sizes.
const (
	DefaultRoot           = "/srv/deployer"
	DefaultHealthTimeout  = 2 * time.Minute
	DefaultSettle         = 10 * time.Second
	DefaultMigrateTimeout = 10 * time.Minute
	DefaultLockTimeout    = 5 * time.Minute
	DefaultKeep           = 5
)

var projectName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func (p *Plan) withDefaults() *Plan {
	q := *p
	if q.Root == "" {
		q.Root = DefaultRoot
	}
	if q.HealthTimeout <= 0 {
		q.HealthTimeout = DefaultHealthTimeout
	}
	if q.Settle <= 0 {
		q.Settle = DefaultSettle
	}
	if q.MigrateTimeout <= 0 {
		q.MigrateTimeout = DefaultMigrateTimeout
	}
	if q.LockTimeout <= 0 {
		q.LockTimeout = DefaultLockTimeout
	}
	if q.Keep <= 0 {
		q.Keep = DefaultKeep
	}
	if q.Trigger == "" {
		q.Trigger = "cli"
	}
	if q.Now == nil {
		q.Now = time.Now
	}
	if q.Name == "" && q.Project != nil {
		q.Name = q.Project.Compose.Name
	}
	return &q
}

// Validate reports what is wrong with a plan before anything connects.
func (p *Plan) Validate() error { return p.withDefaults().validate() }

func (p *Plan) validate() error {
	switch {
	case p.Project == nil:
		return errors.New("no Compose project to deploy")
	case !projectName.MatchString(p.Name):
		return fmt.Errorf("project name %q: use lower-case letters, digits, - and _ (set name: in the Compose file or --project)", p.Name)
	case !p.Local && len(p.Hosts) == 0:
		return errors.New("no host to deploy to: give --host USER@HOST with --known-hosts or --host-fingerprint, or --local")
	case p.Local && len(p.Hosts) > 0:
		return errors.New("--local and --host exclude each other")
	case !path.IsAbs(p.Root):
		return fmt.Errorf("root %q must be an absolute path", p.Root)
	}
	if p.Migrate != "" {
		if strings.HasPrefix(p.Migrate, "-") {
			// compose run would take it for an option (--help exits 0,
			// and the gate would pass without a migration).
			return fmt.Errorf("migrate service %q starts with -, which docker compose run takes for an option: rename the service", p.Migrate)
		}
		if _, ok := p.Project.Compose.Services[p.Migrate]; !ok {
			return fmt.Errorf("migrate service %q is not a service of %s: name one of %v", p.Migrate, p.Name, p.Project.Compose.ServiceNames())
		}
	}
	return nil
}

// projectDir is where this project's releases live on the host.
func (p *Plan) projectDir() string { return path.Join(p.Root, p.Name) }
