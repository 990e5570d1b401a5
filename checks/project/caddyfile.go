package project

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Caddyfile is a Caddyfile read into its block structure. Site blocks,
// snippets and the global options block are Directives whose Name is the
// first address (or "(snippet)", or "" for global options) and whose Block
// holds the body.
//
// Caddy's own caddyfile package is not used: it brings in the whole Caddy
// module for a lexer the checks only need tokens and lines from.
type Caddyfile struct {
	Path       string
	Directives []Directive
}

// Directive is one line of a Caddyfile and its block, if it opens one.
type Directive struct {
	Name  string
	Args  []string
	Line  int
	Block []Directive
}

// Walk calls fn for every directive, depth first.
func (c *Caddyfile) Walk(fn func(d Directive)) { walkDirectives(c.Directives, fn) }

func walkDirectives(ds []Directive, fn func(d Directive)) {
	for _, d := range ds {
		fn(d)
		walkDirectives(d.Block, fn)
	}
}

type token struct {
	text    string
	line    int
	newLine bool // first token on its line
	quoted  bool
}

// ParseCaddyfile reads a Caddyfile. The grammar is Caddy's: tokens split on
// white space, "quoted" and `backtick` tokens, # comments, \ line
// continuation, <<HEREDOC, and { } blocks.
//
// A Caddyfile of more than maxCaddyfile bytes, or with blocks nested more
// than maxCaddyDepth deep, is refused: it may come from a pull request,
// and real ones are a few kilobytes and a few levels.
func ParseCaddyfile(path string, data []byte) (*Caddyfile, error) {
	if len(data) > maxCaddyfile {
		return nil, &LoadError{Pos: Position{File: path}, Err: fmt.Errorf("the Caddyfile is %d bytes, more than the %d KiB one may be", len(data), maxCaddyfile>>10),
			Fix: "split it with import, or check that the mount names the Caddyfile"}
	}
	toks, err := lexCaddyfile(data)
	if err != nil {
		return nil, &LoadError{Pos: Position{File: path, Line: err.line}, Err: err, Fix: "fix the Caddyfile syntax; `caddy validate` shows the same error"}
	}
	ps := &caddyParser{toks: toks}
	ds, err := ps.block(0)
	if err != nil {
		return nil, &LoadError{Pos: Position{File: path, Line: err.line}, Err: err, Fix: "balance the braces: every { needs a } on a line of its own"}
	}
	return &Caddyfile{Path: path, Directives: ds}, nil
}

type caddyError struct {
	line int
	msg  string
}

func (e *caddyError) Error() string { return e.msg }

func lexCaddyfile(data []byte) ([]token, *caddyError) {
	var (
		toks     []token
		line     = 1
		lastLine = 0
		s        = string(data)
	)
	emit := func(text string, at int, quoted bool) {
		toks = append(toks, token{text: text, line: at, newLine: at != lastLine, quoted: quoted})
		lastLine = at
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '\\' && i+1 < len(s) && (s[i+1] == '\n' || (s[i+1] == '\r' && i+2 < len(s) && s[i+2] == '\n')):
			// A continued line belongs to the line it continues.
			i += 2
			if s[i-1] == '\r' {
				i++
			}
			line++
			lastLine = line
		case c == '#' && (i == 0 || isSpace(s[i-1])):
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '`':
			start, at := i+1, line
			var b strings.Builder
			for i = start; ; i++ {
				if i >= len(s) {
					return nil, &caddyError{at, "unterminated quoted token"}
				}
				if s[i] == '\\' && c == '"' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				} else if s[i] == c {
					break
				} else if s[i] == '\n' {
					line++
				}
				b.WriteByte(s[i])
			}
			i++
			emit(b.String(), at, true)
			lastLine = line // what follows on the closing line continues the directive
		case c == '<' && strings.HasPrefix(s[i:], "<<") && i+2 < len(s) && isMarker(s[i+2]):
			j := i + 2
			for j < len(s) && isMarker(s[j]) {
				j++
			}
			marker, at := s[i+2:j], line
			// The closing marker may be indented: end is where it starts.
			end := strings.Index(s[j:], "\n"+marker)
			if end >= 0 {
				end++
			} else {
				end = strings.Index(s[j:], marker)
			}
			if end < 0 {
				return nil, &caddyError{at, fmt.Sprintf("heredoc <<%s has no closing %s", marker, marker)}
			}
			body := s[j : j+end]
			line += strings.Count(body, "\n")
			i = j + end + len(marker)
			emit(strings.TrimSpace(body), at, true)
			lastLine = line
		default:
			start := i
			for i < len(s) && !isSpace(s[i]) {
				i++
			}
			emit(s[start:i], line, false)
		}
	}
	return toks, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isMarker(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'
}

