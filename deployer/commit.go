package deployer

import (
	"context"
	"fmt"
	"path"

	"github.com/semalink/deploy-action/deployer/remote"
)

// finish records how a release ended.
func (t *target) finish(ctx context.Context, rel *Release, status Status, cause error) {
	rel.Status, rel.Finished = status, t.plan.Now().UTC()
	if cause != nil {
		// Persisted, and shown by releases: the last lines of a failed
		// migration may hold what it was given.
		rel.Error = Redact(cause.Error(), t.plan.Secrets)
	}
	if err := t.writeRelease(ctx, rel); err != nil {
		t.rep.Warnf("%v", err)
	}
}

// commit points current at the new release and prunes old ones.
func (t *target) commit(ctx context.Context, rel *Release, prev string) error {
	if err := t.point(ctx, rel.ID); err != nil {
		return err
	}
	t.finish(ctx, rel, StatusLive, nil)
	if prev != "" {
		if old, err := t.readRelease(ctx, prev); err == nil {
			t.finish(ctx, old, StatusSuperseded, nil)
		}
	}
	return t.prune(ctx, rel.ID)
}

// point makes id the current release: a new symlink renamed over the old
// one, so current is never missing.
func (t *target) point(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	dir := t.plan.projectDir()
	tmp := path.Join(dir, ".current."+id)
	if err := t.host.Run(ctx, remote.Cmd{Args: []string{"ln", "-sfn", path.Join("releases", id), tmp}}); err != nil {
		return fmt.Errorf("point current at %s: %w", id, err)
	}
	if err := t.host.Run(ctx, remote.Cmd{Args: []string{"mv", "-T", tmp, path.Join(dir, "current")}}); err != nil {
		return fmt.Errorf("point current at %s: %w", id, err)
	}
	return nil
}
