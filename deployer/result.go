package deployer

import (
	"sync"
	"time"
)

// Result is how a deploy went on one host: what a front door outputs
// (the Action's outputs, `deploy --format json`, the server's records).
type Result struct {
	Host     string `json:"host"`
	Release  string `json:"release,omitempty"`  // the new release's ID, once named
	Previous string `json:"previous,omitempty"` // the release that was live before
	// Deployment and PreviousDeployment are the GitHub Deployments the two
	// releases recorded, when they did.
	Deployment         int64            `json:"deployment,omitempty"`
	PreviousDeployment int64            `json:"previous_deployment,omitempty"`
	Status             Status           `json:"status,omitempty"` // how the new release ended (pending: the deploy stopped before it was complete); "" when none was made
	DryRun             bool             `json:"dry_run,omitempty"`
	Images             map[string]Image `json:"images,omitempty"` // service → the image it runs
	Shipped            int64            `json:"bytes_shipped"`    // image layers sent to the host (0 when it built them itself)
	// Migration is "ran", "skipped" (unchanged since the live release) or
	// "" (no migration service, or not reached).
	Migration string       `json:"migration,omitempty"`
	Steps     []StepResult `json:"steps"`
	// Healthy is when each service of the new release turned healthy,
	// counted from the start of up.
	Healthy map[string]time.Duration `json:"healthy_after_ns,omitempty"`
	// Swaps are the services replaced start-first, with how long old and
	// new containers served side by side.
	Swaps []Swap `json:"swaps,omitempty"`
	// Logs are the last lines of the service that failed its health
	// check, secrets hidden.
	Logs       []string `json:"logs,omitempty"`
	FailedStep string   `json:"failed_step,omitempty"` // the first step that failed
	Error      string   `json:"error,omitempty"`       // why it failed, secrets redacted
}

// Image is the image a service of a release runs on the host.
type Image struct {
	Ref  string `json:"ref"`  // the pinned reference: PROJECT-SERVICE:<12 hex of the ID>
	ID   string `json:"id"`   // sha256:…
	Size int64  `json:"size"` // bytes, as the host's Engine counts them
}

// StepResult is one step's outcome.
type StepResult struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
}

// recorder is a Reporter that also records each step into a Result.
type recorder struct {
	Reporter
	mu      sync.Mutex
	res     *Result
	now     func() time.Time
	secrets []string
}

func (r *recorder) Step(name string) func(error) {
	start := r.now()
	done := r.Reporter.Step(name)
	name = Redact(name, r.secrets)
	return func(err error) {
		done(err)
		s := StepResult{Name: name, Duration: r.now().Sub(start)}
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			s.Error = Redact(err.Error(), r.secrets)
			if r.res.FailedStep == "" {
				r.res.FailedStep = name
			}
		}
		r.res.Steps = append(r.res.Steps, s)
	}
}
