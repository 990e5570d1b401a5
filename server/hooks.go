package server

import (
	"cmp"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A scheme is one of the hook endpoints: how its requests are signed,
// and what they may ask for.
type scheme interface {
	name() string
	limit() int64 // body bytes
	// signed says whether the request carries the scheme's signature
	// headers at all (a request without them is refused unread).
	signed(h http.Header) bool
	// verify checks the signature over body; it returns the replay key.
	verify(h http.Header, body []byte) (string, error)
	// decide parses a verified body and says what to do.
	decide(r *http.Request, body []byte) verdict
}

// verdict is what a verified request comes to: a deploy to queue, or an
// answer.
type verdict struct {
	code    int
	verdict string
	reply   any    // the answer's body, when no deploy is queued
	reason  string // why, for the audit log (no secret)
	deploy  *Deploy
	entry   Entry // who asked for what, for the audit log
}

func deny(code int, v, reason string) verdict {
	return verdict{code: code, verdict: v, reason: reason, reply: map[string]string{"error": reason}}
}

func ignore(reason string) verdict {
	return verdict{code: http.StatusAccepted, verdict: vIgnored, reason: reason, reply: map[string]string{"ignored": reason}}
}

// hook is one endpoint: the in-flight cap, the body limit, the signature
// (and the failure rate limit), then the scheme's decision, the replay
// cache and the queue. Error bodies never echo a signature or a secret.
func (s *Server) hook(sc scheme) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		addr := clientAddr(r, s.cfg.Proxies)
		e := Entry{Hook: sc.name(), Address: addr}
		answer := func(code int, v string, reason string, body any) {
			s.metrics.request(sc.name(), v)
			if v != vRateLimited {
				e.Time, e.Verdict, e.Reason = s.now(), v, reason
				s.audit.Write(e)
			}
			if m, ok := body.(map[string]string); ok && sc.name() == SchemeSlack {
				// Slack shows a command's answer from its text.
				m["response_type"] = "ephemeral"
				m["text"] = cmp.Or(m["text"], m["error"])
			}
			w.Header().Set("Cache-Control", "no-store")
			if code == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", strconv.Itoa(int(failEvery.Seconds())))
			}
			writeJSON(w, code, body)
		}
		fail := func(code int, v, reason string) { answer(code, v, reason, map[string]string{"error": reason}) }

		// failed answers a request that cannot be good: past the
		// address's failure limit, 429 (and no audit line).
		failed := func(code int, v, reason string) {
			if s.fails.fail(addr) {
				fail(http.StatusTooManyRequests, vRateLimited, "too many failed requests from this address: slow down")
				return
			}
			fail(code, v, reason)
		}
		select {
		case s.inflight <- struct{}{}:
			defer func() { <-s.inflight }()
		default:
			w.Header().Set("Retry-After", "1")
			fail(http.StatusServiceUnavailable, vBusy, "too many requests in flight: retry")
			return
		}
		if !sc.signed(r.Header) {
			failed(http.StatusUnauthorized, vUnsigned, "the request is not signed: see docs/server.md for the "+sc.name()+" scheme")
			return
		}
		tooLarge := "the body is over " + strconv.FormatInt(sc.limit(), 10) + " bytes"
		if r.ContentLength > sc.limit() {
			w.Header().Set("Connection", "close")
			failed(http.StatusRequestEntityTooLarge, vTooLarge, tooLarge)
			return
		}
		// One address holds few of the slots, and bodies being read hold
		// a bounded share of memory: a slow sender starves nobody else.
		size := cmp.Or(max(r.ContentLength, 0), sc.limit())
		release, why := s.admit(addr, size)
		if why != "" {
			w.Header().Set("Retry-After", "1")
			fail(http.StatusServiceUnavailable, vBusy, why)
			return
		}
		body, err := readBody(w, r, sc.limit(), size)
		release() // the body is read: the rest is quick, or a deploy's business
		var over *http.MaxBytesError
		switch {
		case errors.As(err, &over):
			failed(http.StatusRequestEntityTooLarge, vTooLarge, tooLarge)
			return
		case err != nil:
			failed(http.StatusBadRequest, vBadRequest, "the body could not be read (it must arrive at a steady pace)")
			return
		}
		key, err := sc.verify(r.Header, body)
		if err != nil {
			if s.fails.fail(addr) {
				fail(http.StatusTooManyRequests, vRateLimited, "too many failed requests from this address: slow down")
				return
			}
			v := vBadSig
			switch {
			case errors.Is(err, ErrStale), errors.Is(err, ErrTimestamp):
				v = vStale
			case errors.Is(err, ErrUnsigned):
				v = vUnsigned
			}
			fail(http.StatusUnauthorized, v, err.Error())
			return
		}
		d := sc.decide(r, body)
		e.Sender, e.Event, e.Action, e.Project, e.Ref, e.Release = d.entry.Sender, d.entry.Event, d.entry.Action, d.entry.Project, d.entry.Ref, d.entry.Release
		if d.deploy == nil {
			answer(d.code, d.verdict, d.reason, d.reply)
			return
		}
		dep := d.deploy
		dep.ID, dep.Hook = newDeployID(s.now()), sc.name()
		if orig, err := s.replays.Add(key, dep.ID); errors.Is(err, ErrReplay) {
			e.Deploy = orig
			answer(http.StatusConflict, vReplay, "replayed delivery", map[string]string{
				"error": "this delivery was accepted before: nothing new is queued", "deploy": orig})
			return
		} else if err != nil {
			s.log.Error("replay cache", "error", err)
			fail(http.StatusServiceUnavailable, vBusy, "the server cannot record deliveries: retry later")
			return
		}
		if err := s.queue.Add(dep); err != nil {
			if ferr := s.replays.Forget(key); ferr != nil {
				s.log.Error("replay cache", "error", ferr)
			}
			fail(http.StatusServiceUnavailable, vBusy, err.Error())
			return
		}
		e.Deploy = dep.ID
		reply := map[string]string{"id": dep.ID, "status": Queued}
		if sc.name() == SchemeSlack {
			reply["text"] = dep.Action + " of " + dep.Project + " queued as " + dep.ID
			if dep.respond != "" {
				reply["text"] += "; the result follows here"
			}
		}
		answer(http.StatusAccepted, vAccepted, "", reply)
	}
}

