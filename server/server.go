package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/semalink/deploy-action/internal/ghdeploy"
	"golang.org/x/net/netutil"
)

// Limits of the HTTP front.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 60 * time.Second             // a 25 MiB GitHub body at 3.5 Mbit/s
	writeTimeout      = readTimeout + 30*time.Second // counted from the end of the headers, so past a slow body's read
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 64 << 10
	maxConns          = 1024 // connections held open at once, slow ones included
	maxInFlight       = 64   // hook requests being read or answered at once: 503 beyond
	maxBody           = 1 << 20
	maxGitHubBody     = 25 << 20 // GitHub's own cap on a delivery
	postTimeout       = 10 * time.Second
)

// Options are what a test (or an embedding program) may change; the zero
// value serves as deployer serve does.
type Options struct {
	// Run runs a deploy; nil: package deployer against this machine's
	// Engine.
	Run Runner
	// Status answers a status question about a project; nil: its releases
	// on this machine.
	Status func(ctx context.Context, project string) (string, error)
	Log    *slog.Logger // nil: standard error
	// Scrub leaves only a short list of harmless variables in the
	// process's environment once the secrets are read, before any deploy
	// starts (ScrubEnvironment): deployer serve does.
	Scrub bool
}

// Server is deployer serve.
type Server struct {
	cfg      *Config
	now      func() time.Time
	log      *slog.Logger
	replays  *Replays
	queue    *queue
	audit    *audit
	metrics  *metrics
	fails    *failures
	inflight chan struct{}
	status   func(ctx context.Context, project string) (string, error)
	token    string         // GITHUB_TOKEN, for Deployment statuses ("": none)
	post     *http.Client   // to Slack's response_url
	notes    sync.WaitGroup // statuses and messages being sent

	admitMu    sync.Mutex
	perAddress map[string]reader // bodies being read, by address (limitKey)
	reading    int64             // bytes of bodies being read

	stopping context.Context // ends at shutdown: log streams end with it
	stop     context.CancelFunc
}

// New opens the server's state (replay cache, deploy records, audit log)
// and picks up the deploys that were queued when it last stopped.
func New(cfg *Config, o Options) (*Server, error) {
	s := &Server{cfg: cfg, now: time.Now, log: o.Log, status: o.Status,
		inflight: make(chan struct{}, maxInFlight), perAddress: map[string]reader{}}
	s.stopping, s.stop = context.WithCancel(context.Background())
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}

	s.post = &http.Client{Timeout: postTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if err := os.MkdirAll(cfg.State, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	s.fails = newFailures(s.now)
	var err error
	if s.replays, err = OpenReplays(cfg.State, s.now); err != nil {
		return nil, err
	}
	if s.audit, err = openAudit(cfg.State); err != nil {
		return nil, err
	}
	if cfg.Hooks.GitHub != nil {
		if s.token = os.Getenv("GITHUB_TOKEN"); s.token == "" {
			s.log.Warn("GITHUB_TOKEN is not set: deployment events deploy, but their Deployments hear nothing back")
		}
	}
	if o.Scrub {
		ScrubEnvironment()
	}
	pipe := newPipeline(cfg) // after the scrub: git gets what is left
	if s.status == nil {
		s.status = pipe.Status
	}
	run := o.Run
	if run == nil {
		run = pipe.Run
	}
	s.metrics = newMetrics(func() int { return s.queue.Depth() })
	var interrupted []Deploy
	s.queue, interrupted, err = openQueue(filepath.Join(cfg.State, "deploys"), s.starting(run), s.now, s.ended)
	if err != nil {
		return nil, err
	}
	for _, d := range interrupted {
		s.ended(d) // its Deployment and Slack hear of it, and the audit log
	}
	s.queue.start()
	return s, nil
}

// starting wraps run to tell a Deployment that its deploy started.
func (s *Server) starting(run Runner) Runner {
	return func(ctx context.Context, d Deploy, log io.Writer) (Outcome, error) {
		s.log.Info("deploy started", "id", d.ID, "project", d.Project, "action", d.Action, "ref", d.Ref)
		s.deploymentStatus(ctx, d, ghdeploy.InProgress, "")
		return run(ctx, d, log)
	}
}

// ended hears of a finished deploy (under the queue's lock: what it sends
// goes out on its own).
func (s *Server) ended(d Deploy) {
	s.metrics.deploy(d)
	s.audit.Write(Entry{Time: s.now(), Hook: d.Hook, Verdict: "finished", Sender: d.Sender, Action: d.Action,
		Project: d.Project, Ref: d.Ref, Release: d.Release, Deploy: d.ID, Outcome: d.Status, Reason: d.Error})
	s.log.Info("deploy ended", "id", d.ID, "project", d.Project, "status", d.Status, "release", d.Release, "error", d.Error)
	s.notes.Add(1)
	go func() {
		defer s.notes.Done()
		ctx := context.Background() // each call bounds itself
		state := map[string]string{Succeeded: ghdeploy.Success, Failed: ghdeploy.Failure}[d.Status]
		if state == "" {
			state = ghdeploy.Error // superseded, refused
		}
		s.deploymentStatus(ctx, d, state, d.Error)
		if d.respond != "" {
			s.respond(ctx, d.respond, outcomeText(d))
		}
	}()
}

func outcomeText(d Deploy) string {
	msg := fmt.Sprintf("%s of %s (%s): %s", d.Action, d.Project, d.ID, d.Status)
	if d.Release != "" {
		msg += ", release " + d.Release
	}
	if d.Error != "" {
		msg += ": " + d.Error
	}
	return msg
}

// deploymentStatus posts state on d's GitHub Deployment, if it has one.
func (s *Server) deploymentStatus(ctx context.Context, d Deploy, state, description string) {
	g := s.cfg.Hooks.GitHub
	if d.Deployment == 0 || g == nil || s.token == "" {
		return
	}
	c, err := ghdeploy.New(s.token, g.APIURL, d.Repository)
	if err == nil {
		err = c.Status(ctx, d.Deployment, state, "", "", description)
	}
	if err != nil {
		s.log.Warn("GitHub Deployment status", "deploy", d.ID, "state", state, "error", err)
	}
}

// Handler is the server's HTTP interface.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks/github", s.hook(hookGitHub{s}))
	mux.HandleFunc("POST /hooks/slack", s.hook(hookSlack{s}))
	mux.HandleFunc("POST /hooks/standard", s.hook(hookStandard{s}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "queued": s.queue.Depth()})
	})
	mux.HandleFunc("GET /metrics", s.reader(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.metrics.write(w)
	}))
	mux.HandleFunc("GET /deploys", s.reader(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.queue.List())
	}))
	mux.HandleFunc("GET /deploys/{id}", s.reader(func(w http.ResponseWriter, r *http.Request) {
		d, ok := s.queue.Get(r.PathValue("id"))
		if !ok {
			writeError(w, http.StatusNotFound, "no deploy "+r.PathValue("id")+": see GET /deploys")
			return
		}
		writeJSON(w, http.StatusOK, d)
	}))
	mux.HandleFunc("GET /deploys/{id}/log", s.reader(s.streamLog))
	return mux
}

