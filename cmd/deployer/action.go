package main

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/checks/report"
	"github.com/sethvargo/go-githubactions"
	"github.com/spf13/cobra"
)

// newActionCommand is the GitHub Action's entry point: action.yml runs
// `deployer action`, and the inputs arrive as INPUT_* variables. It turns
// them into the same options the command line fills and runs the same
// code.
func newActionCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "action",
		Short:  "Run as the GitHub Action (reads INPUT_* variables)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			gha := githubactions.New(githubactions.WithWriter(cmd.OutOrStdout()))
			err := runAction(cmd, newInputs(gha))
			// An error is an annotation, escaped, and nothing else: printed
			// as it is on stderr, which the runner reads too, text that a
			// Compose file chose could run a workflow command.
			if err == nil {
				return nil
			}
			code := exitFailed
			if ee, ok := errors.AsType[*exitError](err); ok {
				code = ee.code
			}
			switch le, ok := errors.AsType[*project.LoadError](err); {
			case ok && le.Pos.File != "" && filepath.IsLocal(le.Pos.File):
				// On the file and line, as the checks' findings are.
				msg := strings.Replace(err.Error(), le.Pos.String()+": ", "", 1)
				fmt.Fprintln(cmd.OutOrStdout(), report.AnnotationAt("error", le.Pos, "the Compose project does not load", msg))
			case err.Error() != fmt.Sprintf("exit status %d", code):
				gha.Errorf("%s", err.Error())
			}
			return &exitError{code: code}
		},
	}
}

// actionCommands are what the command input runs.
var actionCommands = []string{"check", "deploy", "redeploy", "rollback", "releases"}

func runAction(cmd *cobra.Command, in inputs) error {
	c := in.or("command", "check")
	if !slices.Contains(actionCommands, c) {
		return inputError("command", "%q is not a command of this Action: use one of %s", c, strings.Join(actionCommands, ", "))
	}
	// The run's own files (the SSH key, known_hosts, the env input) live
	// outside the workspace, owner-only, and go with the run.
	tmp, err := os.MkdirTemp("", "deployer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	switch c {
	case "check":
		return actionCheck(cmd, in, tmp)
	case "rollback", "releases":
		return actionOnHosts(cmd, in, tmp, c)
	}
	return actionDeploy(cmd, in, tmp, c == "redeploy")
}

// actionCheckOptions reads the inputs that load and check a project.
// Paths are resolved in working-directory but reported relative to the
// workspace, so annotations and code scanning find the files. The env
// input is one more env file, last (so it wins), written in tmp.
//
// The project sees only the variables the workflow names in pass-env, and
// its files must stay inside the workspace: a pull request controls it.
func actionCheckOptions(in inputs, tmp string) (checkOptions, error) {
	dir := in.or("working-directory", ".")
	env, err := project.ActionEnviron(in.list("pass-env"))
	if err != nil {
		return checkOptions{}, inputError("pass-env", "%v", err)
	}
	o := checkOptions{
		files:         inDir(dir, in.list("compose-files")),
		envFiles:      inDir(dir, in.list("env-files")),
		profiles:      in.list("profiles"),
		strict:        in.boolean("strict"),
		cloudflareSSL: in.str("cloudflare-ssl"),
		hostMemory:    in.str("host-memory"),
		environment:   checksEnvironment(in.str("environment")),
		env:           env,
		root:          workspace(),
	}
	if err := in.err(); err != nil {
		return checkOptions{}, err
	}
	if dir != "." {
		o.workingDir = dir
	}
	if text := in.raw("env"); strings.TrimSpace(text) != "" {
		if len(o.envFiles) == 0 {
			// As without it: the project's .env, when there is one.
			if dotEnv := filepath.Join(o.projectDir(), ".env"); fileExists(dotEnv) {
				o.envFiles = []string{dotEnv}
			}
		}
		f := filepath.Join(tmp, "env")
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			return checkOptions{}, err
		}
		o.envFiles = append(o.envFiles, f)
	}
	maskEnvFiles(in, o)
	return o, nil
}

// projectDir is where the project's own .env is looked for: as compose
// does, the working directory, else the first file's.
func (o checkOptions) projectDir() string {
	if o.workingDir == "" && len(o.files) > 0 {
		return filepath.Dir(o.files[0])
	}
	return cmp.Or(o.workingDir, ".")
}

