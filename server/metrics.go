package server

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Verdicts of a hook request, as the metrics and the audit log name them.
const (
	vAccepted    = "accepted"      // 202: queued
	vIgnored     = "ignored"       // 202 (or 200 for ping): nothing queued
	vAnswered    = "answered"      // 200: a status question
	vUnsigned    = "unsigned"      // 401
	vBadSig      = "bad-signature" // 401
	vStale       = "stale"         // 401: timestamp outside ±5 minutes
	vForbidden   = "forbidden"     // 403
	vReplay      = "replay"        // 409
	vTooLarge    = "too-large"     // 413
	vRateLimited = "rate-limited"  // 429
	vBadRequest  = "bad-request"   // 400
	vBusy        = "busy"          // 503
)

// durationBuckets are the deploy duration histogram's upper bounds, in
// seconds.
var durationBuckets = []float64{10, 30, 60, 120, 300, 600, 1200, 1800, 3600}

// metrics are GET /metrics, in Prometheus' text format.
type metrics struct {
	mu        sync.Mutex
	requests  map[[2]string]uint64 // hook, verdict
	outcomes  map[string]uint64
	buckets   []uint64 // per durationBuckets, not cumulative
	sum       float64
	count     uint64
	queueSize func() int
}

func newMetrics(queueSize func() int) *metrics {
	return &metrics{requests: map[[2]string]uint64{}, outcomes: map[string]uint64{},
		buckets: make([]uint64, len(durationBuckets)), queueSize: queueSize}
}

func (m *metrics) request(hook, verdict string) {
	m.mu.Lock()
	m.requests[[2]string{hook, verdict}]++
	m.mu.Unlock()
}

func (m *metrics) deploy(d Deploy) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.outcomes[d.Status]++
	if d.Started.IsZero() || d.Finished.IsZero() {
		return // superseded before it ran
	}
	s := d.Finished.Sub(d.Started).Seconds()
	for i, le := range durationBuckets {
		if s <= le {
			m.buckets[i]++
			break
		}
	}
	m.sum += s
	m.count++
}

func (m *metrics) write(out io.Writer) {
	depth := m.queueSize() // before m.mu: the queue calls deploy under its own lock
	w := new(bytes.Buffer) // rendered, then sent: a slow reader holds no lock
	defer func() { _, _ = out.Write(w.Bytes()) }()
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintln(w, "# HELP deployer_server_requests_total Hook requests by hook and verdict.")
	fmt.Fprintln(w, "# TYPE deployer_server_requests_total counter")
	keys := slices.SortedFunc(maps.Keys(m.requests), func(a, b [2]string) int {
		return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1]))
	})
	for _, k := range keys {
		fmt.Fprintf(w, "deployer_server_requests_total{hook=%q,verdict=%q} %d\n", k[0], k[1], m.requests[k])
	}
	fmt.Fprintln(w, "# HELP deployer_server_queue_depth Deploys waiting for their project's turn.")
	fmt.Fprintln(w, "# TYPE deployer_server_queue_depth gauge")
	fmt.Fprintf(w, "deployer_server_queue_depth %d\n", depth)
	fmt.Fprintln(w, "# HELP deployer_server_deploys_total Deploys that ended, by outcome.")
	fmt.Fprintln(w, "# TYPE deployer_server_deploys_total counter")
	for _, o := range slices.Sorted(maps.Keys(m.outcomes)) {
		fmt.Fprintf(w, "deployer_server_deploys_total{outcome=%q} %d\n", o, m.outcomes[o])
	}
	fmt.Fprintln(w, "# HELP deployer_server_deploy_duration_seconds How long deploys ran.")
	fmt.Fprintln(w, "# TYPE deployer_server_deploy_duration_seconds histogram")
	var cum uint64
	for i, le := range durationBuckets {
		cum += m.buckets[i]
		fmt.Fprintf(w, "deployer_server_deploy_duration_seconds_bucket{le=\"%g\"} %d\n", le, cum)
	}
	fmt.Fprintf(w, "deployer_server_deploy_duration_seconds_bucket{le=\"+Inf\"} %d\n", m.count)
	fmt.Fprintf(w, "deployer_server_deploy_duration_seconds_sum %g\n", m.sum)
	fmt.Fprintf(w, "deployer_server_deploy_duration_seconds_count %d\n", m.count)
}
