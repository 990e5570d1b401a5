package deployer

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/semalink/deploy-action/deployer/remote"
)

// prune removes releases beyond Keep, newest kept, and their images when
// no kept release uses them.
//
// The newest Keep releases that went live are kept (the live one among
// them), and apart from them the newest Keep of those that never did
// (failed, rolled back, interrupted): a run of failed deploys must not
// prune the last release that worked. What release.json names is removed
// only when it is the deployer's own: a carried-files directory of this
// project, an image tag of this project.
func (t *target) prune(ctx context.Context, live string) error {
	ctx, cancel := context.WithTimeout(ctx, pruneTimeout)
	defer cancel()
	ids, err := t.releaseIDs(ctx)
	if err != nil {
		return err
	}
	rels := map[string]*Release{}
	var good, other []string // newest first
	for _, id := range slices.Backward(ids) {
		rel, err := t.readRelease(ctx, id)
		if err != nil {
			other = append(other, id)
			continue
		}
		rels[id] = rel
		if id == live || rel.Status == StatusLive || rel.Status == StatusSuperseded {
			good = append(good, id)
		} else {
			other = append(other, id)
		}
	}
	var keep, drop []string
	for _, list := range [][]string{good, other} {
		n := min(len(list), t.plan.Keep)
		keep, drop = append(keep, list[:n]...), append(drop, list[n:]...)
	}
	if len(drop) == 0 {
		return nil
	}
	inUse := map[string]bool{}
	for _, id := range keep {
		if rel := rels[id]; rel != nil {
			for _, ref := range rel.Images {
				inUse[ref] = true
			}
			for _, f := range rel.Files {
				inUse[f] = true
			}
		}
	}
	slices.Sort(drop)
	for _, id := range drop {
		if id == live {
			continue
		}
		if rel := rels[id]; rel != nil {
			for _, ref := range rel.Images {
				if !inUse[ref] && ours(t.plan.Name, ref) {
					removeImage(ctx, t.docker, ref)
				}
			}
			for _, f := range rel.Files {
				if !inUse[f] && carriedDir.MatchString(f) {
					_ = t.host.Run(ctx, remote.Cmd{Args: []string{"rm", "-rf", "--", path.Join(t.plan.projectDir(), f)}})
				}
			}
		}
		if err := t.host.Run(ctx, remote.Cmd{Args: []string{"rm", "-rf", "--", t.releaseDir(id)}}); err != nil {
			return fmt.Errorf("prune release %s: %w", id, err)
		}
		t.rep.Printf("pruned release %s", id)
	}
	return nil
}

// ours tells whether an image reference is one the deployer made for the
// project: PROJECT-SERVICE:<12 hex>, and no other project's.
func ours(project, ref string) bool {
	rest, ok := strings.CutPrefix(ref, project+"-")
	svc, tag, _ := strings.Cut(rest, ":")
	return ok && pinnedTag.MatchString(tag) && svc != "" && !strings.ContainsAny(svc, "/:@")
}

var pinnedTag = regexp.MustCompile(`^[0-9a-f]{12}$`)

// carriedDir is how release.json names a directory of carried files.
var carriedDir = regexp.MustCompile(`^files/[0-9a-f]{16}$`)
