package project

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"
)

// Options say what to load, as docker compose's own flags do.
type Options struct {
	Files      []string // -f; empty means compose.yaml (and friends) in WorkingDir
	EnvFiles   []string // --env-file; empty means WorkingDir/.env when present
	Profiles   []string
	WorkingDir string   // default: the directory of the first file, or "."
	Env        []string // KEY=VALUE; nil means ShellEnviron
	// Root is the directory that every file the project names must stay
	// inside, links resolved (default: the working directory). The -f and
	// --env-file files are the operator's and may lie elsewhere; what
	// they name may not.
	Root string
}

// Project is a loaded Compose project with everything the checks read.
type Project struct {
	Compose     *types.Project
	Files       []*File                // the -f files in order, then included and extended files
	Dockerfiles map[string]*Dockerfile // by service name, for services with build:
	Caddyfiles  map[string]*Caddyfile  // by service name, for proxies with a Caddyfile mounted
	Settings    Settings
	Problems    []Problem
	// Dir is the project directory that every file the project names is
	// read from; see Options.Root.
	Dir Dir

	cwd         string            // paths are shown relative to it
	envFileVars map[string]string // what --env-file (or .env) set
	direct      int               // Files[:direct] are the -f files
}

// Problem is something the loader met that the user should fix but that
// does not stop the project from loading. Rule is the check ID that
// reports it.
type Problem struct {
	Rule    string
	Service string
	Pos     Position
	Message string
	Fix     string
}

// LoadError is a project that cannot be loaded at all.
type LoadError struct {
	Pos Position
	Err error
	Fix string
}

func (e *LoadError) Error() string {
	msg := e.Err.Error()
	if e.Pos.File != "" {
		msg = e.Pos.String() + ": " + msg
	}
	if e.Fix != "" {
		msg += "\nfix: " + e.Fix
	}
	return msg
}

func (e *LoadError) Unwrap() error { return e.Err }

// Load reads the project the way docker compose would.
func Load(ctx context.Context, o Options) (*Project, error) {
	env := o.Env
	if env == nil {
		env = ShellEnviron()
	}
	var pos []cli.ProjectOptionsFn
	// Order matters: the working directory decides where compose.yaml and
	// .env are looked for.
	if o.WorkingDir != "" {
		pos = append(pos, cli.WithWorkingDirectory(o.WorkingDir))
	}
	if len(o.Files) == 0 {
		pos = append(pos, cli.WithDefaultConfigPath)
	}
	var dir Dir
	pos = append(pos,
		cli.WithEnv(env),
		cli.WithProfiles(o.Profiles),
		cli.WithEnvFiles(o.EnvFiles...),
		// Before the .env is read: the project's own (not one the operator
		// named with --env-file) is the pull request's, and stays inside.
		func(po *cli.ProjectOptions) error {
			wd, err := po.GetWorkingDir()
			if err != nil {
				return err
			}
			if dir, err = NewDir(cmp.Or(o.Root, wd)); err != nil {
				return err
			}
			// The operator's --env-file files may lie anywhere; those inside
			// the project are the checkout's, and their links stay inside.
			for _, f := range po.EnvFiles {
				if len(o.EnvFiles) > 0 && !dir.Contains(f) {
					if _, err := ReadPlainFile(f, MaxFileSize); err != nil {
						return &LoadError{Pos: Position{File: f}, Err: err, Fix: "name a plain env file"}
					}
					continue
				}
				if _, err := dir.ReadFile(f, MaxFileSize); err != nil {
					return &LoadError{Pos: Position{File: f}, Err: err, Fix: "make the project's .env a plain file inside the project, or name an env file with --env-file"}
				}
			}
			return nil
		},
		cli.WithDotEnv,
		cli.WithoutEnvironmentResolution, // env_file is resolved below, so a missing one is a finding
		cli.WithoutLabelsResolution,      // label_file too, once confine has checked it
		cli.WithLoadOptions(func(lo *loader.Options) { lo.KnownExtensions = map[string]any{} }),
	)
	opts, err := cli.NewProjectOptions(o.Files, pos...)
	if err != nil {
		return nil, loadError(nil, err)
	}
	p := &Project{Dockerfiles: map[string]*Dockerfile{}, Caddyfiles: map[string]*Caddyfile{}}
	p.cwd, _ = os.Getwd()
	p.Dir = dir
	for _, name := range opts.ConfigPaths {
		if name == "-" {
			return nil, &LoadError{Err: errors.New("reading the Compose file from standard input is not supported"), Fix: "save it to a file and pass -f FILE"}
		}
		abs, err := filepath.Abs(name)
		if err != nil {
			return nil, loadError(nil, err)
		}
		f, err := p.parseFile(abs)
		if err != nil {
			return nil, loadError(nil, err)
		}
		p.Files = append(p.Files, f)
	}
	p.direct = len(p.Files)
	if err := p.indexReferencedFiles(opts.WorkingDir); err != nil {
		return nil, err
	}

	compose, err := loadCompose(ctx, opts)
	if err != nil {
		return nil, loadError(p.Files, err)
	}
	p.Compose = compose
	if p.envFileVars, err = dotenv.GetEnvFromFile(map[string]string{}, opts.EnvFiles); err != nil {
		return nil, loadError(p.Files, err)
	}
	if err := p.unsetVariables(opts.Environment); err != nil {
		return nil, err
	}
	if err := p.confine(); err != nil {
		return nil, err
	}
	if err := p.resolveLabelFiles(); err != nil {
		return nil, err
	}
	if err := p.resolveEnvFiles(); err != nil {
		return nil, loadError(p.Files, err)
	}
	if p.Settings, err = decodeSettings(compose.Extensions["x-deployer"]); err != nil {
		pos, _, _ := p.Locate("x-deployer")
		return nil, &LoadError{Pos: pos, Err: err, Fix: "see docs/checks.md#settings for the keys x-deployer takes"}
	}
	p.readDockerfiles()
	p.readCaddyfiles()
	return p, nil
}

