package project

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
)

// The Compose file, and everything it names, may come from a pull
// request. Whatever the project names is read only through a Dir: the
// path, symbolic links resolved, must lie inside the project directory,
// must be a regular file (or a directory where one is walked) and must be
// small enough, all checked before a byte is read. A link to
// /proc/self/environ, /dev/zero or a directory outside is refused with an
// error that names the link and where it leads, never what is there.

// MaxFileSize bounds any one file of the project that is read whole.
const MaxFileSize = 16 << 20

// Dir is the directory that a project's files must stay inside.
type Dir struct {
	abs  string // as given, made absolute: what messages show
	real string // with its own links resolved: what paths are compared with
}

// NewDir makes a Dir of path.
func NewDir(path string) (Dir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Dir{}, err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return Dir{}, fmt.Errorf("project directory: %w", err)
	}
	return Dir{abs: abs, real: real}, nil
}

// Path is the directory, absolute.
func (d Dir) Path() string { return d.abs }

// OutsideError is a path of the project that leads outside it.
type OutsideError struct {
	Path   string // as the project names it
	Target string // where its links lead; "" when the path itself is outside
	Dir    string
}

func (e *OutsideError) Error() string {
	if e.Target != "" {
		return fmt.Sprintf("%s is a symbolic link to %s, outside the project directory %s: files a Compose file names must stay inside the project; copy the file into the project instead of linking to it", e.Path, e.Target, e.Dir)
	}
	return fmt.Sprintf("%s is outside the project directory %s: files a Compose file names must stay inside the project", e.Path, e.Dir)
}

// Contains tells whether path names something inside d by its name alone;
// Resolve says whether its links keep it there.
func (d Dir) Contains(path string) bool {
	abs, err := filepath.Abs(path)
	return err == nil && d.inside(abs)
}

// Resolve returns path with its links resolved, or an *OutsideError when
// that leads outside d. A missing path gives an error that is
// fs.ErrNotExist.
func (d Dir) Resolve(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if !d.inside(abs) && !d.insideReal(abs) {
		return "", &OutsideError{Path: path, Dir: d.abs}
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		// A link whose target is missing: say where it leads when that is
		// outside, as a reader would want to know.
		if target, lerr := os.Readlink(abs); lerr == nil {
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(abs), target)
			}
			if !d.inside(target) && !d.insideReal(target) {
				return "", &OutsideError{Path: path, Target: target, Dir: d.abs}
			}
		}
		return "", err
	}
	if !d.insideReal(real) {
		return "", &OutsideError{Path: path, Target: real, Dir: d.abs}
	}
	if rel, _ := filepath.Rel(d.real, real); slices.Contains(strings.Split(filepath.ToSlash(rel), "/"), ".git") {
		return "", fmt.Errorf("%s is in the repository's .git directory, which holds the checkout's credentials (actions/checkout keeps a token in .git/config): a Compose file may not name it", path)
	}
	return real, nil
}

func (d Dir) inside(abs string) bool {
	rel, err := filepath.Rel(d.abs, abs)
	return err == nil && (rel == "." || filepath.IsLocal(rel))
}

func (d Dir) insideReal(real string) bool {
	rel, err := filepath.Rel(d.real, real)
	return err == nil && (rel == "." || filepath.IsLocal(rel))
}

// ReadFile reads a regular file of the project of at most limit bytes.
func (d Dir) ReadFile(path string, limit int64) ([]byte, error) {
	real, err := d.Resolve(path)
	if err != nil {
		return nil, err
	}
	return readRegular(path, real, limit)
}

func readRegular(path, real string, limit int64) ([]byte, error) {
	// Non-blocking, so that a named pipe put in the file's place after it
	// was resolved cannot hold the open; the Stat below refuses it.
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		// A device or pipe opened non-blocking has read nothing.
		return nil, fmt.Errorf("%s is not a regular file (%s): only plain files of the project are read", path, fileKind(st.Mode()))
	}
	if st.Size() > limit {
		return nil, &TooLargeError{Path: path, Size: st.Size(), Limit: limit}
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &TooLargeError{Path: path, Size: int64(len(data)), Limit: limit}
	}
	return data, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeDevice != 0, m&fs.ModeCharDevice != 0:
		return "a device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return m.Type().String()
}

// TooLargeError is a file over the size that may be read.
type TooLargeError struct {
	Path        string
	Size, Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is %d bytes or more, over the limit of %d bytes", e.Path, e.Size, e.Limit)
}

