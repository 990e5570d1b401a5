package server

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// replayWindow is how long a delivery is remembered: as long as its
// signature could still be accepted (Tolerance either way), and a minute
// more for clocks.
const replayWindow = 2*Tolerance + time.Minute

// maxReplayEntries bounds the cache: a sender that signs this many
// deliveries inside the window is refused until they age out.
const maxReplayEntries = 100_000

// ErrReplay is a delivery seen before inside the window.
var ErrReplay = errors.New("this delivery was seen before")

// Replays remembers the deliveries a server accepted, for as long as
// they could be replayed, in a file of the server's state directory, so
// that a restart does not forget them. Keys are what the sender signed:
// a hash of the body, with the message ID (Standard Webhooks) or the
// timestamp (Slack) where the scheme signs one.
type Replays struct {
	mu      sync.Mutex
	seen    map[string]replayEntry
	path    string
	file    *os.File
	lines   int // in the file: rewritten when it is mostly expired entries
	appends int
	now     func() time.Time
}

type replayEntry struct {
	expires time.Time
	deploy  string // the deploy the delivery queued, for the 409's body
}

// OpenReplays opens (or creates) the cache in dir and forgets what has
// expired.
func OpenReplays(dir string, now func() time.Time) (*Replays, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("replay cache: %w", err)
	}
	path := filepath.Join(dir, "replays")
	r := &Replays{seen: map[string]replayEntry{}, path: path, now: now}
	if f, err := os.Open(path); err == nil {
		// Bounded by the compaction below: a few times the cap's lines.
		data, err := io.ReadAll(io.LimitReader(f, maxReplayFile))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("replay cache: %w", err)
		}
		r.load(data)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("replay cache: %w", err)
	}
	if err := r.compact(); err != nil {
		return nil, err
	}
	return r, nil
}

// maxReplayFile bounds what is read of the file: more than its
// compaction lets it hold.
const maxReplayFile = 4 * maxReplayEntries * 128

// compact rewrites the file with what has not expired, and appends to
// the new one; when that fails, the old file stays in use. Called with
// r.mu held (or before r is shared).
func (r *Replays) compact() error {
	r.sweep()
	tmp := r.path + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("replay cache: %w", err)
	}
	w := bufio.NewWriter(f)
	for key, e := range r.seen {
		writeEntry(w, key, e)
	}
	err = errors.Join(w.Flush(), f.Sync(), f.Close())
	var next *os.File
	if err == nil {
		// Opened before the rename: the handle follows the file.
		next, err = os.OpenFile(tmp, os.O_APPEND|os.O_WRONLY, 0o600)
	}
	if err == nil {
		if err = os.Rename(tmp, r.path); err != nil {
			next.Close()
		}
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replay cache: %w", err)
	}
	if r.file != nil {
		r.file.Close()
	}
	r.file, r.lines = next, len(r.seen)
	return nil
}

// sweep forgets what has expired. Called with r.mu held.
func (r *Replays) sweep() {
	now := r.now()
	for key, e := range r.seen {
		if !e.expires.After(now) {
			delete(r.seen, key)
		}
	}
}

// append writes a line and syncs it. Now and then it forgets what has
// expired, and rewrites the file when that is most of it (a failed
// rewrite leaves the file as it was). Called with r.mu held.
func (r *Replays) append(line []byte) error {
	if r.file == nil {
		return errors.New("replay cache: closed")
	}
	if r.appends++; r.appends%1024 == 0 {
		r.sweep()
	}
	if r.lines > 2*len(r.seen)+1024 {
		_ = r.compact()
	}
	if _, err := r.file.Write(line); err != nil {
		return fmt.Errorf("replay cache: %w", err)
	}
	r.lines++
	if err := r.file.Sync(); err != nil {
		return fmt.Errorf("replay cache: %w", err)
	}
	return nil
}

// load reads "EXPIRES_UNIX KEY DEPLOY" lines, skipping expired and
// malformed ones (a line cut short by a crash).
func (r *Replays) load(data []byte) {
	now := r.now()
	for line := range bytes.Lines(data) {
		f := strings.Fields(string(line))
		if len(f) != 3 {
			continue
		}
		sec, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if !time.Unix(sec, 0).After(now) {
			delete(r.seen, f[1]) // expired, or forgotten by a later line
			continue
		}
		if len(r.seen) >= maxReplayEntries {
			continue
		}
		r.seen[f[1]] = replayEntry{expires: time.Unix(sec, 0), deploy: f[2]}
	}
}

func writeEntry(w io.Writer, key string, e replayEntry) {
	fmt.Fprintf(w, "%d %s %s\n", e.expires.Unix(), key, e.deploy)
}

// Add records key as the delivery that queued deploy. A key seen before
// and not yet expired gives ErrReplay and the deploy it queued then; a
// full cache gives an error, and nothing is recorded.
func (r *Replays) Add(key, deploy string) (string, error) {
	if key == "" || deploy == "" || strings.ContainsAny(deploy, " \t\r\n") {
		return "", errors.New("replay cache: a key and a deploy ID, one word")
	}
	// Hashed: what the sender chose is kept at a fixed size, one word.
	sum := sha256.Sum256([]byte(key))
	key = hex.EncodeToString(sum[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if e, ok := r.seen[key]; ok && e.expires.After(now) {
		return e.deploy, ErrReplay
	}
	if len(r.seen) >= maxReplayEntries {
		for k, e := range r.seen {
			if !e.expires.After(now) {
				delete(r.seen, k)
			}
		}
		if len(r.seen) >= maxReplayEntries {
			return "", errors.New("replay cache full: too many deliveries inside the window")
		}
	}
	e := replayEntry{expires: now.Add(replayWindow), deploy: deploy}
	var b bytes.Buffer
	writeEntry(&b, key, e)
	// On disk first: a delivery the server answers must be remembered
	// after a crash.
	if err := r.append(b.Bytes()); err != nil {
		return "", err
	}
	r.seen[key] = e
	return deploy, nil
}

// Forget takes back an Add whose deploy could not be queued, so that the
// sender's retry is not taken for a replay.
func (r *Replays) Forget(key string) error {
	sum := sha256.Sum256([]byte(key))
	key = hex.EncodeToString(sum[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.seen, key)
	var b bytes.Buffer
	writeEntry(&b, key, replayEntry{expires: time.Unix(0, 0), deploy: "-"})
	return r.append(b.Bytes())
}

// Close closes the cache's file.
func (r *Replays) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.file == nil {
		return nil
	}
	err := r.file.Close()
	r.file = nil
	return err
}
