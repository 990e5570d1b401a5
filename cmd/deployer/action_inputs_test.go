package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// actionYAML is what the tests read of action.yml.
type actionYAML struct {
	Inputs  map[string]struct{ Default *string } `yaml:"inputs"`
	Outputs map[string]struct{ Value string }    `yaml:"outputs"`
	Runs    struct {
		Using string
		Steps []struct {
			ID  string
			Env map[string]string
		}
	}
}

func readActionYAML(t *testing.T) actionYAML {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var a actionYAML
	if err := yaml.Unmarshal(b, &a); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	return a
}

// readers are the methods of inputs that read one.
var readers = map[string]bool{"str": true, "or": true, "list": true, "secret": true, "raw": true, "boolean": true, "duration": true, "count": true}

// inputsRead are the inputs the code reads: the literal names given to the
// methods of inputs in this package (and no input is read any other way:
// GetInput and INPUT_ appear only in action_inputs.go).
func inputsRead(t *testing.T) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	read := map[string]bool{}
	for _, name := range goFiles(t) {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			recv, ok := sel.X.(*ast.Ident)
			lit, isLit := call.Args[0].(*ast.BasicLit)
			if !ok || recv.Name != "in" || !readers[sel.Sel.Name] || !isLit || lit.Kind != token.STRING {
				return true
			}
			if s, err := strconv.Unquote(lit.Value); err == nil {
				read[s] = true
			}
			return true
		})
	}
	return read
}

// goFiles are the package's files, tests left out.
func goFiles(t *testing.T) []string {
	files, _ := filepath.Glob("*.go")
	return slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, "_test.go") })
}

// Every input of action.yml is read by the code and documented, and the
// code reads no input that action.yml does not declare.
func TestActionInputsAgree(t *testing.T) {
	a := readActionYAML(t)
	read := inputsRead(t)
	docs, err := os.ReadFile(repoPath(t, "docs/action.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(read) < 20 {
		t.Fatalf("found only %d inputs read in the code: %v", len(read), slices.Sorted(maps.Keys(read)))
	}
	for name := range a.Inputs {
		if !read[name] {
			t.Errorf("input %s is declared in action.yml but the code never reads it", name)
		}
		if !strings.Contains(string(docs), "`"+name+"`") {
			t.Errorf("input %s is not documented in docs/action.md", name)
		}
	}
	for name := range read {
		if _, ok := a.Inputs[name]; !ok {
			t.Errorf("the code reads input %s, which action.yml does not declare", name)
		}
	}
	// The docs' table documents only inputs that exist.
	section := string(docs)[strings.Index(string(docs), "## Inputs"):]
	section = section[:strings.Index(section, "\n## ")]
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z-]+)`").FindAllStringSubmatch(section, -1) {
		if _, ok := a.Inputs[m[1]]; !ok {
			t.Errorf("docs/action.md documents input %s, which action.yml does not declare", m[1])
		}
	}
	// Inputs are read through inputs alone.
	for _, name := range goFiles(t) {
		b, _ := os.ReadFile(name)
		if name != "action_inputs.go" && (strings.Contains(string(b), "GetInput(") || strings.Contains(string(b), `"INPUT_`)) {
			t.Errorf("%s reads an input without the inputs reader", name)
		}
	}
	// The composite passes every input to deployer as INPUT_NAME, and
	// every output back from its run step.
	var env map[string]string
	for _, s := range a.Runs.Steps {
		if s.ID == "run" {
			env = s.Env
		}
	}
	for name := range a.Inputs {
		if got, want := env["INPUT_"+strings.ToUpper(name)], "${{ inputs."+name+" }}"; got != want {
			t.Errorf("the run step passes INPUT_%s as %q, want %q", strings.ToUpper(name), got, want)
		}
	}
	for name, o := range a.Outputs {
		if want := "${{ steps.run.outputs." + name + " }}"; o.Value != want {
			t.Errorf("output %s is %q, want %q", name, o.Value, want)
		}
	}
	for name := range a.Outputs {
		if !strings.Contains(string(docs), "`"+name+"`") {
			t.Errorf("output %s is not documented in docs/action.md", name)
		}
	}
}

