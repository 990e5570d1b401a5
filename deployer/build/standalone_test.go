package build

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/client"
	bkclient "github.com/moby/buildkit/client"
)

// standaloneBuilder connects to the standalone buildkitd of
// scripts/buildkitd: the one TEST_BUILDKITD names, which must answer (the
// test setup started it), or else the one at the script's socket if it is
// there. Without either the test skips, in CI too: the Engine's BuildKit
// is what every test environment has.
func standaloneBuilder(t *testing.T) (*Builder, *client.Client) {
	t.Helper()
	docker := engineDocker(t)
	addr := os.Getenv("TEST_BUILDKITD")
	fail := t.Skipf
	if addr != "" {
		fail = t.Fatalf
	} else {
		state := os.Getenv("BUILDKITD_STATE")
		if state == "" {
			cache, err := os.UserCacheDir()
			if err != nil {
				t.Skipf("skipped: no standalone buildkitd (start one with scripts/buildkitd start): %v", err)
			}
			state = filepath.Join(cache, "deploy-action", "buildkitd")
		}
		sock := filepath.Join(state, "buildkitd.sock")
		if _, err := os.Stat(sock); err != nil {
			t.Skipf("skipped: no standalone buildkitd at unix://%s: start one with scripts/buildkitd start, or set TEST_BUILDKITD=unix://…", sock)
		}
		addr = "unix://" + sock
	}
	b, err := Dial(t.Context(), addr, WithLoad(EngineLoad(docker)))
	if err != nil {
		fail("the standalone buildkitd does not answer (scripts/buildkitd start): %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, docker
}

// forget empties the buildkitd's own cache, as on a fresh CI runner: what
// the next build finds cached, it found in the cache it imported.
func forget(t *testing.T, b *Builder) {
	t.Helper()
	if err := b.c.Prune(t.Context(), nil, bkclient.PruneAll); err != nil {
		t.Fatalf("prune the buildkitd's cache: %v", err)
	}
}

func TestStandaloneLocalCache(t *testing.T) {
	b, docker := standaloneBuilder(t)
	dir := buildContext(t, map[string]string{"Dockerfile": demoDockerfile})
	cache := filepath.Join(t.TempDir(), "cache")
	o := Options{
		CacheFrom: []string{"type=local,src=" + cache},
		CacheTo:   []string{"type=local,dest=" + cache + ",mode=max"},
	}
	build := func(what string) Result {
		t.Helper()
		var out bytes.Buffer
		o.Progress, o.Mode = &out, "plain"
		tag := testTag(t)
		start := time.Now()
		res, err := b.Build(t.Context(), Request{Service: "api", Context: dir, Tag: tag}, o)
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, out.String())
		}
		t.Logf("%s: %v, %d of %d steps cached, cache %d bytes", what, time.Since(start).Round(time.Millisecond), res.Cached, res.Steps, dirSize(t, filepath.Join(cache, "api")))
		img, err := docker.ImageInspect(t.Context(), tag)
		if err != nil {
			t.Fatalf("%s: the image was not loaded into the Engine as %s: %v", what, tag, err)
		}
		if img.ID != res.ImageID {
			t.Errorf("%s: ImageID %s, the Engine has %s", what, res.ImageID, img.ID)
		}
		if res.Digest == "" || res.Digest == res.ImageID {
			t.Errorf("%s: Digest %q, want the manifest's digest", what, res.Digest)
		}
		return res
	}

	forget(t, b)
	cold := build("cold build")
	if cold.Cached == cold.Steps {
		t.Errorf("cold build: all %d steps cached", cold.Steps)
	}
	if _, err := os.Stat(filepath.Join(cache, "api", "index.json")); err != nil {
		t.Fatalf("no local cache exported: %v", err)
	}
	forget(t, b)
	warm := build("rebuild from the local cache")
	if warm.Steps != 2 || warm.Cached != warm.Steps {
		t.Errorf("rebuild from the local cache: %d of %d steps cached, want all of 2", warm.Cached, warm.Steps)
	}
	if warm.ImageID != cold.ImageID {
		t.Errorf("rebuild made %s, cold build %s", warm.ImageID, cold.ImageID)
	}
}

// TestStandaloneCacheStaysBounded builds five times, each time with a
// different 1 MiB file, exporting the local cache (mode=max) and importing
// it again. With the swap the cache holds one build's layers; exported in
// place, as BuildKit does by itself, it keeps every build's.
func TestStandaloneCacheStaysBounded(t *testing.T) {
	b, _ := standaloneBuilder(t)
	const dockerfile = "FROM scratch\nCOPY api /api\nCOPY stamp /stamp\nCOPY big /big\n"
	dir := buildContext(t, map[string]string{"Dockerfile": dockerfile})
	sizes := func(inPlace bool) []int64 {
		b.inPlace = inPlace
		defer func() { b.inPlace = false }()
		cache := filepath.Join(t.TempDir(), "cache")
		o := Options{
			CacheFrom: []string{"type=local,src=" + cache},
			CacheTo:   []string{"type=local,dest=" + cache + ",mode=max"},
		}
		var got []int64
		for i := range 5 {
			big := make([]byte, 1<<20)
			if _, err := rand.Read(big); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(dir, "big"), string(big), 0o644)
			var out bytes.Buffer
			o.Progress, o.Mode = &out, "plain"
			if _, err := b.Build(t.Context(), Request{Service: "api", Context: dir, Tag: testTag(t)}, o); err != nil {
				t.Fatalf("build %d: %v\n%s", i+1, err, out.String())
			}
			got = append(got, dirSize(t, filepath.Join(cache, "api")))
		}
		return got
	}
	swapped := sizes(false)
	inPlace := sizes(true)
	t.Logf("cache size after each of 5 builds, swapped:  %s", mib(swapped))
	t.Logf("cache size after each of 5 builds, in place: %s", mib(inPlace))
	if first, last := swapped[0], swapped[4]; last > first+first/10 {
		t.Errorf("swapped cache grew from %d to %d bytes over five builds", first, last)
	}
	if first, last := inPlace[0], inPlace[4]; last < first+3<<20 {
		t.Errorf("in place the cache grew only from %d to %d bytes: the test no longer shows what the swap prevents", first, last)
	}
}

func mib(sizes []int64) string {
	s := ""
	for i, n := range sizes {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	}
	return s
}
