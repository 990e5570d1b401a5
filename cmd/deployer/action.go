package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
			var err error
			switch c := inputOr(gha, "command", "check"); c {
			case "check":
				err = actionCheck(cmd, gha)
			case "deploy":
				err = actionDeploy(cmd, gha)
			default:
				err = &exitError{code: exitConfig, err: fmt.Errorf("input command: %q is not a command this version runs; use check or deploy", c)}
			}
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
			if msg := err.Error(); msg != fmt.Sprintf("exit status %d", code) {
				gha.Errorf("%s", msg)
			}
			return &exitError{code: code}
		},
	}
}

// actionCheckOptions reads the inputs that load and check a project.
// Paths are resolved in working-directory but reported relative to the
// workspace, so annotations and code scanning find the files.
//
// The project sees only the variables the workflow names in pass-env, and
// its files must stay inside the workspace: a pull request controls it.
func actionCheckOptions(gha *githubactions.Action) (checkOptions, error) {
	dir := inputOr(gha, "working-directory", ".")
	env, err := project.ActionEnviron(list(gha.GetInput("pass-env")))
	if err != nil {
		return checkOptions{}, &exitError{code: exitConfig, err: fmt.Errorf("input pass-env: %w", err)}
	}
	o := checkOptions{
		files:         inDir(dir, list(gha.GetInput("compose-files"))),
		envFiles:      inDir(dir, list(gha.GetInput("env-files"))),
		profiles:      list(gha.GetInput("profiles")),
		strict:        gha.GetInput("strict") == "true",
		cloudflareSSL: gha.GetInput("cloudflare-ssl"),
		hostMemory:    gha.GetInput("host-memory"),
		environment:   gha.GetInput("environment"),
		env:           env,
		root:          workspace(),
	}
	if dir != "." {
		o.workingDir = dir
	}
	maskEnvFiles(gha, o)
	return o, nil
}

// maskEnvFiles hides every value of the env files the project will read,
// whatever its name, before anything is loaded or printed: a load error
// may quote one.
func maskEnvFiles(gha *githubactions.Action, o checkOptions) {
	files := o.envFiles
	if len(files) == 0 {
		dir := o.workingDir
		if dir == "" && len(o.files) > 0 {
			dir = filepath.Dir(o.files[0])
		}
		files = []string{filepath.Join(dir, ".env")}
	}
	for _, f := range files {
		data, err := project.ReadPlainFile(f, project.MaxFileSize)
		if err != nil {
			continue // the loader says what is wrong with it
		}
		vars, _ := dotenv.UnmarshalBytesWithLookup(data, func(string) (string, bool) { return "", false })
		for _, v := range vars {
			mask(gha, v)
		}
		// As written, too: a file that does not parse is quoted by the
		// loader's error, which is where a value would leak.
		for line := range strings.Lines(string(data)) {
			line = strings.TrimPrefix(strings.TrimSpace(line), "export ")
			if _, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				mask(gha, strings.Trim(strings.TrimSpace(v), `"'`))
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

func actionCheck(cmd *cobra.Command, gha *githubactions.Action) error {
	o, err := actionCheckOptions(gha)
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
	if path := gha.GetInput("sarif-file"); path != "" {
		if err := writeFile(path, func(f *os.File) error { return report.SARIF(f, findings, ro) }); err != nil {
			return fmt.Errorf("input sarif-file: %w", err)
		}
		gha.SetOutput("sarif-file", path)
	}
	counts := map[checks.Severity]int{}
	for _, f := range findings {
		if f.Suppressed == nil {
			counts[f.Severity]++
		}
	}
	gha.SetOutput("errors", fmt.Sprint(counts[checks.Error]))
	gha.SetOutput("warnings", fmt.Sprint(counts[checks.Warning]))
	gha.AddStepSummary(summary(findings))
	if checks.Failed(findings, o.strict) {
		return &exitError{code: exitFindings}
	}
	return nil
}

// summary is the job summary: a table of what needs fixing.
func summary(fs []checks.Finding) string {
	var b strings.Builder
	b.WriteString("### deployer check\n\n")
	shown := 0
	for _, f := range fs {
		if f.Suppressed != nil {
			continue
		}
		if shown == 0 {
			b.WriteString("| | rule | where | what | fix |\n|---|---|---|---|---|\n")
		}
		shown++
		fmt.Fprintf(&b, "| %s | [%s](%s) | `%s` | %s | %s |\n", f.Severity, f.Rule, ruleURL(f.Rule), f.Pos, cell(f.Message), cell(f.Fix))
	}
	if shown == 0 {
		b.WriteString("No problems found.\n")
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

func inputOr(gha *githubactions.Action, name, def string) string {
	if v := gha.GetInput(name); v != "" {
		return v
	}
	return def
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
