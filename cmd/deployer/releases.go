package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/deployer"
	"github.com/spf13/cobra"
)

// hostOptions name a project on its hosts, for the commands that work on
// what is deployed rather than on a new release.
type hostOptions struct {
	conn  connOptions
	name  string
	files []string
}

func (o *hostOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	o.conn.addFlags(f)
	f.StringVarP(&o.name, "project", "p", "", "project name on the host (default: the name: of the Compose file)")
	f.StringArrayVarP(&o.files, "file", "f", nil, "Compose file, for the project's name and x-deployer settings (default: compose.yaml here, when no --project)")
}

// plan reads the project name and hosts from the flags, or from the
// Compose file when they are not given.
func (o hostOptions) plan(ctx context.Context) (*deployer.Plan, error) {
	plan, err := deployer.NewHostPlan(ctx, deployer.Options{
		Load: project.Options{Files: o.files}, Name: o.name,
		Hosts: o.conn.hosts, SSHKey: o.conn.sshKey, KnownHosts: o.conn.knownHosts, Fingerprint: o.conn.fingerprint,
		Passphrase: o.conn.passphrase, ConnectTimeout: o.conn.connectTimeout, Local: o.conn.local, Root: o.conn.root,
	})
	if err != nil {
		return nil, &exitError{code: deployer.ExitCode(err), err: o.conn.named(err)}
	}
	return plan, nil
}

func newReleasesCommand() *cobra.Command {
	var o hostOptions
	cmd := &cobra.Command{
		Use:   "releases",
		Short: "List the releases on each host: id, time, trigger, images, outcome",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			plan, err := o.plan(cmd.Context())
			if err != nil {
				return err
			}
			hosts, err := deployer.Releases(cmd.Context(), plan, &deployer.TextReporter{W: io.Discard})
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			return printReleases(cmd.OutOrStdout(), hosts)
		},
	}
	o.addFlags(cmd)
	return cmd
}

func printReleases(w io.Writer, hosts []deployer.HostReleases) error {
	for _, h := range hosts {
		fmt.Fprintf(w, "%s\n", h.Host)
		if len(h.Releases) == 0 {
			fmt.Fprintln(w, "  no releases")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  \tRELEASE\tCREATED\tTRIGGER\tBY\tCOMMIT\tSTATUS\tIMAGES")
		for i := len(h.Releases) - 1; i >= 0; i-- {
			r := h.Releases[i]
			mark := ""
			if r.ID == h.Current {
				mark = "*"
			}
			commit := r.Commit
			if len(commit) > 7 {
				commit = commit[:7]
			}
			var images []string
			for _, s := range sortedKeys(r.Images) {
				images = append(images, s+"="+r.Images[s])
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\n", mark, r.ID, r.Created.Local().Format(time.DateTime), r.Trigger, cmp.Or(r.Actor, "-"), cmp.Or(commit, "-"), r.Status, images)
			if r.RunURL != "" || r.Deployment != 0 {
				run := r.RunURL
				if r.Deployment != 0 {
					run = strings.TrimSpace(fmt.Sprintf("%s (GitHub Deployment %d)", run, r.Deployment))
				}
				fmt.Fprintf(tw, "  \t\t\t\t\t\t\t  %s\n", run)
			}
			if r.Error != "" {
				fmt.Fprintf(tw, "  \t\t\t\t\t\t\t  %s\n", r.Error)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func newRollbackCommand() *cobra.Command {
	var (
		o  hostOptions
		to string
	)
	cmd := &cobra.Command{
		Use:   "rollback [--to RELEASE]",
		Short: "Bring back an earlier release (default: the one live before the current)",
		Long: `rollback starts an earlier release again from its own files on the host
(its Compose file, .env and images are kept there), waits for it to be
healthy, then makes it current. If it does not turn healthy, the current
release is brought back and nothing changes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			plan, err := o.plan(cmd.Context())
			if err != nil {
				return err
			}
			if _, err := deployer.Rollback(cmd.Context(), plan, to, &deployer.TextReporter{W: cmd.OutOrStdout()}); err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&to, "to", "", "release to go back to, as `deployer releases` lists it")
	return cmd
}
