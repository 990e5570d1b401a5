package project_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/checks/project"
)

const multiStage = `ARG BASE=node:22-alpine
FROM ${BASE} AS deps
RUN npm ci

FROM deps AS build
RUN <<EOF
npm run build
npm test
EOF

FROM deps AS Migrate
CMD ["npx", "drizzle-kit", "migrate"]

FROM node:22-alpine AS runtime
ENV NODE_ENV=production A=b
ENV LEGACY value
HEALTHCHECK --interval=5s CMD wget -qO- http://127.0.0.1:3000/health || exit 1
ENTRYPOINT ["tini", "--"]
CMD node dist/index.js
`

func TestParseDockerfileSteps(t *testing.T) {
	d, err := project.ParseDockerfile("api/Dockerfile", []byte(multiStage))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range d.Stages {
		got = append(got, fmt.Sprintf("%d FROM %s AS %s", st.Line, st.Base, st.Name))
		for _, s := range st.Steps {
			got = append(got, fmt.Sprintf("%d %s %q shell=%v", s.Line, s.Kind, s.Args, s.Shell))
		}
	}
	want := []string{
		"2 FROM ${BASE} AS deps",
		`3 run ["npm ci"] shell=true`,
		"5 FROM deps AS build",
		`6 run ["<<EOF" "npm run build\nnpm test\n"] shell=true`, // the heredoc's body is part of what runs
		"11 FROM deps AS migrate",
		`12 cmd ["npx" "drizzle-kit" "migrate"] shell=false`,
		"14 FROM node:22-alpine AS runtime",
		`15 env ["NODE_ENV=production" "A=b"] shell=false`,
		`16 env ["LEGACY=value"] shell=false`,
		`17 healthcheck ["CMD-SHELL" "wget -qO- http://127.0.0.1:3000/health || exit 1"] shell=false`,
		`18 entrypoint ["tini" "--"] shell=false`,
		`19 cmd ["node dist/index.js"] shell=true`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("parsed:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
	if d.Path != "api/Dockerfile" {
		t.Errorf("path %q", d.Path)
	}
}

func TestDockerfileStageChain(t *testing.T) {
	tests := []struct {
		name   string
		src    string
		target string
		stage  string // the stage's name, "-" for none
		chain  string // the names, nearest first, with each base
	}{
		{"last by default", multiStage, "", "runtime", "runtime(node:22-alpine)"},
		{"target", multiStage, "build", "build", "build(deps) deps(${BASE})"},
		{"target case", multiStage, "MIGRATE", "migrate", "migrate(deps) deps(${BASE})"},
		{"no such target", multiStage, "nope", "-", ""},
		{"single unnamed", "FROM alpine:3.20\nRUN true\n", "", "", "(alpine:3.20)"},
		{"named after its image", "FROM node:22 AS node\nFROM node AS app\n", "", "app", "app(node) node(node:22)"},
		{"self-named", "FROM nginx AS nginx\n", "nginx", "nginx", "nginx(nginx)"},
		// A FROM can only name a stage before it: here "b" in the first
		// line is an image, so there is no cycle.
		{"forward reference", "FROM b AS a\nFROM a AS b\n", "", "b", "b(a) a(b)"},
		{"forward reference first", "FROM b AS a\nFROM a AS b\n", "a", "a", "a(b)"},
		{"deep", "FROM x AS s1\nFROM s1 AS s2\nFROM s2 AS s3\nFROM s3 AS s4\n", "", "s4", "s4(s3) s3(s2) s2(s1) s1(x)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := project.ParseDockerfile("Dockerfile", []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			st := d.Stage(tc.target)
			if st == nil {
				if tc.stage != "-" {
					t.Fatalf("Stage(%q) = nil, want %s", tc.target, tc.stage)
				}
				return
			}
			if st.Name != tc.stage {
				t.Errorf("Stage(%q) = %q, want %q", tc.target, st.Name, tc.stage)
			}
			var chain []string
			for _, s := range d.Chain(st) {
				chain = append(chain, s.Name+"("+s.Base+")")
			}
			if got := strings.Join(chain, " "); got != tc.chain {
				t.Errorf("Chain = %s, want %s", got, tc.chain)
			}
		})
	}
	if st := (&project.Dockerfile{}).Stage(""); st != nil {
		t.Errorf("Stage of an empty Dockerfile = %+v", st)
	}
}

func TestParseDockerfileErrors(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		msg       string
	}{
		{"empty", "", 0, "file with no instructions"},
		{"no FROM", "RUN true\n", 1, "no build stage"},
		{"unknown instruction", "FROM node:22\nWORKDIR /app\nFORM node:22\n", 3, "unknown instruction: FORM"},
		{"FROM arguments", "FROM\n", 1, "FROM requires either one or three arguments"},
		{"HEALTHCHECK argument", "FROM a\n\nHEALTHCHECK\n", 3, "HEALTHCHECK requires at least one argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := project.ParseDockerfile("api.Dockerfile", []byte(tc.src))
			var le *project.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("ParseDockerfile = %+v, %v; want a *LoadError", d, err)
			}
			if le.Pos != (project.Position{File: "api.Dockerfile", Line: tc.line}) || !strings.Contains(le.Err.Error(), tc.msg) || le.Fix == "" {
				t.Errorf("error at %s: %v; want line %d: %s", le.Pos, le.Err, tc.line, tc.msg)
			}
		})
	}
}