// The example workflows parse, and every with: they give the Action is one
// of its inputs.
func TestExampleWorkflows(t *testing.T) {
	a := readActionYAML(t)
	files, _ := filepath.Glob(repoPath(t, "examples/workflows/*.yml"))
	if len(files) < 2 {
		t.Fatalf("examples/workflows has %d workflows, want the deploy and the preflight ones", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var wf struct {
			On   any `yaml:"on"`
			Jobs map[string]struct {
				Steps []struct {
					Uses string            `yaml:"uses"`
					With map[string]string `yaml:"with"`
				} `yaml:"steps"`
			} `yaml:"jobs"`
		}
		if err := yaml.Unmarshal(b, &wf); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		uses := 0
		for _, job := range wf.Jobs {
			for _, step := range job.Steps {
				if !strings.HasPrefix(step.Uses, "semalink/deploy-action@") {
					continue
				}
				uses++
				for key := range step.With {
					if _, ok := a.Inputs[key]; !ok {
						t.Errorf("%s: with: %s is not an input of action.yml", filepath.Base(f), key)
					}
				}
			}
		}
		if uses == 0 || wf.On == nil {
			t.Errorf("%s: no step uses the Action, or no trigger", filepath.Base(f))
		}
	}
}

// A bad input is one annotation that names it and says what to give,
// exit code 2, before anything connects (the host here would refuse any
// connection, which would be a different error).
func TestActionBadInputs(t *testing.T) {
	key := "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----"
	base := map[string]string{
		"INPUT_COMMAND": "deploy", "INPUT_COMPOSE-FILES": "examples/demo/compose.yaml", "INPUT_HOSTS": "deploy@127.0.0.1:1",
		"INPUT_HOST-FINGERPRINT": "SHA256:" + strings.Repeat("A", 43), "SSH_AUTH_SOCK": "",
	}
	for _, tc := range []struct {
		name string
		set  map[string]string
		want string
	}{
		{"unknown command", map[string]string{"INPUT_COMMAND": "launch"}, "input command: \"launch\" is not a command of this Action: use one of check, deploy, redeploy, rollback, releases"},
		{"local: yes", map[string]string{"INPUT_LOCAL": "yes"}, `input local: "yes" is not a boolean: write true or false`},
		{"local and hosts", map[string]string{"INPUT_LOCAL": "TRUE"}, "input local: local: true deploys to the runner's own Docker Engine, and hosts to other machines"},
		{"dry-run: 1", map[string]string{"INPUT_DRY-RUN": "1"}, `input dry-run: "1" is not a boolean`},
		{"no hosts", map[string]string{"INPUT_HOSTS": ""}, "input hosts: no host to work on"},
		{"empty known-hosts", map[string]string{"INPUT_HOST-FINGERPRINT": "", "INPUT_KNOWN-HOSTS": "  \n"}, "input known-hosts: empty, and no host-fingerprint"},
		{"no key", nil, "input ssh-private-key: empty"},
		{"key that does not parse", map[string]string{"INPUT_SSH-PRIVATE-KEY": key}, "parse SSH key from input ssh-private-key: ssh: invalid openssh private key format (give the whole private key"},
		{"connect-timeout", map[string]string{"INPUT_CONNECT-TIMEOUT": "ten"}, `input connect-timeout: "ten" is not a duration`},
		{"keep", map[string]string{"INPUT_KEEP": "0"}, `input keep: "0" is not a number of at least 1`},
		{"rollback without hosts", map[string]string{"INPUT_COMMAND": "rollback", "INPUT_HOSTS": ""}, "input hosts: no host to work on"},
		{"rollback dry run", map[string]string{"INPUT_COMMAND": "rollback", "INPUT_DRY-RUN": "true"}, "input dry-run: rollback has no dry run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range base {
				t.Setenv(k, v)
			}
			for k, v := range tc.set {
				t.Setenv(k, v)
			}
			tmp := t.TempDir()
			outputs, summary := filepath.Join(tmp, "output"), filepath.Join(tmp, "summary")
			writeFiles(t, tmp, map[string]string{"output": "", "summary": ""})
			t.Setenv("GITHUB_OUTPUT", outputs)
			t.Setenv("GITHUB_STEP_SUMMARY", summary)
			code, stdout, stderr := run(t, repoPath(t, "."), "action")
			errs := strings.Count(stdout, "::error")
			if code != exitConfig || errs != 1 || !strings.Contains(stdout, "::error::"+tc.want) || stderr != "" {
				t.Errorf("exit %d, %d error annotations, stdout:\n%s\nstderr: %s\nwant exit 2 and one ::error::%s", code, errs, stdout, stderr, tc.want)
			}
			if strings.Contains(stdout, "connect to") {
				t.Errorf("it connected:\n%s", stdout)
			}
			// A workflow that reads the outputs learns it failed, and why.
			if tc.name != "unknown command" {
				sum, _ := os.ReadFile(summary)
				if got := readOutputs(t, outputs)["status"]; got != "failed" || !strings.Contains(string(sum), "failed before it reached a host") {
					t.Errorf("status output %q, summary:\n%s", got, sum)
				}
			}
		})
	}
}

// A project that does not load is an annotation on its file and line,
// in check and deploy alike.
func TestActionLoadErrorAnnotation(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"compose.yaml": "services:\n  api:\n    image: [unclosed\n"})
	for _, command := range []string{"check", "deploy"} {
		t.Run(command, func(t *testing.T) {
			t.Setenv("INPUT_COMMAND", command)
			t.Setenv("INPUT_HOSTS", "deploy@127.0.0.1:1")
			t.Setenv("INPUT_HOST-FINGERPRINT", "SHA256:"+strings.Repeat("A", 43))
			t.Setenv("SSH_AUTH_SOCK", "/nonexistent")
			code, stdout, _ := run(t, dir, "action")
			if code != exitConfig || !regexp.MustCompile(`(?m)^::error file=compose\.yaml,line=\d+(,col=\d+)?,title=the Compose project does not load::`).MatchString(stdout) ||
				strings.Count(stdout, "::error") != 1 {
				t.Errorf("exit %d\n%s", code, stdout)
			}
		})
	}
}
