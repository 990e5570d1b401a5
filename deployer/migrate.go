package deployer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/compose-spec/compose-go/v2/types"
)

// migrate runs the migration service once with the new images. Its output
// streams to the reporter; a failure or a timeout is the gate closing.
//
// A migration container outlives the compose command that runs it when
// that is killed: one this deploy gave up on is removed on the way out
// (one of an interrupted deploy, when the next one takes the lock).
func (t *target) migrate(ctx context.Context, rel *Release) error {
	ctx, cancel := context.WithTimeout(ctx, t.plan.MigrateTimeout)
	defer cancel()
	out := t.rep.Output()
	err := t.cli(rel.ID).RunOnce(ctx, t.plan.Migrate, out, out)
	flush(out)
	if ctx.Err() != nil && lockLost(ctx) == nil {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), hostStepTimeout)
		defer cancel()
		if _, err := t.removeOneOffs(cleanup); err != nil {
			t.rep.Printf("warning: %v", err)
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("migration %s did not finish in %s", t.plan.Migrate, t.plan.MigrateTimeout)
	}
	if err != nil {
		return fmt.Errorf("migration %s failed: %w", t.plan.Migrate, err)
	}
	return nil
}

// migratedBy returns the live release (nil: none) when it ran the very
// same migration (same pinned image, command and environment), ""
// otherwise.
func migratedBy(live, rel *Release) string {
	if live == nil || rel.Migration == "" || live.Migration != rel.Migration {
		return ""
	}
	return live.ID
}

// migrationID identifies the migration service as it will run.
func migrationID(p *types.Project, service, image string) string {
	s, ok := p.Services[service]
	if !ok {
		return ""
	}
	s.Image, s.Build = image, nil
	b, err := json.Marshal(s)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