// reader lets only the configured readers (default: loopback) read the
// deploy records, logs and metrics.
func (s *Server) reader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ip := net.ParseIP(clientAddr(r, s.cfg.Proxies))
		for _, n := range s.cfg.readers {
			if ip != nil && n.Contains(ip) {
				h(w, r)
				return
			}
		}
		writeError(w, http.StatusForbidden, "this address may not read the server's records: see readers in docs/server.md")
	}
}

// streamLog writes a deploy's log, following it while the deploy runs.
func (s *Server) streamLog(w http.ResponseWriter, r *http.Request) {
	rc, ok := s.queue.Log(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no deploy "+r.PathValue("id")+": see GET /deploys")
		return
	}
	defer rc.Close()
	stop := context.AfterFunc(r.Context(), func() { rc.Close() })
	defer stop()
	stopAll := context.AfterFunc(s.stopping, func() { rc.Close() })
	defer stopAll()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	rcon := http.NewResponseController(w)
	// The read deadline would end the stream (and the write deadline is
	// moved on with each chunk): a client that goes away still ends it.
	_ = rcon.SetReadDeadline(time.Time{})
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			_ = rcon.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rcon.Flush()
		}
		if err != nil {
			return
		}
	}
}

// Serve answers on ln until ctx ends, then shuts down: it stops
// accepting, finishes the answers in flight, lets a running deploy end
// (until drain ends) and keeps the waiting ones on disk.
func (s *Server) Serve(ctx context.Context, ln net.Listener, drain time.Duration) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	ln = netutil.LimitListener(ln, maxConns)
	if t := s.cfg.TLS; t != nil {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("serving", "listen", ln.Addr().String(), "projects", len(s.cfg.Projects))
	select {
	case err := <-errc:
		s.Close(context.Background())
		return err
	case <-ctx.Done():
	}
	s.log.Info("shutting down: no new requests; a running deploy may finish", "drain", drain)
	s.queue.stopStarting() // before the answers in flight end: nothing new starts
	s.stop()               // log streams end
	sctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	err := hs.Shutdown(sctx)
	cancel()
	if errors.Is(err, context.DeadlineExceeded) {
		err = hs.Close() // before the state closes under the answers still going
	}
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	s.Close(dctx)
	return err
}

// Close lets the running deploys end (until ctx ends, then cancels
// them), waits for their statuses to be sent, and closes the state.
func (s *Server) Close(ctx context.Context) {
	s.stop()
	s.queue.Close(ctx)
	s.notes.Wait()
	s.replays.Close()
	s.audit.Close()
}

// ScrubEnvironment leaves only the variables keepEnv names in this
// process's environment, once the secrets are read, so that nothing a
// deploy starts (docker compose, a build, git) inherits GITHUB_TOKEN, a
// hook's secret or anything else of the server's environment: a Compose
// file that names a variable without a value would otherwise pass it into
// a container.
func ScrubEnvironment() {
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !keepEnv(name) {
			os.Unsetenv(name)
		}
	}
}

// keepEnv is what a deploy's git, docker and compose need, and nothing a
// secret is usually kept in.
func keepEnv(name string) bool {
	switch name {
	case "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
		"DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY",
		"GIT_SSH_COMMAND", "GIT_SSH", "SSH_AUTH_SOCK", "SSL_CERT_FILE", "SSL_CERT_DIR",
		"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy":
		return true
	}
	return strings.HasPrefix(name, "LC_")
}

// Deploys is every recorded deploy, newest first (GET /deploys).
func (s *Server) Deploys() []Deploy { return s.queue.List() }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
