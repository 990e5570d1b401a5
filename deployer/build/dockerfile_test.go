package build

import (
	"strings"
	"testing"
)

// FuzzDockerfile: the builder's own reading of a Dockerfile (stages and
// required secrets) never panics, and finds no more stages or secrets
// than the file has lines.
func FuzzDockerfile(f *testing.F) {
	f.Add([]byte("FROM scratch AS a\nRUN --mount=type=secret,id=token,required [\"/x\"]\n"))
	f.Add([]byte("# syntax=docker/dockerfile:1\nFROM a\n"))
	f.Add([]byte("FROM a\nRUN <<EOF\nx\nEOF\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		df := &dockerfile{}
		df.parse(data)
		lines := strings.Count(string(data), "\n") + 1
		if len(df.stages) > lines || len(df.secrets) > lines {
			t.Fatalf("%d stages and %d secrets from %d lines", len(df.stages), len(df.secrets), lines)
		}
	})
}
