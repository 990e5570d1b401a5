package ship

import (
	"io"
	"sync"
	"time"
)

// reportEvery is the least time between two Progress calls.
const reportEvery = 250 * time.Millisecond

// meter counts what goes out and reports it. Over a Ship, sent only
// grows; each attempt restarts the uncompressed count against its own
// estimate.
type meter struct {
	mu     sync.Mutex
	image  string
	report func(Progress)
	now    func() time.Time

	start    time.Time // the first attempt's first byte
	begun    time.Time // this attempt's start
	last     time.Time // the last report
	sent     int64     // compressed bytes, every attempt
	base     int64     // sent before this attempt
	in       int64     // uncompressed bytes of this attempt
	estimate int64     // uncompressed bytes this attempt should take
}

func newMeter(image string, report func(Progress)) *meter {
	return &meter{image: image, report: report, now: time.Now}
}

// begin starts an attempt that should compress estimate bytes.
func (m *meter) begin(estimate int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if m.start.IsZero() {
		m.start = now
	}
	m.begun, m.base, m.in, m.estimate = now, m.sent, 0, estimate
	m.emit(now, false)
}

// writer counts the compressed bytes of an attempt, written to w; the
// uncompressed ones are counted by uncompressed.
func (m *meter) writer(w io.Writer) io.Writer {
	return &meterWriter{m: m, w: w}
}

// finish makes the last report, with the totals exact.
func (m *meter) finish() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.start.IsZero() {
		m.start = m.now() // nothing was sent
	}
	m.estimate, m.in = 0, 0
	m.emit(m.now(), true)
}

// emit calls report, if any; m.mu is held.
func (m *meter) emit(now time.Time, last bool) {
	if m.report == nil {
		return
	}
	m.last = now
	p := Progress{Image: m.image, Sent: m.sent, Total: m.sent}
	if elapsed := now.Sub(m.start).Seconds(); elapsed > 0 {
		p.Rate = float64(m.sent) / elapsed
	}
	if !last {
		left := max(m.estimate-m.in, 0)
		ratio := 1.0
		if m.in > 0 {
			ratio = float64(m.sent-m.base) / float64(m.in)
		}
		p.Total = m.sent + int64(float64(left)*ratio)
		if spent := now.Sub(m.begun).Seconds(); m.in > 0 && spent > 0 {
			p.Left = time.Duration(float64(left) / (float64(m.in) / spent) * float64(time.Second))
		}
	}
	m.report(p)
}

type meterWriter struct {
	m *meter
	w io.Writer
}

func (mw *meterWriter) Write(p []byte) (int, error) {
	n, err := mw.w.Write(p)
	m := mw.m
	m.mu.Lock()
	m.sent += int64(n)
	if now := m.now(); now.Sub(m.last) >= reportEvery {
		m.emit(now, false)
	}
	m.mu.Unlock()
	return n, err
}

// uncompressed counts the bytes going into the compressor.
func (m *meter) uncompressed(n int) {
	m.mu.Lock()
	m.in += int64(n)
	m.mu.Unlock()
}

// total is the compressed bytes sent so far.
func (m *meter) total() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sent
}
