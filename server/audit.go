package server

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// maxAudit is the size at which the audit log moves to audit.log.1 (the
// one before that is dropped).
const maxAudit = 64 << 20

// Entry is one line of the audit log: a hook request's verdict, or a
// deploy's outcome. It holds no signature and no secret.
type Entry struct {
	Time    time.Time `json:"time"`
	Hook    string    `json:"hook,omitempty"`
	Verdict string    `json:"verdict"`
	Address string    `json:"address,omitempty"`
	Sender  string    `json:"sender,omitempty"`
	Event   string    `json:"event,omitempty"`
	Action  string    `json:"action,omitempty"`
	Project string    `json:"project,omitempty"`
	Ref     string    `json:"ref,omitempty"`
	Release string    `json:"release,omitempty"`
	Deploy  string    `json:"deploy,omitempty"`
	Outcome string    `json:"outcome,omitempty"`
	Reason  string    `json:"reason,omitempty"`
}

// audit appends Entries to state/audit.log, one JSON object a line.
type audit struct {
	mu   sync.Mutex
	path string
	f    *os.File
	size int64
}

func openAudit(dir string) (*audit, error) {
	a := &audit{path: filepath.Join(dir, "audit.log")}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *audit) open() error {
	f, err := os.OpenFile(a.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	a.f, a.size = f, st.Size()
	return nil
}

// Write appends e; the server goes on if the disk refuses it.
func (a *audit) Write(e Entry) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return
	}
	if a.size+int64(len(b)) > maxAudit {
		a.f.Close()
		a.f = nil
		if os.Rename(a.path, a.path+".1") != nil || a.open() != nil {
			return
		}
	}
	n, _ := a.f.Write(b)
	a.size += int64(n)
}

func (a *audit) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	return a.f.Close()
}
