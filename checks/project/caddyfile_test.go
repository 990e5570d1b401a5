package project_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/checks/project"
)

// render writes directives as LINE:NAME(ARG|ARG){...} so a table can say
// what a Caddyfile parses to, lines included.
func render(ds []project.Directive) string {
	var parts []string
	for _, d := range ds {
		s := fmt.Sprintf("%d:%s", d.Line, d.Name)
		if len(d.Args) > 0 {
			s += "(" + strings.Join(d.Args, "|") + ")"
		}
		if d.Block != nil {
			s += "{" + render(d.Block) + "}"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestParseCaddyfile(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"site", "example.com {\n\treverse_proxy api:3000\n}\n",
			"1:example.com{2:reverse_proxy(api:3000)}"},
		{"no block", "reverse_proxy api:3000\n", "1:reverse_proxy(api:3000)"},
		{"crlf", "example.com {\r\n\treverse_proxy api:3000\r\n}\r\n",
			"1:example.com{2:reverse_proxy(api:3000)}"},
		{"empty block", "example.com {\n}\n\nb\n", "1:example.com 4:b"}, // an empty block leaves Block nil
		{"quotes", "a {\n\trespond \"hello world\" 200\n\theader X-A \"q \\\"x\\\" \\\\ y\"\n}\n",
			`1:a{2:respond(hello world|200) 3:header(X-A|q "x" \ y)}`},
		{"backticks", "a {\n\theader X-B `say \"hi\" \\n`\n}\n",
			"1:a{2:header(X-B|say \"hi\" \\n)}"},
		{"quoted brace is a token", "a {\n\trespond \"{\"\n\trespond \"}\"\n}\n",
			"1:a{2:respond({) 3:respond(})}"},
		{"multi-line quote", "a {\n\trespond \"one\ntwo\" 200\n\tlog\n}\n",
			"1:a{2:respond(one\ntwo|200) 4:log}"},
		{"comments", "# head\na { # site\n\tfoo # trailing\n\tbar#baz\n\t# whole line\n}\n",
			"2:a{3:foo 4:bar#baz}"},
		{"continuation", "a {\n\treverse_proxy api:3000 \\\n\t\tweb:3000\n\tlog\n}\n",
			"1:a{2:reverse_proxy(api:3000|web:3000) 4:log}"},
		{"heredoc", "a {\n\trespond <<HTML\n<p>hi</p>\nHTML 200\n\tlog\n}\n",
			"1:a{2:respond(<p>hi</p>|200) 5:log}"},
		{"heredoc indented end", "a {\n\trespond <<HTML\n\t\t<p>hi</p>\n\t\t<p>there</p>\n\t\tHTML 200\n\tlog\n}\n",
			"1:a{2:respond(<p>hi</p>\n\t\t<p>there</p>|200) 6:log}"},
		{"nested", "a {\n\thandle /api/* {\n\t\treverse_proxy {\n\t\t\tto api:3000\n\t\t}\n\t}\n}\nb {\n\tlog\n}\n",
			"1:a{2:handle(/api/*){3:reverse_proxy{4:to(api:3000)}}} 8:b{9:log}"},
		{"global options and snippet", "{\n\temail ops@example.com\n}\n\n(common) {\n\tencode gzip\n}\n\nexample.com {\n\timport common\n}\n",
			"1:{2:email(ops@example.com)} 5:(common){6:encode(gzip)} 9:example.com{10:import(common)}"},
		{"addresses over lines", "a.example.com,\nb.example.com {\n\tlog\n}\n",
			"1:a.example.com,(b.example.com){3:log}"},
		{"placeholders", "a {\n\treverse_proxy {$UPSTREAM} {http.request.host}\n}\n",
			"1:a{2:reverse_proxy({$UPSTREAM}|{http.request.host})}"},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := project.ParseCaddyfile("Caddyfile", []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			if got := render(c.Directives); got != tc.want {
				t.Errorf("parsed\n%s\ngot  %q\nwant %q", tc.src, got, tc.want)
			}
			if c.Path != "Caddyfile" {
				t.Errorf("path %q", c.Path)
			}
		})
	}
}

func TestParseCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		msg       string
	}{
		{"unexpected close", "a {\n}\n}\n", 3, "unexpected }"},
		{"missing close", "a {\n\tb {\n\t\tc\n\t}\n\td\n", 5, "missing }"},
		{"unterminated quote", "a {\n\trespond \"never\n\tclosed\n}\n", 2, "unterminated quoted token"},
		{"unterminated backtick", "a {\n\n\trespond `never\n}\n", 3, "unterminated quoted token"},
		{"heredoc without end", "a {\n\trespond <<EOF\n\tbody\n}\n", 2, "heredoc <<EOF has no closing EOF"},
		{"lines after a heredoc", "a {\n\trespond <<EOF\n\t\tbody\n\t\tEOF\n}\n}\n", 6, "unexpected }"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := project.ParseCaddyfile("conf/Caddyfile", []byte(tc.src))
			var le *project.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("ParseCaddyfile = %+v, %v; want a *LoadError", c, err)
			}
			if le.Pos != (project.Position{File: "conf/Caddyfile", Line: tc.line}) || !strings.Contains(le.Err.Error(), tc.msg) || le.Fix == "" {
				t.Errorf("error at %s: %v (fix %q); want line %d: %s", le.Pos, le.Err, le.Fix, tc.line, tc.msg)
			}
		})
	}
}

func TestCaddyfileWalk(t *testing.T) {
	c, err := project.ParseCaddyfile("Caddyfile", []byte("a {\n\tb {\n\t\tc\n\t}\n\td\n}\ne\n"))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	c.Walk(func(d project.Directive) { order = append(order, d.Name) })
	if got := strings.Join(order, " "); got != "a b c d e" {
		t.Errorf("walk order %q, want depth first: a b c d e", got)
	}
}