// Bounds of the bodies being read.
const (
	maxPerAddress = 8         // bodies being read from one address
	bodyBudget    = 128 << 20 // bytes of bodies being read, all requests together
	addressBudget = 32 << 20  // of which one address may hold
	bodyStall     = 10 * time.Second
)

// reader is one address's share of the bodies being read.
type reader struct {
	n     int
	bytes int64
}

// admit takes a slot of addr's and size bytes of the body budget; why
// says what is full.
func (s *Server) admit(addr string, size int64) (release func(), why string) {
	key := limitKey(addr)
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	mine := s.perAddress[key]
	switch {
	case mine.n >= maxPerAddress:
		return nil, "too many requests in flight from this address: retry"
	case mine.bytes+size > addressBudget && mine.n > 0:
		return nil, "too many large bodies being read from this address: retry"
	case s.reading+size > bodyBudget:
		return nil, "too many large bodies being read: retry"
	}
	s.perAddress[key] = reader{mine.n + 1, mine.bytes + size}
	s.reading += size
	var once sync.Once
	return func() {
		once.Do(func() {
			s.admitMu.Lock()
			defer s.admitMu.Unlock()
			mine := s.perAddress[key]
			if mine.n--; mine.n == 0 {
				delete(s.perAddress, key)
			} else {
				mine.bytes -= size
				s.perAddress[key] = mine
			}
			s.reading -= size
		})
	}, ""
}

// readBody reads at most limit bytes, into a buffer of the announced
// size. The whole body has readTimeout, and each read bodyStall: a body
// that trickles is cut off.
func readBody(w http.ResponseWriter, r *http.Request, limit, size int64) ([]byte, error) {
	rc := http.NewResponseController(w)
	body := http.MaxBytesReader(w, r.Body, limit)
	buf := make([]byte, 0, min(size, limit)+1)
	end := time.Now().Add(readTimeout)
	for {
		deadline := time.Now().Add(bodyStall)
		if end.Before(deadline) {
			deadline = end
		}
		_ = rc.SetReadDeadline(deadline)
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 32<<10)
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// allowed says whether v is in list; an empty list allows everything.
func allowed(list []string, v string) bool {
	if len(list) == 0 {
		return true
	}
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// request checks what a request asks of a project against the server's
// configuration (beyond each hook's own allow lists).
func (s *Server) request(action, project, ref, release string) (verdict, bool) {
	p, ok := s.cfg.Projects[project]
	switch {
	case !ok:
		return deny(http.StatusForbidden, vForbidden, "project "+strconv.Quote(project)+" is not one this server deploys"), false
	case action == "deploy" && p.Source == nil:
		return deny(http.StatusForbidden, vForbidden, "project "+project+" has no source to deploy a ref from: ask for redeploy or rollback"), false
	case ref != "" && !validRef(ref):
		return deny(http.StatusBadRequest, vBadRequest, "ref: give a branch, tag or commit"), false
	case release != "" && !validRelease(release):
		return deny(http.StatusBadRequest, vBadRequest, "release: give a release ID as GET /deploys or deployer releases shows it"), false
	}
	return verdict{}, true
}

func validRelease(id string) bool {
	return gitRef.MatchString(id) && !strings.ContainsAny(id, "/")
}
