package project

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Dockerfile is a parsed Dockerfile, reduced to what the checks judge.
type Dockerfile struct {
	Path   string
	Stages []Stage
}

// Stage is one FROM block.
type Stage struct {
	Name  string // the AS name; empty when unnamed
	Base  string // the image or stage it starts from
	Line  int
	Steps []Step
}

// Step is one instruction of a stage.
type Step struct {
	Kind  string   // lower case: run, cmd, entrypoint, env, healthcheck, copy, …
	Args  []string // the command line (run, cmd, entrypoint, healthcheck test) or KEY=VALUE pairs (env)
	Shell bool     // run, cmd and entrypoint in shell form
	Line  int
}

// ParseDockerfile reads a Dockerfile with BuildKit's own parser, so it
// agrees with the build about stages, continuation lines and heredocs.
//
// One of more than maxDockerfile bytes is refused: BuildKit's frontend
// would refuse it too, and it may come from a pull request.
func ParseDockerfile(path string, data []byte) (*Dockerfile, error) {
	if len(data) > maxDockerfile {
		return nil, &LoadError{Pos: Position{File: path}, Err: fmt.Errorf("the Dockerfile is %d bytes, more than the %d MiB one may be", len(data), maxDockerfile>>20),
			Fix: "check that build.dockerfile names the Dockerfile"}
	}
	ast, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, dockerfileError(path, err)
	}
	stages, _, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return nil, dockerfileError(path, err)
	}
	d := &Dockerfile{Path: path}
	for _, s := range stages {
		st := Stage{Name: s.Name, Base: s.BaseName, Line: line(s.Location)}
		for _, c := range s.Commands {
			step := Step{Kind: strings.ToLower(c.Name()), Line: line(c.Location())}
			switch c := c.(type) {
			case *instructions.RunCommand:
				step.Args, step.Shell = runArgs(c.ShellDependantCmdLine)
			case *instructions.CmdCommand:
				step.Args, step.Shell = c.CmdLine, c.PrependShell
			case *instructions.EntrypointCommand:
				step.Args, step.Shell = c.CmdLine, c.PrependShell
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					step.Args = append(step.Args, kv.Key+"="+kv.Value)
				}
			case *instructions.HealthCheckCommand:
				if c.Health != nil {
					step.Args = c.Health.Test
				}
			}
			st.Steps = append(st.Steps, step)
		}
		d.Stages = append(d.Stages, st)
	}
	return d, nil
}

// runArgs joins heredoc bodies into the command line: what they run is
// what the checks need to see.
func runArgs(c instructions.ShellDependantCmdLine) ([]string, bool) {
	args := c.CmdLine
	for _, f := range c.Files {
		args = append(args[:len(args):len(args)], f.Data)
	}
	return args, c.PrependShell
}

func line(r []parser.Range) int {
	if len(r) == 0 {
		return 0
	}
	return r[0].Start.Line
}

// Stage returns the stage a build targets: the named one, or the last.
func (d *Dockerfile) Stage(target string) *Stage {
	if len(d.Stages) == 0 {
		return nil
	}
	if target != "" {
		for i := range d.Stages {
			if strings.EqualFold(d.Stages[i].Name, target) {
				return &d.Stages[i]
			}
		}
		return nil
	}
	return &d.Stages[len(d.Stages)-1]
}

// Chain returns the stage and the stages it is built FROM, nearest first.
// Instructions of a parent stage are part of the image too. As in docker
// build, FROM names a stage only when that stage comes before it; else it
// is an image.
func (d *Dockerfile) Chain(s *Stage) []*Stage {
	chain := []*Stage{s}
	for cur := s; ; {
		before := len(d.Stages)
		for i := range d.Stages {
			if &d.Stages[i] == cur {
				before = i
			}
		}
		var parent *Stage
		for i := range d.Stages[:before] {
			if d.Stages[i].Name != "" && strings.EqualFold(d.Stages[i].Name, cur.Base) {
				parent = &d.Stages[i]
			}
		}
		if parent == nil || parent == cur {
			return chain
		}
		chain = append(chain, parent)
		cur = parent
	}
}

func dockerfileError(path string, err error) error {
	pos := Position{File: path}
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		pos.Line = le.Locations[0][0].Start.Line
	}
	return &LoadError{Pos: pos, Err: fmt.Errorf("parse Dockerfile: %w", err), Fix: "fix the instruction at that line; `docker build` would fail there too"}
}

// maxDockerfile bounds a Dockerfile, as the builder bounds it.
const maxDockerfile = 4 << 20

// readDockerfiles parses the Dockerfile of every service with build:. A
// missing or broken one is a Problem: the build would fail.
func (p *Project) readDockerfiles() {
	for name, s := range p.Compose.Services {
		if s.Build == nil {
			continue
		}
		var (
			path = "Dockerfile (inline)"
			data = []byte(s.Build.DockerfileInline)
			err  error
		)
		if s.Build.DockerfileInline == "" {
			df := s.Build.Dockerfile
			if df == "" {
				df = "Dockerfile"
			}
			if !filepath.IsAbs(df) {
				df = filepath.Join(s.Build.Context, df)
			}
			path = p.display(df)
			if strings.Contains(s.Build.Context, "://") {
				continue // a remote context is read by the builder, not here
			}
			data, err = p.Dir.ReadFile(df, maxDockerfile)
		}
		if err == nil {
			var d *Dockerfile
			if d, err = ParseDockerfile(path, data); err == nil {
				p.Dockerfiles[name] = d
				if s.Build.Target != "" && d.Stage(s.Build.Target) == nil {
					p.Problems = append(p.Problems, Problem{Rule: "dockerfile-invalid", Service: name,
						Pos:     p.ServicePos(name, "build", "target"),
						Message: fmt.Sprintf("build target %q is not a stage of %s", s.Build.Target, path),
						Fix:     "name an existing stage (FROM … AS NAME) or drop target to build the last stage"})
				}
				continue
			}
		}
		p.displayPathError(err)
		pr := Problem{Rule: "dockerfile-invalid", Service: name, Pos: p.ServicePos(name, "build"),
			Message: fmt.Sprintf("cannot read the Dockerfile of %s: %v", name, err),
			Fix:     "fix build.context or build.dockerfile so they name a Dockerfile that parses"}
		if le, ok := err.(*LoadError); ok {
			pr.Pos, pr.Message, pr.Fix = le.Pos, le.Err.Error(), le.Fix
		}
		p.Problems = append(p.Problems, pr)
	}
}
