package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/checks/report"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type checkOptions struct {
	files         []string
	envFiles      []string
	profiles      []string
	workingDir    string
	format        string
	strict        bool
	cloudflareSSL string
	hostMemory    string
	environment   string
	listRules     bool
	// env is what the project is interpolated with (nil: the shell's,
	// less the deployer's own variables); root is the directory its files
	// must stay inside (default: its working directory).
	env  []string
	root string
}

// loadOptions are the options that load the project.
func (o checkOptions) loadOptions() project.Options {
	return project.Options{Files: o.files, EnvFiles: o.envFiles, Profiles: o.profiles, WorkingDir: o.workingDir, Env: o.env, Root: o.root}
}

func newCheckCommand() *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check [-f FILE]...",
		Short: "Run the preflight checks on a Compose project",
		Long: `check loads the Compose project exactly as docker compose would and runs the
preflight checks on it, its Dockerfiles and its Caddyfile. It changes nothing.

Exit codes: 0 nothing at error level (nor warning level with --strict),
1 findings at the failing level, 2 the configuration could not be loaded.
Every rule and its fix: docs/checks.md.`,
		Example: `  deployer check -f docker-compose.staging.yml --env-file .env.staging
  deployer check --environment production --cloudflare-ssl strict --host-memory 4g
  deployer check --format sarif > deployer.sarif`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.listRules {
				return listRules(cmd.OutOrStdout())
			}
			return runCheck(cmd, o)
		},
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.format, "format", defaultFormat(), "output format: "+strings.Join(report.Formats, ", "))
	cmd.Flags().BoolVar(&o.listRules, "list-rules", false, "list the rules and exit")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(report.Formats, cobra.ShellCompDirectiveNoFileComp))
	registerCheckCompletions(cmd)
	return cmd
}

// addFlags declares the flags that load and check a project; deploy takes
// them too.
func (o *checkOptions) addFlags(f *pflag.FlagSet) {
	f.StringArrayVarP(&o.files, "file", "f", nil, "Compose file (repeat to merge, as docker compose -f)")
	f.StringArrayVar(&o.envFiles, "env-file", nil, "environment file for interpolation (default: .env next to the project)")
	f.StringArrayVar(&o.profiles, "profile", nil, "enable a Compose profile")
	f.StringVar(&o.workingDir, "project-directory", "", "directory relative paths are resolved from (default: the first file's)")
	f.BoolVar(&o.strict, "strict", false, "fail on warnings too")
	f.StringVar(&o.cloudflareSSL, "cloudflare-ssl", "", "Cloudflare SSL mode in front of the host: "+strings.Join(project.CloudflareSSLModes, ", "))
	f.StringVar(&o.hostMemory, "host-memory", "", "memory of the target host, e.g. 4g, to check limits against")
	f.StringVar(&o.environment, "environment", "", "target environment: "+strings.Join(project.Environments, ", "))
}

func registerCheckCompletions(cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("cloudflare-ssl", cobra.FixedCompletions(project.CloudflareSSLModes, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("environment", cobra.FixedCompletions(project.Environments, cobra.ShellCompDirectiveNoFileComp))
}

// defaultFormat is github inside GitHub Actions, so findings become
// annotations on the pull request, and text elsewhere.
func defaultFormat() string {
	if os.Getenv("GITHUB_ACTIONS") == "true" {
		return "github"
	}
	return "text"
}

func runCheck(cmd *cobra.Command, o checkOptions) error {
	if !slices.Contains(report.Formats, o.format) {
		return &exitError{code: exitConfig, err: fmt.Errorf("--format %q: use one of %s", o.format, strings.Join(report.Formats, ", "))}
	}
	_, findings, err := o.run(cmd.Context())
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	ro := report.Options{Color: isTerminal(out) && os.Getenv("NO_COLOR") == "", Strict: o.strict, Version: currentVersion(), Root: workspace()}
	if err := report.Write(out, o.format, findings, ro); err != nil {
		return err
	}
	if checks.Failed(findings, o.strict) {
		return &exitError{code: exitFindings}
	}
	return nil
}

// run loads the project and checks it; both front doors (the command line
// and the Action) print the findings their own way.
func (o checkOptions) run(ctx context.Context) (*project.Project, []checks.Finding, error) {
	opts, err := o.checkOptions()
	if err != nil {
		return nil, nil, &exitError{code: exitConfig, err: err}
	}
	p, err := project.Load(ctx, o.loadOptions())
	if err != nil {
		return nil, nil, &exitError{code: exitConfig, err: fmt.Errorf("load the Compose project: %w", err)}
	}
	return p, checks.Run(p, opts), nil
}

func (o checkOptions) checkOptions() (checks.Options, error) {
	var opts checks.Options
	if err := project.ValidateCloudflareSSL(o.cloudflareSSL); err != nil {
		return opts, fmt.Errorf("--cloudflare-ssl: %w", err)
	}
	if err := project.ValidateEnvironment(o.environment); err != nil {
		return opts, fmt.Errorf("--environment: %w", err)
	}
	opts.CloudflareSSL, opts.Environment = o.cloudflareSSL, o.environment
	if o.hostMemory != "" {
		n, err := project.ParseBytes(o.hostMemory)
		if err != nil || n <= 0 {
			return opts, errors.Join(fmt.Errorf("--host-memory %q: write the host's memory like 4g or 8192m", o.hostMemory), err)
		}
		opts.HostMemory = n
	}
	return opts, nil
}

func listRules(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tSEVERITY\tLOOKS FOR")
	for _, r := range checks.Rules() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.ID, r.Severity, r.Title)
	}
	return tw.Flush()
}

// workspace is the directory finding paths are relative to: the current
// one (in GitHub Actions, the checked-out repository).
func workspace() string {
	if wd, err := os.Getwd(); err == nil {
		return wd
	}
	return os.Getenv("GITHUB_WORKSPACE")
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