// maxDepth bounds how deep Walk descends: links inside the project can
// make a loop.
const maxDepth = 32

// ReadPlainFile reads a regular file of at most limit bytes, wherever it
// is: for files the operator named, which need no confinement but must
// not hang or exhaust memory either.
func ReadPlainFile(path string, limit int64) ([]byte, error) {
	return readRegular(path, path, limit)
}

// Walk calls fn with the content of every regular file at or below path,
// with its path relative to path ("." for path itself), in lexical order.
// Every entry is checked as ReadFile checks it, links included: a link
// inside a walked directory that leads outside the project is an error.
// budget is how many bytes the files may add up to, and is decreased; a
// file past it is a *TooLargeError.
//
// A directory is walked once, whatever links lead to it again, and at most
// maxEntries entries are looked at: links can make a tree of any size.
func (d Dir) Walk(path string, budget *int64, fn func(rel string, data []byte) error) error {
	w := &walker{d: d, budget: budget, fn: fn, seen: map[string]bool{}}
	return w.walk(path, ".", 0)
}

// maxEntries bounds the entries one Walk looks at.
const maxEntries = 10_000

type walker struct {
	d       Dir
	budget  *int64
	fn      func(string, []byte) error
	seen    map[string]bool // real paths of the directories walked
	entries int
}

func (w *walker) walk(path, rel string, depth int) error {
	d, budget, fn := w.d, w.budget, w.fn
	if w.entries++; w.entries > maxEntries {
		return fmt.Errorf("%s: more than %d files and directories", path, maxEntries)
	}
	if depth > maxDepth {
		return fmt.Errorf("%s: directories nested more than %d deep (a loop of links?)", path, maxDepth)
	}
	real, err := d.Resolve(path)
	if err != nil {
		return err
	}
	st, err := os.Stat(real)
	if err != nil {
		return err
	}
	if st.IsDir() {
		if w.seen[real] {
			return nil // reached again through a link
		}
		w.seen[real] = true
	}
	if !st.IsDir() {
		data, err := readRegular(path, real, min(*budget, MaxFileSize))
		if err != nil {
			return err
		}
		*budget -= int64(len(data))
		return fn(rel, data)
	}
	entries, err := os.ReadDir(real)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == ".git" {
			continue // the checkout's credentials, never carried anywhere
		}
		if err := w.walk(filepath.Join(path, e.Name()), filepath.Join(rel, e.Name()), depth+1); err != nil {
			return err
		}
	}
	return nil
}

// parseFile reads and indexes one Compose file: through the project
// directory when it lies inside it (its links must not lead out), else as
// the operator named it; either way a bounded read of a regular file.
func (p *Project) parseFile(abs string) (*File, error) {
	var (
		data []byte
		err  error
	)
	if p.Dir.Contains(abs) {
		data, err = p.Dir.ReadFile(abs, MaxFileSize)
	} else {
		data, err = readRegular(abs, abs, MaxFileSize)
	}
	if err != nil {
		return nil, err
	}
	return indexFile(abs, p.display(abs), data)
}