// loadTimeout bounds the Compose loader, whose time on some files grows
// faster than their size.
const loadTimeout = 30 * time.Second

// loadCompose runs compose-go's loader within loadTimeout, turning a panic
// into an error: v2.16.2 panics on some malformed files, such as a configs
// or secrets entry whose target is left empty, and a file it cannot read
// should be reported, not crash the deploy. A loader that overruns is left
// to finish on its own; the deploy does not wait for it.
func loadCompose(ctx context.Context, opts *cli.ProjectOptions) (*types.Project, error) {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	type loaded struct {
		p   *types.Project
		err error
	}
	done := make(chan loaded, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- loaded{err: fmt.Errorf("the Compose loader failed on this file (%v); look for a key left empty or of the wrong type, such as target: with no path", r)}
			}
		}()
		p, err := opts.LoadProject(ctx)
		done <- loaded{p, err}
	}()
	select {
	case l := <-done:
		return l.p, l.err
	case <-ctx.Done():
		if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return nil, fmt.Errorf("the Compose loader did not finish in %s: look for deep nesting or many anchors and aliases", loadTimeout)
	}
}

// display writes a path the way people and CI annotations want it:
// relative to the current directory when below it.
func (p *Project) display(path string) string {
	if rel, err := filepath.Rel(p.cwd, path); err == nil && p.cwd != "" && filepath.IsLocal(rel) {
		return filepath.ToSlash(rel)
	}
	return path
}

// displayPathError shortens the path in a file system error the same way,
// so messages do not depend on where the project is checked out.
func (p *Project) displayPathError(err error) {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		pe.Path = p.display(pe.Path)
	}
}

// maxFiles bounds the Compose files of one project, include and extends
// counted.
const maxFiles = 64

