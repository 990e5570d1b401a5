// Package ghdeploytest is a stand-in for the part of GitHub's REST API
// that ghdeploy calls. It checks every request as GitHub documents it
// (method, path, token, body fields) and records what it was asked.
package ghdeploytest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// Call is one request the server accepted.
type Call struct {
	Deployment int64          // the Deployment it is about
	State      string         // "created" for a new Deployment, else the status posted
	Body       map[string]any // the JSON it carried
}

// Server is a repository's deployments endpoints.
type Server struct {
	*httptest.Server
	Token      string
	Repository string // OWNER/NAME
	// Forbid answers 403 as GitHub does when the token lacks
	// deployments: write.
	Forbid bool

	t     testing.TB
	mu    sync.Mutex
	calls []Call
	next  int64
}

var (
	deploymentsPath = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/deployments$`)
	statusesPath    = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/deployments/([0-9]+)/statuses$`)
	states          = []string{"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}
)

// New starts a server for repository; it is closed when the test ends.
func New(t testing.TB, token, repository string) *Server {
	s := &Server{Token: token, Repository: repository, t: t, next: 100}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Calls are the requests accepted so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Create records a Deployment of ref as GitHub does when someone else
// creates one (the Deployment of a deployment event), and returns its ID.
func (s *Server) Create(ref, environment string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	s.calls = append(s.calls, Call{Deployment: s.next, State: "created", Body: map[string]any{"ref": ref, "environment": environment}})
	return s.next
}

func (s *Server) fail(w http.ResponseWriter, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.t.Errorf("GitHub stand-in: %s", msg)
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if got := r.Header.Get("Authorization"); got != "Bearer "+s.Token {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]string{"message": "Bad credentials"})
		return
	}
	if r.Method != http.MethodPost {
		s.fail(w, http.StatusMethodNotAllowed, "%s %s: only POST is expected", r.Method, r.URL.Path)
		return
	}
	if s.Forbid {
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(map[string]string{"message": "Resource not accessible by integration",
			"documentation_url": "https://docs.github.com/rest/deployments/deployments#create-a-deployment"})
		return
	}
	var body map[string]any
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		s.fail(w, http.StatusBadRequest, "%s: body is not JSON: %v", r.URL.Path, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := deploymentsPath.FindStringSubmatch(r.URL.Path); m != nil && m[1] == s.Repository {
		// POST /repos/{owner}/{repo}/deployments: ref is required;
		// required_contexts [] skips status checks; auto_merge false.
		if ref, _ := body["ref"].(string); ref == "" {
			s.fail(w, http.StatusUnprocessableEntity, "create a deployment: no ref")
			return
		}
		if ctx, ok := body["required_contexts"].([]any); !ok || len(ctx) != 0 {
			s.fail(w, http.StatusConflict, "create a deployment: required_contexts %v, want []", body["required_contexts"])
			return
		}
		if body["auto_merge"] != false {
			s.fail(w, http.StatusConflict, "create a deployment: auto_merge %v, want false", body["auto_merge"])
			return
		}
		s.next++
		s.calls = append(s.calls, Call{Deployment: s.next, State: "created", Body: body})
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"id": s.next, "ref": body["ref"], "environment": body["environment"]})
		return
	}
	if m := statusesPath.FindStringSubmatch(r.URL.Path); m != nil && m[1] == s.Repository {
		// POST /repos/{owner}/{repo}/deployments/{id}/statuses: state is
		// required and one of GitHub's.
		id, _ := strconv.ParseInt(m[2], 10, 64)
		state, _ := body["state"].(string)
		if !slices.Contains(states, state) {
			s.fail(w, http.StatusUnprocessableEntity, "status %q of deployment %d is not a state", state, id)
			return
		}
		if id <= 100 || id > s.next {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"message": "Not Found"})
			return
		}
		s.calls = append(s.calls, Call{Deployment: id, State: state, Body: body})
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"id": len(s.calls), "state": state})
		return
	}
	s.fail(w, http.StatusNotFound, "%s %s is not an endpoint the deployer should call", r.Method, r.URL.Path)
}
