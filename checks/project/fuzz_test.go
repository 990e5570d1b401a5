package project_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/internal/costtest"
)

// seedFiles adds to the corpus every file under the test data of this
// package, of package checks and of the repository that match.
func seedFiles(f *testing.F, match func(name string) bool) {
	f.Helper()
	n := 0
	for _, root := range []string{"testdata", "../testdata", "../../testdata"} {
		err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() && e.Name() == "fuzz" {
				return filepath.SkipDir // go test adds those itself
			}
			if e.IsDir() || !match(e.Name()) {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			f.Add(data)
			n++
			return nil
		})
		if err != nil {
			f.Fatal(err)
		}
	}
	if n == 0 {
		f.Fatal("no seed files found")
	}
}

// The linear bound on what the parsers allocate: a few times what the
// costliest inputs measured need (about 120 bytes per byte for a file of
// short tokens or stages, 50 KiB for the smallest file).
const (
	parserPerByte = 512
	parserBase    = 256 << 10
)

// FuzzLoad loads arbitrary bytes as a Compose file and runs the checks on
// what loads: neither may panic, and a project that does not load comes
// back as a *LoadError.
func FuzzLoad(f *testing.F) {
	seedFiles(f, func(name string) bool { return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") })
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "compose.yaml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := project.Load(t.Context(), project.Options{Files: []string{path}, WorkingDir: dir, Env: []string{}})
		if err != nil {
			if _, ok := err.(*project.LoadError); !ok {
				t.Fatalf("Load returned %T, want *project.LoadError: %v", err, err)
			}
			return
		}
		for _, fd := range checks.Run(p, checks.Options{Environment: "production", CloudflareSSL: "strict", HostMemory: 1 << 30}) {
			if fd.Rule == "" || fd.Severity == 0 {
				t.Errorf("finding without rule or severity: %+v", fd)
			}
		}
	})
}

// FuzzParseCaddyfile: no panic; errors are *LoadErrors at a line of the
// file; directives come in file order with lines inside the file; the cost
// is linear in the file's size.
func FuzzParseCaddyfile(f *testing.F) {
	seedFiles(f, func(name string) bool { return name == "Caddyfile" })
	for _, s := range []string{
		"a {\n\trespond <<HTML\n\t\t<p>hi</p>\n\t\tHTML 200\n}\n",
		"{\n\temail a@b.c\n}\n(snip) {\n\tencode gzip\n}\na.com,\nb.com {\n\timport snip\n\treverse_proxy api:3000 \\\n\t\tweb:3000\n}\n",
		"a {\n\theader X \"q \\\"x\\\"\" `b`\n\t# c\n}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte("\n")) + 1
		var c *project.Caddyfile
		var err error
		costtest.Linear(t, "ParseCaddyfile", len(data), parserPerByte, parserBase, func() {
			c, err = project.ParseCaddyfile("Caddyfile", data)
		})
		if err != nil {
			le, ok := err.(*project.LoadError)
			if !ok || le.Pos.File != "Caddyfile" || le.Pos.Line < 1 || le.Pos.Line > lines {
				t.Fatalf("error %T %v at %+v, want a *LoadError at a line of the file (1-%d)", err, err, le, lines)
			}
			return
		}
		last := 0
		c.Walk(func(d project.Directive) {
			if d.Line < last || d.Line < 1 || d.Line > lines {
				t.Fatalf("directive %q at line %d after line %d (the file has %d)", d.Name, d.Line, last, lines)
			}
			last = d.Line
		})
	})
}

// FuzzParseDockerfile: no panic; errors are *LoadErrors; every stage's
// chain ends, holds each stage at most once, and starts at the stage; the
// cost is linear in the file's size.
func FuzzParseDockerfile(f *testing.F) {
	seedFiles(f, func(name string) bool { return name == "Dockerfile" || strings.HasSuffix(name, ".Dockerfile") })
	f.Add([]byte(multiStage))
	f.Add([]byte("FROM b AS a\nFROM a AS b\nFROM b AS c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d *project.Dockerfile
		var err error
		costtest.Linear(t, "ParseDockerfile", len(data), parserPerByte, parserBase, func() {
			d, err = project.ParseDockerfile("Dockerfile", data)
		})
		if err != nil {
			if le, ok := err.(*project.LoadError); !ok || le.Pos.File != "Dockerfile" {
				t.Fatalf("error %T %v, want a *LoadError in Dockerfile", err, err)
			}
			return
		}
		for i := range d.Stages {
			st := &d.Stages[i]
			chain := d.Chain(st)
			if chain[0] != st {
				t.Fatalf("chain of stage %d starts at %q", i, chain[0].Name)
			}
			seen := map[*project.Stage]bool{}
			for _, s := range chain {
				if seen[s] {
					t.Fatalf("chain of stage %d holds %q twice", i, s.Name)
				}
				seen[s] = true
			}
			if st.Name != "" && d.Stage(st.Name) == nil {
				t.Fatalf("Stage(%q) = nil", st.Name)
			}
		}
	})
}
