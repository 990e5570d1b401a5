package build

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeExport runs what Build does around a local cache export, with a
// fake exporter that writes files into the new directory and then
// succeeds or fails.
func fakeExport(t *testing.T, dest string, files map[string]string, exportErr error, rename func(string, string) error) error {
	t.Helper()
	s, err := newLocalSwap(dest)
	if err != nil {
		return err
	}
	defer s.abort()
	if rename != nil {
		s.rename = rename
	}
	if filepath.Dir(s.next) != filepath.Dir(dest) || !strings.HasPrefix(filepath.Base(s.next), filepath.Base(dest)+".new-") {
		t.Fatalf("export goes to %s, want a new directory beside %s", s.next, dest)
	}
	for name, content := range files {
		write(t, filepath.Join(s.next, name), content, 0o644)
	}
	if exportErr != nil {
		return exportErr
	}
	return s.commit()
}

// tree is the files under dir, name → content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		got[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// siblings is what is beside dest in its parent, dest excluded.
func siblings(t *testing.T, dest string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(dest))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != filepath.Base(dest) {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestLocalSwap(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "cache", "api")
	v1 := map[string]string{"index.json": "v1", "blobs/sha256/aaa": "layer a"}
	v2 := map[string]string{"index.json": "v2", "blobs/sha256/bbb": "layer b"}

	t.Run("first export", func(t *testing.T) {
		if err := fakeExport(t, dest, v1, nil, nil); err != nil {
			t.Fatal(err)
		}
		if got := tree(t, dest); !reflect.DeepEqual(got, v1) {
			t.Fatalf("cache %v, want %v", got, v1)
		}
		if s := siblings(t, dest); len(s) != 0 {
			t.Errorf("left beside the cache: %v", s)
		}
	})
	t.Run("next export replaces it", func(t *testing.T) {
		if err := fakeExport(t, dest, v2, nil, nil); err != nil {
			t.Fatal(err)
		}
		if got := tree(t, dest); !reflect.DeepEqual(got, v2) {
			t.Fatalf("cache %v, want only the new export %v", got, v2)
		}
		if s := siblings(t, dest); len(s) != 0 {
			t.Errorf("left beside the cache: %v", s)
		}
	})
	t.Run("failed build keeps the old cache", func(t *testing.T) {
		err := fakeExport(t, dest, map[string]string{"blobs/sha256/partial": "half a lay"}, errors.New("exit code: 1"), nil)
		if err == nil || err.Error() != "exit code: 1" {
			t.Fatalf("error %v", err)
		}
		if got := tree(t, dest); !reflect.DeepEqual(got, v2) {
			t.Fatalf("cache %v, want it untouched %v", got, v2)
		}
		if s := siblings(t, dest); len(s) != 0 {
			t.Errorf("left beside the cache: %v", s)
		}
	})
	t.Run("failed swap puts the old cache back", func(t *testing.T) {
		var calls []string
		rename := func(from, to string) error {
			calls = append(calls, filepath.Base(from)+" -> "+filepath.Base(to))
			if strings.Contains(from, ".new-") {
				return errors.New("disk on fire")
			}
			return os.Rename(from, to)
		}
		err := fakeExport(t, dest, map[string]string{"index.json": "v3"}, nil, rename)
		if err == nil || !strings.Contains(err.Error(), "move the new cache in: disk on fire (the old cache is kept)") {
			t.Fatalf("error %v", err)
		}
		if len(calls) != 3 || !strings.HasPrefix(calls[0], "api -> api.old-") || !strings.HasPrefix(calls[1], "api.new-") || !strings.HasSuffix(calls[2], " -> api") {
			t.Errorf("renames %q: want the old away, the new in (failing), the old back", calls)
		}
		if got := tree(t, dest); !reflect.DeepEqual(got, v2) {
			t.Fatalf("cache %v, want it back as it was %v", got, v2)
		}
		if s := siblings(t, dest); len(s) != 0 {
			t.Errorf("left beside the cache: %v", s)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		// Five builds, each exporting a layer the others do not have:
		// the cache holds the last one's, not all five.
		for i := range 5 {
			layer := strings.Repeat(string(rune('a'+i)), 1000)
			if err := fakeExport(t, dest, map[string]string{"index.json": "v", "blobs/sha256/" + layer[:8]: layer}, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		if n := dirSize(t, dest); n != 1001 {
			t.Errorf("cache holds %d bytes after five builds, want 1001 (the last build's)", n)
		}
	})
}

func TestSweep(t *testing.T) {
	parent := t.TempDir()
	dest := filepath.Join(parent, "api")
	old := time.Now().Add(-2 * staleAfter)
	for _, name := range []string{"api", "api.old-1", "api.new-young", "api.new-stale", "web.old-1", "apiary"} {
		if err := os.Mkdir(filepath.Join(parent, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(filepath.Join(parent, "api.new-stale"), old, old); err != nil {
		t.Fatal(err)
	}
	sweep(parent, "api")
	got := siblings(t, dest)
	slices.Sort(got)
	want := []string{"api.new-young", "apiary", "web.old-1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("left %v, want %v: old caches and stale exports of api gone, a running export and others' kept", got, want)
	}
}
