package build

import (
	"strings"
	"testing"

	"github.com/semalink/deploy-action/internal/costtest"
)

// FuzzDockerfile: the builder's own reading of a Dockerfile (stages and
// required secrets) never panics, and finds no more stages or secrets
// than the file has lines, at a cost linear in the file's size (about 120
// bytes allocated per byte at most, 17 KiB for an empty file; the bound
// is a few times that).
func FuzzDockerfile(f *testing.F) {
	f.Add([]byte("FROM scratch AS a\nRUN --mount=type=secret,id=token,required [\"/x\"]\n"))
	f.Add([]byte("# syntax=docker/dockerfile:1\nFROM a\n"))
	f.Add([]byte("FROM a\nRUN <<EOF\nx\nEOF\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		df := &dockerfile{}
		costtest.Linear(t, "dockerfile.parse", len(data), 512, 256<<10, func() { df.parse(data) })
		lines := strings.Count(string(data), "\n") + 1
		if len(df.stages) > lines || len(df.secrets) > lines {
			t.Fatalf("%d stages and %d secrets from %d lines", len(df.stages), len(df.secrets), lines)
		}
	})
}
