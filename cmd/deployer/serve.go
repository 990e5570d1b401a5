package main

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/semalink/deploy-action/server"
	"github.com/spf13/cobra"
)

func newServeCommand() *cobra.Command {
	var (
		config string
		check  bool
		drain  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve [--config FILE] [--check-config]",
		Short: "The webhook server on the droplet: signed GitHub, Slack and Standard Webhooks requests become deploys",
		Long: `serve runs the webhook server that turns signed requests from GitHub,
Slack and Standard Webhooks senders into deploys on this machine's Docker
Engine, through the same pipeline and deploy lock as deployer deploy
--local (docs/server.md). One deploy per project runs at a time; of the
requests that wait, the newest runs and the others end as superseded.

On SIGTERM it stops accepting requests, lets a running deploy finish (up
to --drain, then stops it, which rolls it back) and keeps waiting requests
on disk for the next start.

--check-config reads the configuration, its secrets and its projects'
Compose files, says what is wrong, with the line, and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := server.LoadConfig(cmd.Context(), config)
			if err != nil {
				return &exitError{code: exitConfig, err: err}
			}
			if check {
				var hooks []string
				if c.Hooks.GitHub != nil {
					hooks = append(hooks, "github")
				}
				if c.Hooks.Slack != nil {
					hooks = append(hooks, "slack")
				}
				if c.Hooks.Standard != nil {
					hooks = append(hooks, "standard")
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: configuration OK: listen %s, %d project(s), hooks %s\n",
					config, c.Listen, len(c.Projects), strings.Join(hooks, ", "))
				return err
			}
			// The port first: a server that cannot listen starts no deploy.
			ln, err := net.Listen("tcp", c.Listen)
			if err != nil {
				return &exitError{code: exitConfig, err: fmt.Errorf("listen %s: %w", c.Listen, err)}
			}
			s, err := server.New(c, server.Options{Scrub: true})
			if err != nil {
				ln.Close()
				return &exitError{code: exitConfig, err: err}
			}
			return s.Serve(cmd.Context(), ln, drain)
		},
	}
	cmd.Flags().StringVar(&config, "config", server.DefaultConfig, "the server's configuration file")
	cmd.Flags().BoolVar(&check, "check-config", false, "check the configuration and exit")
	cmd.Flags().DurationVar(&drain, "drain", 10*time.Minute, "on SIGTERM, how long a running deploy may go on before it is stopped (and rolled back)")
	return cmd
}
