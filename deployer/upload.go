package deployer

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
)

// upload writes the release: compose.yaml and .env in its directory (both
// 0600: they hold the resolved environment), the bind-mounted files of the
// project (0644: a container's own user reads them) under files/, after
// release.json.
func (t *target) upload(ctx context.Context, rel *Release) error {
	ctx, cancel := context.WithTimeout(ctx, uploadTimeout)
	defer cancel()
	b, err := render(t.plan.Project, t.plan.Name, t.plan.projectDir(), rel.Images, t.plan.Migrate)
	if err != nil {
		return err
	}
	rel.Secrets = secretHashes(t.plan.Project.Compose)
	if t.plan.Migrate != "" {
		rel.Migration = migrationID(t.plan.Project.Compose, t.plan.Migrate, rel.Images[t.plan.Migrate])
	}
	rel.Services = t.healthServices(ctx, rel.Images)
	names := slices.Sorted(maps.Keys(b.files))
	for _, name := range names {
		rel.Files = appendUnique(rel.Files, strings.Join(strings.SplitN(name, "/", 3)[:2], "/"))
	}
	// First, so that a release cut short here is on record (failed, or
	// interrupted when the deploy could not say so) with the files that
	// prune must keep for it.
	if err := t.writeRelease(ctx, rel); err != nil {
		return err
	}
	for _, name := range names {
		if err := t.host.WriteFile(ctx, path.Join(t.plan.projectDir(), name), b.files[name], 0o644); err != nil {
			return fmt.Errorf("upload %s: %w", name, err)
		}
	}
	env, err := envFile(releaseEnv(t.plan.Env))
	if err != nil {
		return err
	}
	dir := t.releaseDir(rel.ID)
	for name, data := range map[string][]byte{"compose.yaml": b.compose, ".env": env} {
		if err := t.host.WriteFile(ctx, path.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("upload %s: %w", name, err)
		}
	}
	return nil
}

func appendUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