// confine refuses a project that names, for anything read on this
// machine, a file outside the project directory: env_file and label_file,
// build contexts and Dockerfiles, the files of build secrets, and the files
// below the project that a release carries to the host (bind mounts,
// configs, secrets). A path outside the project that only the host reads
// (a bind mount of /var/run/docker.sock, a secret file on the host) is the
// host's and is left alone. env_file and label_file must also be plain
// files of a bounded size: the loader reads them whole.
func (p *Project) confine() error {
	c := p.Compose
	refuse := func(pos Position, err error) error {
		p.displayPathError(err)
		return &LoadError{Pos: pos, Err: err, Fix: "name files inside the project directory, as plain files rather than links that lead out of it"}
	}
	local := func(path string) bool { return path != "" && p.Dir.Contains(path) }
	buildSecrets := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		s := c.Services[name]
		// The service's container and its pre_start hooks' each read
		// env_file and label_file.
		for _, spec := range containerSpecs(s) {
			for i, ef := range spec.EnvFiles {
				if err := p.Dir.plainFile(ef.Path); err != nil {
					return refuse(p.ServicePos(name, "env_file", strconv.Itoa(i)), err)
				}
			}
			for i, lf := range spec.LabelFiles {
				if err := p.Dir.plainFile(lf); err != nil {
					return refuse(p.ServicePos(name, "label_file", strconv.Itoa(i)), err)
				}
			}
		}
		if b := s.Build; b != nil {
			if !strings.Contains(b.Context, "://") {
				if _, err := p.Dir.Resolve(b.Context); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return refuse(p.ServicePos(name, "build", "context"), err)
				}
				if b.DockerfileInline == "" {
					df := cmp.Or(b.Dockerfile, "Dockerfile")
					if !filepath.IsAbs(df) {
						df = filepath.Join(b.Context, df)
					}
					if _, err := p.Dir.Resolve(df); err != nil && !errors.Is(err, fs.ErrNotExist) {
						return refuse(p.ServicePos(name, "build", "dockerfile"), err)
					}
				}
			}
			for _, key := range slices.Sorted(maps.Keys(b.AdditionalContexts)) {
				ctx := b.AdditionalContexts[key]
				if strings.Contains(ctx, ":") && !filepath.IsAbs(ctx) {
					continue // an image, a service or a URL: not a directory of this machine
				}
				if _, err := p.Dir.Resolve(ctx); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return refuse(p.ServicePos(name, "build", "additional_contexts", key), err)
				}
			}
			for _, sec := range b.Secrets {
				buildSecrets[sec.Source] = true
				if v := c.Secrets[sec.Source].Environment; v != "" {
					if _, set := c.Environment[v]; !set && internal(v, true) {
						return internalError(p.position("secrets", sec.Source, "environment"), v)
					}
				}
			}
		}
		for i, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind || !local(v.Source) {
				continue
			}
			if _, err := p.Dir.Resolve(v.Source); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return refuse(p.ServicePos(name, "volumes", strconv.Itoa(i)), err)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Configs)) {
		if f := c.Configs[name].File; local(f) {
			if _, err := p.Dir.Resolve(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return refuse(p.position("configs", name, "file"), err)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Secrets)) {
		f := c.Secrets[name].File
		// A build reads its secrets on this machine, wherever they are.
		if local(f) || (f != "" && buildSecrets[name]) {
			if _, err := p.Dir.Resolve(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return refuse(p.position("secrets", name, "file"), err)
			}
		}
	}
	return nil
}

// containerSpecs are the specs of everything a service runs: its own
// container and its pre_start hooks.
func containerSpecs(s types.ServiceConfig) []*types.ContainerSpec {
	specs := []*types.ContainerSpec{&s.ContainerSpec}
	for i := range s.PreStart {
		specs = append(specs, &s.PreStart[i].ContainerSpec)
	}
	return specs
}

// resolveLabelFiles reads label_file into labels, as compose does, through
// the project directory (confine has checked each), so that the loader
// never reads one of its own accord.
func (p *Project) resolveLabelFiles() error {
	for name, s := range p.Compose.Services {
		for i := range s.PreStart {
			s.PreStart[i].ContainerSpec.LabelFiles = nil // hooks inherit the service's labels
		}
		if len(s.LabelFiles) == 0 {
			continue
		}
		if s.Labels == nil {
			s.Labels = types.Labels{}
		}
		for _, lf := range s.LabelFiles {
			data, err := p.Dir.ReadFile(lf, MaxFileSize)
			if err != nil {
				return &LoadError{Pos: p.ServicePos(name, "label_file"), Err: err, Fix: "name a plain label file inside the project"}
			}
			vars, err := dotenv.UnmarshalBytesWithLookup(data, func(string) (string, bool) { return "", false })
			if err != nil {
				return &LoadError{Pos: p.ServicePos(name, "label_file"), Err: fmt.Errorf("label file %s: %w", p.display(lf), err), Fix: "write KEY=VALUE lines"}
			}
			for k, v := range vars {
				if _, set := s.Labels[k]; !set {
					s.Labels[k] = v
				}
			}
		}
		s.LabelFiles = nil
		p.Compose.Services[name] = s
	}
	return nil
}

// position is where a top-level key is set, or nowhere in particular.
func (p *Project) position(path ...string) Position {
	pos, _, _ := p.Locate(path...)
	return pos
}

// plainFile refuses a path that leads outside d, or that is not a regular
// file of at most MaxFileSize. A missing file is left to whoever reads it.
func (d Dir) plainFile(path string) error {
	real, err := d.Resolve(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := os.Stat(real)
	switch {
	case err != nil:
		return err
	case !st.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file (%s): only plain files of the project are read", path, fileKind(st.Mode()))
	case st.Size() > MaxFileSize:
		return &TooLargeError{Path: path, Size: st.Size(), Limit: MaxFileSize}
	}
	return nil
}
