package server

import (
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// The failed-verification rate limit, per client address: a burst of
// failBurst, then one every failEvery.
const (
	failBurst   = 20
	failEvery   = 3 * time.Second
	maxLimiters = 10_000 // addresses tracked; beyond, they share one bucket
)

// failures counts, per address, the requests that failed verification.
// It never turns away a correctly signed request: every request is
// verified, and only a failure from an address over its limit is
// answered 429 instead of 401 (and not written to the audit log, which a
// flood would otherwise fill).
type failures struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	now     func() time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newFailures(now func() time.Time) *failures {
	return &failures{buckets: map[string]*bucket{}, now: now}
}

// fail counts a failure from addr; it says whether addr is now over its
// limit.
func (f *failures) fail(addr string) (over bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.bucket(addr)
	if b.tokens < 1 {
		return true
	}
	b.tokens--
	return false
}

// bucket is addr's bucket, refilled to now. Called with f.mu held.
func (f *failures) bucket(addr string) *bucket {
	now := f.now()
	addr = limitKey(addr)
	b := f.buckets[addr]
	if b == nil {
		if len(f.buckets) >= maxLimiters {
			f.sweep(now)
		}
		if len(f.buckets) >= maxLimiters {
			addr = "overflow" // one bucket for the rest
			if b = f.buckets[addr]; b != nil {
				b.refill(now)
				return b
			}
		}
		b = &bucket{tokens: failBurst, at: now}
		f.buckets[addr] = b
		return b
	}
	b.refill(now)
	return b
}

func (b *bucket) refill(now time.Time) {
	b.tokens = min(failBurst, b.tokens+float64(now.Sub(b.at))/float64(failEvery))
	b.at = now
}

// sweep forgets the addresses whose buckets are full again.
func (f *failures) sweep(now time.Time) {
	for addr, b := range f.buckets {
		if b.refill(now); b.tokens >= failBurst {
			delete(f.buckets, addr)
		}
	}
}

// limitKey is what an address's limits are kept under: an IPv6 client
// holds a /64 at least, and an unknown address (a proxy that did not say)
// is one client.
func limitKey(addr string) string {
	if ip := net.ParseIP(addr); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String()
	}
	if addr == "" {
		return "unknown"
	}
	return addr
}

// clientAddr is the request's source address: the connection's peer, or,
// from a configured proxy, the last address its X-Forwarded-For names.
func clientAddr(r *http.Request, proxies []string) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !slices.Contains(proxies, host) {
		return host
	}
	xff := r.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return "" // unknown: not the proxy's own (often loopback) address
	}
	last := xff[len(xff)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	if ip := net.ParseIP(strings.TrimSpace(last)); ip != nil {
		return ip.String()
	}
	return ""
}
