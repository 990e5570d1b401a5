// Package costtest lets fuzz targets find inputs that are slow, not only
// inputs that crash: a parser's cost, counted as the bytes it allocates
// (a measure that does not depend on how busy the machine is), must stay
// within a linear bound of its input's size. A quadratic path, a
// recursion that copies, or an expansion (a YAML alias bomb, a deeply
// nested block) breaks the bound on a small input, where a timer would
// need a large one and flake on a loaded machine.
package costtest

import (
	"runtime/metrics"
	"testing"
)

// Allocated runs f and returns the bytes the process allocated meanwhile
// (read without stopping the world), which is f's when nothing else runs
// (a fuzz target's body is alone in its process).
func Allocated(f func()) uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()
	f()
	metrics.Read(sample)
	return sample[0].Value.Uint64() - before
}

// Linear fails t when f allocates more than perByte bytes for each byte of
// an n-byte input, plus base.
func Linear(t testing.TB, what string, n int, perByte, base uint64, f func()) {
	t.Helper()
	if got, limit := Allocated(f), perByte*uint64(n)+base; got > limit {
		t.Fatalf("%s allocated %d bytes for %d bytes of input, over the linear bound %d (%d per byte + %d): a slow input",
			what, got, n, limit, perByte, base)
	}
}