// indexReferencedFiles adds files pulled in by include and extends so
// findings on their services point at the right place, and so that the
// loader, which reads them itself, reads only files of the project: each
// is checked here first, against both directories the loader may resolve
// it from. A missing one is left to the loader to report.
func (p *Project) indexReferencedFiles(workingDir string) error {
	seen := map[string]bool{}
	for _, f := range p.Files {
		seen[f.Abs] = true
	}
	for i := 0; i < len(p.Files); i++ {
		f := p.Files[i]
		dir := filepath.Dir(f.Abs)
		var refs, others []string // others: files the loader reads that are not Compose files
		if _, inc, ok := f.Lookup("include"); ok {
			for _, item := range deref(inc).Content {
				item = deref(item)
				switch item.Kind {
				case yaml.ScalarNode:
					refs = append(refs, item.Value)
				case yaml.MappingNode:
					for key, value := range mapping(item) {
						switch key {
						case "path":
							refs = append(refs, scalars(value)...)
						case "env_file":
							others = append(others, scalars(value)...)
						case "project_directory":
							for _, d := range scalars(value) {
								others = append(others, d, filepath.Join(d, ".env"))
							}
						}
					}
				}
			}
			// An included project reads the .env beside its file too.
			for _, ref := range refs {
				others = append(others, filepath.Join(filepath.Dir(ref), ".env"))
			}
		}
		resolve := func(ref string) string {
			if filepath.IsAbs(ref) {
				return ref
			}
			return filepath.Join(dir, ref)
		}
		if _, svcs, ok := f.Lookup("services"); ok && svcs.Kind == yaml.MappingNode {
			for j := 1; j < len(svcs.Content); j += 2 {
				name := svcs.Content[j-1].Value
				_, ext, ok := f.Lookup("services", name, "extends")
				if !ok {
					continue
				}
				base := extendsRef{abs: f.Abs}
				switch ext.Kind {
				case yaml.ScalarNode: // extends: NAME, in the same file
					base.service = ext.Value
				case yaml.MappingNode:
					if _, svc, ok := f.Lookup("services", name, "extends", "service"); ok {
						base.service = svc.Value
					}
					if _, file, ok := f.Lookup("services", name, "extends", "file"); ok {
						refs = append(refs, file.Value)
						base.abs = resolve(file.Value)
					}
				}
				if base.service != "" && !strings.Contains(base.abs, "$") {
					f.extends[name] = base
				}
			}
		}
		for _, ref := range append(refs, others...) {
			if strings.Contains(ref, "$") {
				return &LoadError{Pos: Position{File: f.Path}, Err: fmt.Errorf("include or extends path %q is interpolated", ref),
					Fix: "write the path out: files that include and extends name are read before variables are known"}
			}
			for _, base := range []string{dir, workingDir} {
				abs := ref
				if !filepath.IsAbs(ref) {
					abs = filepath.Join(base, ref)
				}
				if _, err := p.Dir.Resolve(abs); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return &LoadError{Pos: Position{File: f.Path}, Err: err, Fix: "name files inside the project directory"}
				}
			}
		}
		for _, ref := range refs {
			abs := resolve(ref)
			if seen[abs] {
				continue
			}
			seen[abs] = true
			if len(p.Files) == maxFiles {
				return &LoadError{Pos: Position{File: f.Path}, Err: fmt.Errorf("more than %d Compose files are included or extended", maxFiles),
					Fix: "merge some of them"}
			}
			nf, err := p.parseFile(abs)
			if errors.Is(err, fs.ErrNotExist) {
				continue // the loader says which
			}
			if err != nil {
				return err
			}
			p.Files = append(p.Files, nf)
		}
	}
	return nil
}

func scalars(n *yaml.Node) []string {
	n = deref(n)
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	var out []string
	for _, c := range n.Content {
		if c = deref(c); c.Kind == yaml.ScalarNode {
			out = append(out, c.Value)
		}
	}
	return out
}

// deref is the node an alias stands for (a few levels, no more).
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; i < 8 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

// mapping yields a mapping's keys and values, merge keys (<<: *anchor)
// followed.
func mapping(n *yaml.Node) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	var walk func(n *yaml.Node, depth int)
	walk = func(n *yaml.Node, depth int) {
		n = deref(n)
		if depth > 8 || n.Kind != yaml.MappingNode {
			return
		}
		for j := 0; j+1 < len(n.Content); j += 2 {
			k, v := deref(n.Content[j]), n.Content[j+1]
			if k.Value == "<<" {
				if v = deref(v); v.Kind == yaml.SequenceNode {
					for _, m := range v.Content {
						walk(m, depth+1)
					}
				} else {
					walk(v, depth+1)
				}
				continue
			}
			if _, set := out[k.Value]; !set {
				out[k.Value] = v
			}
		}
	}
	walk(n, 0)
	return out
}

