package build

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// localSwap is a local cache export in progress. BuildKit adds to a local
// cache store and never removes from it, so exporting into the same
// directory build after build grows it without bound (the problem
// docker/build-push-action#252 works around by hand). Instead the export
// goes to next, a new directory beside dest, and commit puts it in dest's
// place: the cache holds exactly what the last successful build exported.
// A failed build leaves dest as it was.
type localSwap struct {
	dest, next string
	done       bool
	rename     func(oldpath, newpath string) error
}

// staleAfter is how old a leftover export directory (from a build that was
// killed) must be before a later build removes it; younger ones may belong
// to a build running now.
const staleAfter = 24 * time.Hour

func newLocalSwap(dest string) (*localSwap, error) {
	parent, base := filepath.Split(filepath.Clean(dest))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("local cache %s: %w", dest, err)
	}
	sweep(parent, base)
	next, err := os.MkdirTemp(parent, base+".new-")
	if err != nil {
		return nil, fmt.Errorf("local cache %s: %w", dest, err)
	}
	return &localSwap{dest: filepath.Clean(dest), next: next, rename: os.Rename}, nil
}

// commit moves the old cache away, the new one in, and removes the old.
// If the new one cannot be moved in, the old one is put back.
func (s *localSwap) commit() error {
	old := ""
	if _, err := os.Lstat(s.dest); err == nil {
		old = s.dest + ".old-" + strings.TrimPrefix(filepath.Base(s.next), filepath.Base(s.dest)+".new-")
		if err := s.rename(s.dest, old); err != nil {
			return fmt.Errorf("local cache %s: move the old cache away: %w", s.dest, err)
		}
	}
	if err := s.rename(s.next, s.dest); err != nil {
		if old != "" {
			if rerr := s.rename(old, s.dest); rerr != nil {
				return fmt.Errorf("local cache %s: move the new cache in: %w; and put the old one back: %v (it is in %s)", s.dest, err, rerr, old)
			}
		}
		return fmt.Errorf("local cache %s: move the new cache in: %w (the old cache is kept)", s.dest, err)
	}
	s.done = true
	if old != "" {
		// Left behind, it is swept by a later build.
		_ = os.RemoveAll(old)
	}
	return nil
}

// abort removes the new cache unless commit put it in place.
func (s *localSwap) abort() {
	if !s.done {
		_ = os.RemoveAll(s.next)
		s.done = true
	}
}

// sweep removes what killed builds left beside a cache directory: old
// caches that were moved away (always garbage) and new ones that never
// got swapped in (once they are surely not a running build's).
func sweep(parent, base string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, base+".old-"):
			_ = os.RemoveAll(filepath.Join(parent, name))
		case strings.HasPrefix(name, base+".new-"):
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleAfter {
				_ = os.RemoveAll(filepath.Join(parent, name))
			}
		}
	}
}
