package deployer

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/semalink/deploy-action/deployer/remote"
)

// Release is one deploy's record on the host, kept as release.json next to
// the rendered Compose file and .env it ran with.
type Release struct {
	ID       string    `json:"id"`
	Project  string    `json:"project"`
	Created  time.Time `json:"created"`
	Finished time.Time `json:"finished,omitzero"`
	Trigger  string    `json:"trigger"`
	Commit   string    `json:"commit,omitempty"`
	Actor    string    `json:"actor,omitempty"`   // who ran it (a GitHub login)
	RunURL   string    `json:"run_url,omitempty"` // the workflow run that deployed it
	// Deployment is the GitHub Deployment its deploy reported to.
	Deployment int64             `json:"deployment,omitempty"`
	Images     map[string]string `json:"images"` // service → pinned image reference
	// Services are what "up" must bring to health: every service but the
	// one-off jobs. A rollback waits for the same.
	Services []ServiceCheck `json:"services"`
	Files    []string       `json:"files,omitempty"` // the carried files it mounts: files/<hash> under the project
	// Migration identifies the migration service as run (image, command,
	// environment): when the next release's is the same, it has run already.
	Migration string `json:"migration,omitempty"`
	// Swaps say how the services that up would have replaced were
	// replaced, start-first ones with how long old and new overlapped.
	Swaps  []Swap `json:"swaps,omitempty"`
	Status Status `json:"status"`
	Error  string `json:"error,omitempty"`
	// Secrets holds salted hashes of values whose change needs care on
	// the host (a broker's password), never the values.
	Secrets map[string]SecretHash `json:"secrets,omitempty"`
}

// ServiceCheck says how to tell that a service of a release is up.
type ServiceCheck struct {
	Name        string `json:"name"`
	Healthcheck bool   `json:"healthcheck"` // else: running, and not restarting, for the settle time
	Replicas    int    `json:"replicas"`
	// Order is deploy.update_config.order: start-first swaps the service
	// (swap.go); anything else leaves it to compose up, stop-first.
	Order       string `json:"order,omitempty"`
	Parallelism int    `json:"parallelism,omitempty"` // update_config.parallelism: the swap's batch
}

// Status is where a release stands.
type Status string

const (
	StatusPending     Status = "pending"     // being deployed
	StatusLive        Status = "live"        // current
	StatusSuperseded  Status = "superseded"  // was live, a newer release replaced it
	StatusFailed      Status = "failed"      // stopped before up (migration, build, upload)
	StatusRolledBack  Status = "rolled-back" // was up, unhealthy, the previous one came back (failed when it did not)
	StatusInterrupted Status = "interrupted" // the deploy never finished (connection lost, killed)
)

// SecretHash is an HMAC-SHA256 of a secret under a random salt: enough to
// tell whether the secret changed, useless for recovering it.
type SecretHash struct {
	Salt string `json:"salt"`
	Hash string `json:"hash"`
}

// HashSecret hashes value under a fresh salt.
func HashSecret(value string) SecretHash {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	return SecretHash{Salt: hex.EncodeToString(salt), Hash: hashWith(salt, value)}
}

// Matches reports whether value is the secret that was hashed.
func (h SecretHash) Matches(value string) bool {
	salt, err := hex.DecodeString(h.Salt)
	if err != nil {
		return false
	}
	return hmac.Equal([]byte(hashWith(salt, value)), []byte(h.Hash))
}

func hashWith(salt []byte, value string) string {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(value))
	return hex.EncodeToString(m.Sum(nil))
}

// releaseIDTime is how a release ID (and a build tag) begins.
const releaseIDTime = "20060102-150405.000"

// newReleaseID sorts by time, to the millisecond:
// 20261125-201502.318-3f2a9c1-7c1e with the commit, 20261125-201502.318-7c1e
// without.
//
// The random part keeps two deploys of one commit in the same second apart.
func newReleaseID(now time.Time, commit string) string {
	id := now.UTC().Format(releaseIDTime)
	if len(commit) >= 7 {
		id += "-" + commit[:7]
	}
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return id + "-" + hex.EncodeToString(b)
}

func (r *Release) marshal() []byte {
	b, _ := json.MarshalIndent(r, "", "  ")
	return append(b, '\n')
}

func parseRelease(b []byte) (*Release, error) {
	var r Release
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parse release.json: %w", err)
	}
	return &r, nil
}

// current returns the live release's ID, "" on a first deploy.
func (t *target) current(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	out, err := t.host.Output(ctx, "readlink", path.Join(t.plan.projectDir(), "current"))
	if err != nil {
		var ee *remote.ExitError
		if errors.As(err, &ee) {
			return "", nil // no such link yet
		}
		return "", fmt.Errorf("read the live release: %w", err)
	}
	return path.Base(strings.TrimSpace(string(out))), nil
}

func (t *target) writeRelease(ctx context.Context, rel *Release) error {
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	if err := t.host.WriteFile(ctx, path.Join(t.releaseDir(rel.ID), "release.json"), rel.marshal(), 0o600); err != nil {
		return fmt.Errorf("write release.json: %w", err)
	}
	return nil
}

func (t *target) readRelease(ctx context.Context, id string) (*Release, error) {
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	b, err := t.host.ReadFile(ctx, path.Join(t.releaseDir(id), "release.json"))
	if err != nil {
		return nil, fmt.Errorf("read release %s: %w", id, err)
	}
	return parseRelease(b)
}

// releaseIDs lists the releases on the host, oldest first.
func (t *target) releaseIDs(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	out, err := t.host.Output(ctx, "ls", "-1", path.Join(t.plan.projectDir(), "releases"))
	if err != nil {
		var ee *remote.ExitError
		if errors.As(err, &ee) {
			return nil, nil
		}
		return nil, fmt.Errorf("list releases: %w", err)
	}
	ids := strings.Fields(string(out))
	slices.Sort(ids)
	return ids, nil
}