// Locate returns where path was written: the last -f file that sets it
// (later files override earlier ones), else an included or extended file
// that does, else the nearest parent key that is written somewhere. ok is
// false when nothing of the path is written.
func (p *Project) Locate(path ...string) (Position, *yaml.Node, bool) {
	for n := len(path); n > 0; n-- {
		if pos, node, ok := p.lookup(path[:n]); ok {
			if n < len(path) {
				node = nil
			}
			return pos, node, true
		}
	}
	if len(p.Files) > 0 {
		return Position{File: p.Files[0].Path}, nil, false
	}
	return Position{}, nil, false
}

// lookup finds path in the -f files, then in the included and extended
// ones: a service's own keys override those of the service it extends, so
// the extended file is searched last, and under the extended service's name.
func (p *Project) lookup(path []string) (Position, *yaml.Node, bool) {
	direct := min(p.direct, len(p.Files))
	for _, files := range [][]*File{p.Files[:direct], p.Files[direct:]} {
		for i := len(files) - 1; i >= 0; i-- {
			if pos, node, ok := files[i].Lookup(path...); ok {
				return pos, node, true
			}
		}
	}
	if len(path) < 3 || path[0] != "services" {
		return Position{}, nil, false
	}
	for i := len(p.Files) - 1; i >= 0; i-- {
		f, service := p.Files[i], path[1]
		for range len(p.Files) + 1 { // extends chains cannot loop, but a broken file could
			base, ok := f.extends[service]
			if !ok {
				break
			}
			if f = p.file(base.abs); f == nil {
				break
			}
			service = base.service
			if pos, node, ok := f.Lookup(append([]string{"services", service}, path[2:]...)...); ok {
				return pos, node, true
			}
		}
	}
	return Position{}, nil, false
}

func (p *Project) file(abs string) *File {
	for _, f := range p.Files {
		if f.Abs == abs {
			return f
		}
	}
	return nil
}

// ServicePos is where a service is declared.
func (p *Project) ServicePos(service string, path ...string) Position {
	pos, _, _ := p.Locate(append([]string{"services", service}, path...)...)
	return pos
}

// Written returns the node written at services.<service>.<path> in the
// file that wins, or nil. The checks use it to tell a literal value from
// one that came from a variable.
func (p *Project) Written(path ...string) *yaml.Node {
	_, n, _ := p.Locate(path...)
	return n
}

// unsetVariables reports ${VAR} references without a default whose
// variable is set nowhere: compose silently substitutes an empty string.
//
// A variable of the deployer's or the runner's own that the environment
// does not hold is an error: the file asks for what it must never see,
// and an empty string in its place would hide that.
func (p *Project) unsetVariables(env types.Mapping) error {
	seen := map[string]bool{}
	for _, f := range p.Files {
		for key, e := range f.nodes {
			if e.value == nil || e.value.Kind != yaml.ScalarNode || !strings.Contains(e.value.Value, "$") {
				continue
			}
			if strings.HasPrefix(key, "x-") {
				continue
			}
			vars := template.ExtractVariables(map[string]any{"v": e.value.Value}, template.DefaultPattern)
			for _, v := range slices.Sorted(maps.Keys(vars)) {
				d := vars[v]
				pos := Position{File: f.Path, Line: e.value.Line, Column: e.value.Column}
				if _, set := env[v]; !set && internal(v, true) {
					return internalError(pos, v)
				}
				if _, set := env[v]; set || d.DefaultValue != "" || d.PresenceValue != "" || d.Required || hasDefault(e.value.Value, v) {
					continue
				}
				id := pos.String() + v
				if seen[id] {
					continue
				}
				seen[id] = true
				p.Problems = append(p.Problems, Problem{
					Rule: "variable-unset", Service: serviceOf(key), Pos: pos,
					Message: fmt.Sprintf("variable %s is not set; docker compose would substitute an empty string", v),
					Fix:     fmt.Sprintf("set %s in the environment or an --env-file (in Actions: a secret or variable), or give a default with ${%s:-value}, or require it with ${%s:?message}", v, v, v),
				})
			}
		}
	}
	slices.SortFunc(p.Problems, func(a, b Problem) int { return comparePos(a.Pos, b.Pos) })
	return nil
}

