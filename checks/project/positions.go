package project

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"
)

// Position is a place in a file. Line and Column start at 1; zero means
// unknown.
type Position struct {
	File   string `json:"file"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
}

func (p Position) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Column == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// Ignore is an inline suppression: "# deployer:ignore RULE reason" on a
// line suppresses RULE for findings on that line and the next.
type Ignore struct {
	Rule   string
	Reason string
	Pos    Position
}

// File is one Compose file as written, indexed by key path.
type File struct {
	Path    string // as shown to people: relative to the working directory when below it
	Abs     string
	Root    *yaml.Node
	Ignores []Ignore
	nodes   map[string]entry
	extends map[string]extendsRef // by service name: the service it extends
	walked  int                   // nodes visited while indexing
}

// extendsRef names the service a service extends, and the file it is in.
type extendsRef struct {
	abs, service string
}

type entry struct {
	key, value *yaml.Node // key is nil for sequence items
}

// keySep joins path elements; service names may contain dots.
const keySep = "\x1f"

func pathKey(path []string) string { return strings.Join(path, keySep) }

// A YAML comment starts at a # that begins the line or follows white space.
var ignoreComment = regexp.MustCompile(`(?:^|\s)#\s*deployer:ignore(?:\s+([A-Za-z0-9_-]+))?(?:\s+(.*?))?\s*$`)

// parseFile reads and indexes one Compose file. A YAML syntax error comes
// back with the file and line.
func parseFile(abs, display string) (*File, error) {
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, err
	}
	return indexFile(abs, display, data)
}

// maxAliases bounds the YAML aliases (*name) of one Compose file: the
// Compose loader takes time that grows with the square of their number
// (20,000 of them, 58 KB, took 18 s). Real files use a handful.
const maxAliases = 1000

// countAliases counts the alias nodes of a document without following
// them, stopping once past maxAliases.
func countAliases(doc *yaml.Node) int {
	n, stack := 0, []*yaml.Node{doc}
	for len(stack) > 0 && n <= maxAliases {
		node := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if node.Kind == yaml.AliasNode {
			n++
			continue
		}
		stack = append(stack, node.Content...)
	}
	return n
}

func indexFile(abs, display string, data []byte) (*File, error) {
	f := &File{Path: display, Abs: abs, nodes: map[string]entry{}, extends: map[string]extendsRef{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &LoadError{Pos: Position{File: display, Line: yamlErrorLine(err)}, Err: err,
			Fix: "fix the YAML syntax at that line (indentation, a missing colon, or an unquoted value starting with a special character)"}
	}
	if n := countAliases(&doc); n > maxAliases {
		return nil, &LoadError{Pos: Position{File: display}, Err: fmt.Errorf("the file uses %d YAML aliases, more than the %d a Compose file may", n, maxAliases),
			Fix: "write the repeated parts out, or share them with fewer anchors: the Compose loader's time grows with the square of their number"}
	}
	if len(doc.Content) > 0 {
		f.Root = doc.Content[0]
		f.walk(nil, nil, f.Root, 0)
	}
	for i, line := range strings.Split(string(data), "\n") {
		m := ignoreComment.FindStringSubmatch(line)
		if m == nil || !strings.Contains(line, "#") {
			continue
		}
		col := strings.Index(line, "deployer:ignore")
		f.Ignores = append(f.Ignores, Ignore{Rule: m[1], Reason: strings.TrimSpace(m[2]),
			Pos: Position{File: display, Line: i + 1, Column: col + 1}})
	}
	return f, nil
}

// maxNodes bounds the paths indexed per file. Aliases are followed, so a
// few hundred bytes of nested aliases ("billion laughs") expand to
// billions of paths; compose-go rejects such a file, but only after this
// index is built. Real Compose files stay far below it.
const maxNodes = 1 << 18

// walk records every mapping key and sequence item under its path. Merge
// keys (<<) are followed so that anchored blocks are found too; depth
// bounds alias loops, maxNodes alias bombs.
func (f *File) walk(path []string, key, n *yaml.Node, depth int) {
	if f.walked++; depth > 64 || f.walked > maxNodes {
		return
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if _, seen := f.nodes[pathKey(path)]; !seen || key != nil {
		f.nodes[pathKey(path)] = entry{key: key, value: n}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			f.walk(path, nil, c, depth+1)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				f.walk(path, key, v, depth+1)
				continue
			}
			f.walk(append(path[:len(path):len(path)], k.Value), k, v, depth+1)
		}
	case yaml.SequenceNode:
		if n.Tag == "!!merge" || (key != nil && key.Value == "<<") {
			for _, c := range n.Content {
				f.walk(path, key, c, depth+1)
			}
			return
		}
		for i, c := range n.Content {
			f.walk(append(path[:len(path):len(path)], strconv.Itoa(i)), nil, c, depth+1)
		}
	}
}

// Lookup returns the position of the key at path and the node written
// there, if this file has it.
func (f *File) Lookup(path ...string) (Position, *yaml.Node, bool) {
	e, ok := f.nodes[pathKey(path)]
	if !ok {
		return Position{}, nil, false
	}
	n := e.key
	if n == nil {
		n = e.value
	}
	return Position{File: f.Path, Line: n.Line, Column: n.Column}, e.value, true
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

func yamlErrorLine(err error) int {
	// The last "line N" is where the parser gave up.
	m := yamlLine.FindAllStringSubmatch(err.Error(), -1)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}