// checksEnvironment is what the environment input tells the checks: it
// names the GitHub environment, which the checks understand when it is
// staging or production; another name leaves them to x-deployer's.
func checksEnvironment(name string) string {
	if slices.Contains(project.Environments, strings.ToLower(name)) {
		return strings.ToLower(name)
	}
	return ""
}

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// maskEnvFiles hides every value of the env files the project will read,
// whatever its name, before anything is loaded or printed: a load error
// may quote one.
func maskEnvFiles(in inputs, o checkOptions) {
	files := o.envFiles
	if len(files) == 0 {
		files = []string{filepath.Join(o.projectDir(), ".env")}
	}
	for _, f := range files {
		data, err := project.ReadPlainFile(f, project.MaxFileSize)
		if err != nil {
			continue // the loader says what is wrong with it
		}
		vars, _ := dotenv.UnmarshalBytesWithLookup(data, func(string) (string, bool) { return "", false })
		for _, v := range vars {
			in.mask(v)
		}
		// As written, too: a file that does not parse is quoted by the
		// loader's error, which is where a value would leak.
		for line := range strings.Lines(string(data)) {
			line = strings.TrimPrefix(strings.TrimSpace(line), "export ")
			if _, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				in.mask(strings.Trim(strings.TrimSpace(v), `"'`))
			}
		}
	}
}

// mask hides a secret in the log: the runner matches masks line by line,
// so each line of a value is a mask of its own. Short lines are left, by
// the rule every redaction here follows (deployer.Redact).
func mask(gha *githubactions.Action, secret string) {
	for line := range strings.Lines(secret) {
		if line = strings.TrimSpace(line); len(line) >= 4 {
			gha.AddMask(line)
		}
	}
}

// commandSafe keeps a line of untrusted text (what a build, a migration or
// a container printed, an error that quotes it) from being read by the
// runner as a workflow command. The runner splits lines at \r too, trims
// any Unicode white space before a "::" command, and finds the older
// "##[" form anywhere in a line: a carriage return becomes a line break,
// a line that would start with "::" is shown behind "| ", and "##[" is
// broken up as "## [".
func commandSafe(line string) string {
	var b strings.Builder
	for part := range strings.Lines(strings.ReplaceAll(line, "\r", "\n")) {
		if strings.HasPrefix(strings.TrimLeftFunc(part, unicode.IsSpace), "::") {
			b.WriteString("| ")
		}
		b.WriteString(strings.ReplaceAll(part, "##[", "## ["))
	}
	return b.String()
}

// commandSafeText is commandSafe for every line of s.
func commandSafeText(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString(commandSafe(line))
	}
	return b.String()
}

func actionCheck(cmd *cobra.Command, in inputs, tmp string) error {
	o, err := actionCheckOptions(in, tmp)
	if err != nil {
		return err
	}
	_, findings, err := o.run(cmd.Context())
	if err != nil {
		return err
	}
	ro := report.Options{Strict: o.strict, Version: currentVersion(), Root: workspace()}
	if err := report.GitHub(cmd.OutOrStdout(), findings, ro); err != nil {
		return err
	}
	if path := in.str("sarif-file"); path != "" {
		if err := writeFile(path, func(f *os.File) error { return report.SARIF(f, findings, ro) }); err != nil {
			return fmt.Errorf("input sarif-file: %w", err)
		}
		in.output("sarif-file", path)
	}
	counts := map[checks.Severity]int{}
	for _, f := range findings {
		if f.Suppressed == nil {
			counts[f.Severity]++
		}
	}
	in.output("errors", fmt.Sprint(counts[checks.Error]))
	in.output("warnings", fmt.Sprint(counts[checks.Warning]))
	in.summary(summary(findings))
	if checks.Failed(findings, o.strict) {
		return &exitError{code: exitFindings}
	}
	return nil
}

// summary is the job summary of a check: a table of what needs fixing.
func summary(fs []checks.Finding) string {
	t := findingsTable(fs)
	if t == "" {
		t = "No problems found.\n"
	}
	return "### deployer check\n\n" + t
}

// findingsTable is the findings as a Markdown table, "" for none.
func findingsTable(fs []checks.Finding) string {
	var b strings.Builder
	for _, f := range fs {
		if f.Suppressed != nil {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("| | rule | where | what | fix |\n|---|---|---|---|---|\n")
		}
		fmt.Fprintf(&b, "| %s | [%s](%s) | `%s` | %s | %s |\n", f.Severity, f.Rule, ruleURL(f.Rule), f.Pos, cell(f.Message), cell(f.Fix))
	}
	return b.String()
}

func ruleURL(id string) string {
	if r := checks.RuleByID(id); r != nil {
		return r.DocURL()
	}
	return ""
}

func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// list splits an input written one item per line or comma-separated.
func list(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == ',' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func inDir(dir string, paths []string) []string {
	for i, p := range paths {
		if !filepath.IsAbs(p) {
			paths[i] = filepath.Join(dir, p)
		}
	}
	return paths
}

func writeFile(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