type caddyParser struct {
	toks []token
	i    int
}

// Limits of ParseCaddyfile.
const (
	maxCaddyfile  = 1 << 20
	maxCaddyDepth = 32
)

// block reads directives until the closing brace of this depth.
func (p *caddyParser) block(depth int) ([]Directive, *caddyError) {
	if depth > maxCaddyDepth {
		return nil, &caddyError{p.toks[p.i-1].line, fmt.Sprintf("blocks nested more than %d deep", maxCaddyDepth)}
	}
	var out []Directive
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		if !t.quoted && t.text == "}" {
			if depth == 0 {
				return nil, &caddyError{t.line, "unexpected }"}
			}
			p.i++
			return out, nil
		}
		d := Directive{Name: t.text, Line: t.line}
		if !t.quoted && t.text == "{" {
			d.Name = "" // global options, or a block opened on its own line
		} else {
			p.i++
			for p.i < len(p.toks) && !p.toks[p.i].newLine {
				if a := p.toks[p.i]; !a.quoted && a.text == "{" {
					break
				}
				d.Args = append(d.Args, p.toks[p.i].text)
				p.i++
			}
			// Site addresses may run over several lines, each ending in a comma.
			for depth == 0 && p.i < len(p.toks) && p.toks[p.i].newLine && strings.HasSuffix(lastOf(d), ",") {
				d.Args = append(d.Args, p.toks[p.i].text)
				p.i++
			}
		}
		if p.i < len(p.toks) && !p.toks[p.i].quoted && p.toks[p.i].text == "{" {
			p.i++
			body, err := p.block(depth + 1)
			if err != nil {
				return nil, err
			}
			d.Block = body
		}
		out = append(out, d)
	}
	if depth > 0 {
		return nil, &caddyError{p.toks[len(p.toks)-1].line, "missing } at the end of the file"}
	}
	return out, nil
}

func lastOf(d Directive) string {
	if len(d.Args) == 0 {
		return d.Name
	}
	return d.Args[len(d.Args)-1]
}

// caddyfileTarget is where the official image reads its configuration.
const caddyfileTarget = "/etc/caddy/Caddyfile"

// readCaddyfiles finds the Caddyfile bind-mounted (or given as a config)
// into each service and parses it.
func (p *Project) readCaddyfiles() {
	for name, s := range p.Compose.Services {
		src, field := caddyfileSource(p.Compose, s)
		if src == "" || !p.Dir.Contains(src) {
			continue // none, or the host's own file: not one of the project's to read
		}
		data, err := p.Dir.ReadFile(src, maxCaddyfile)
		if err == nil {
			var c *Caddyfile
			if c, err = ParseCaddyfile(p.display(src), data); err == nil {
				p.Caddyfiles[name] = c
				continue
			}
		}
		p.displayPathError(err)
		pr := Problem{Rule: "caddyfile-invalid", Service: name, Pos: p.ServicePos(name, field),
			Message: fmt.Sprintf("cannot read the Caddyfile of %s: %v", name, err),
			Fix:     "fix the mount source so it names the Caddyfile, relative to the Compose file"}
		if le, ok := err.(*LoadError); ok {
			pr.Pos, pr.Message, pr.Fix = le.Pos, le.Err.Error(), le.Fix
		}
		p.Problems = append(p.Problems, pr)
	}
}

func caddyfileSource(proj *types.Project, s types.ServiceConfig) (src, field string) {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && (v.Target == caddyfileTarget || filepath.Base(v.Source) == "Caddyfile") {
			return v.Source, "volumes"
		}
	}
	for _, c := range s.Configs {
		target := c.Target
		if target == "" {
			target = "/" + c.Source
		}
		if cfg, ok := proj.Configs[c.Source]; ok && cfg.File != "" && (target == caddyfileTarget || filepath.Base(cfg.File) == "Caddyfile") {
			return cfg.File, "configs"
		}
	}
	return "", ""
}
