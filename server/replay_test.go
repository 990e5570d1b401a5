package server

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReplays(t *testing.T) {
	dir := t.TempDir()
	clock := time.Unix(1_800_000_000, 0)
	now := func() time.Time { return clock }
	r, err := OpenReplays(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", "d1"); err != nil {
		t.Fatal(err)
	}
	if first, err := r.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", "d2"); !errors.Is(err, ErrReplay) || first != "d1" {
		t.Errorf("a replay: %q, %v; want ErrReplay naming d1", first, err)
	}
	if _, err := r.Add("a webhook id with spaces and\nlines", "d3"); err != nil {
		t.Errorf("a sender's id is the sender's to choose: %v", err)
	}
	must(t, r.Close())

	// After a restart inside the window: still a replay.
	clock = clock.Add(replayWindow - time.Second)
	r, err = OpenReplays(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if first, err := r.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", "d4"); !errors.Is(err, ErrReplay) || first != "d1" {
		t.Errorf("a replay after a restart: %q, %v", first, err)
	}
	must(t, r.Close())

	// Past the window it is forgotten, and the file shrinks to what is live.
	clock = clock.Add(2 * time.Second)
	r, err = OpenReplays(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", "d5"); err != nil {
		t.Errorf("past the window: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "replays"))
	if n := strings.Count(string(b), "\n"); n != 1 {
		t.Errorf("the cache holds %d lines after a restart past the window, want the one new", n)
	}
	if fi, err := os.Stat(filepath.Join(dir, "replays")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the cache's mode: %v (%v)", fi.Mode(), err)
	}

	// Concurrent deliveries of one id: exactly one is accepted.
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Add("msg_race", "d6"); err == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if accepted != 1 {
		t.Errorf("%d of 20 concurrent deliveries of one id accepted, want 1", accepted)
	}
}

// A line cut short by a crash is skipped, not fatal.
func TestReplaysTornLine(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "replays"), []byte("1900000000 abc d1\n19000"), 0o600))
	r, err := OpenReplays(dir, func() time.Time { return time.Unix(1_800_000_000, 0) })
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.seen) != 1 {
		t.Errorf("%d entries, want the one whole line", len(r.seen))
	}
}