func internalError(pos Position, name string) error {
	return &LoadError{Pos: pos, Err: fmt.Errorf("%s is the runner's or the deployer's own variable, which a project never sees", name),
		Fix: "give the value a name of the project's own, in an env file or (in Actions) the step's env: with the pass-env input"}
}

// hasDefault catches ${VAR-} and ${VAR:-}: an explicit empty default.
func hasDefault(s, name string) bool {
	return regexp.MustCompile(`\$\{` + regexp.QuoteMeta(name) + `:?[-+?]`).MatchString(s)
}

func serviceOf(key string) string {
	parts := strings.Split(key, keySep)
	if len(parts) >= 2 && parts[0] == "services" {
		return parts[1]
	}
	return ""
}

func comparePos(a, b Position) int {
	if c := strings.Compare(a.File, b.File); c != 0 {
		return c
	}
	if a.Line != b.Line {
		return a.Line - b.Line
	}
	return a.Column - b.Column
}

// resolveEnvFiles loads each service's env_file into its environment as
// compose does, turning a missing required file into a Problem instead of
// a failure.
func (p *Project) resolveEnvFiles() error {
	for name, s := range p.Compose.Services {
		kept := s.EnvFiles[:0]
		for i, ef := range s.EnvFiles {
			if _, err := os.Stat(ef.Path); err == nil || !bool(ef.Required) {
				kept = append(kept, ef)
				continue
			}
			pos := p.ServicePos(name, "env_file", strconv.Itoa(i))
			p.Problems = append(p.Problems, Problem{
				Rule: "env-file-missing", Service: name, Pos: pos,
				Message: fmt.Sprintf("env_file %s does not exist; docker compose would refuse to start %s", p.display(ef.Path), name),
				Fix:     "create the file (in CI: write it from secrets before this step), fix the path, or mark it optional with `required: false`",
			})
		}
		s.EnvFiles = kept
		p.Compose.Services[name] = s
	}
	resolved, err := p.Compose.WithServicesEnvironmentResolved(false)
	if err != nil {
		return err
	}
	p.Compose = resolved
	return nil
}

// loadError turns a compose-go error into one that names the file, the
// line and the fix where it can.
func loadError(files []*File, err error) error {
	var le *LoadError
	if errors.As(err, &le) {
		return le
	}
	msg := err.Error()
	out := &LoadError{Err: err, Fix: "check the file against the Compose specification: https://docs.docker.com/reference/compose-file/"}
	switch {
	case errors.Is(err, os.ErrNotExist) || strings.Contains(msg, "no such file"):
		out.Fix = "check the path given with -f, or run from the directory that holds compose.yaml"
	case strings.Contains(msg, "no configuration file provided"):
		out.Fix = "pass the Compose file with -f FILE, or run from the directory that holds compose.yaml"
	case strings.Contains(msg, "required variable"):
		out.Fix = "set the variable in the environment or an --env-file; in Actions pass it from a secret"
	}
	// Schema errors name a key path such as "services.api.healthcheck";
	// point at it when one of our files has it.
	if path := schemaPath.FindString(msg); path != "" {
		parts := strings.Split(path, ".")
		if m := extraProperty.FindStringSubmatch(msg); m != nil {
			parts = append(parts, m[1])
			out.Fix = fmt.Sprintf("%s is not a Compose key there: check its spelling and indentation against https://docs.docker.com/reference/compose-file/", m[1])
		}
		for n := len(parts); n > 0 && out.Pos.Line == 0; n-- {
			for i := len(files) - 1; i >= 0; i-- {
				if pos, _, ok := files[i].Lookup(parts[:n]...); ok {
					out.Pos = pos
					break
				}
			}
		}
	}
	return out
}

var extraProperty = regexp.MustCompile(`additional propert(?:y|ies) '([^']+)'`)

var schemaPath = regexp.MustCompile(`\b(services|volumes|networks|secrets|configs|include)(\.[A-Za-z0-9_\-]+)+`)
