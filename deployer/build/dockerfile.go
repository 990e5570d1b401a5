package build

import (
	"bytes"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// parse reads the stage names and the required secrets of a Dockerfile.
// A Dockerfile that does not parse here, or that asks for another
// frontend with a syntax directive, is left to the builder to judge.
func (df *dockerfile) parse(data []byte) {
	if _, _, _, ok := parser.DetectSyntax(data); ok {
		return
	}
	ast, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return
	}
	stages, _, err := instructions.Parse(ast.AST, linter.New(&linter.Config{}))
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, st := range stages {
		if st.Name != "" {
			df.stages = append(df.stages, st.Name)
		}
		for _, cmd := range st.Commands {
			run, ok := cmd.(*instructions.RunCommand)
			if !ok {
				continue
			}
			// Mount flags are read when build args are expanded; these
			// are left as they are, and an id with one is skipped below.
			if err := run.Expand(func(w string) (string, error) { return w, nil }); err != nil {
				return
			}
			for _, m := range instructions.GetMounts(run) {
				if m.Type != instructions.MountTypeSecret || !m.Required {
					continue
				}
				id := secretID(m)
				// An id made of build args is only known to the builder.
				if id != "" && !strings.Contains(id, "$") && !seen[id] {
					seen[id] = true
					df.secrets = append(df.secrets, id)
				}
			}
		}
	}
	df.parsed = true
}

// secretID is the id a secret mount asks for, as the Dockerfile frontend
// works it out: id=, else the base name of target=.
func secretID(m *instructions.Mount) string {
	switch {
	case m.Source != "":
		return m.Source
	case m.CacheID != "":
		return m.CacheID
	case m.Target != "":
		return m.Target[strings.LastIndex(m.Target, "/")+1:]
	}
	return ""
}
