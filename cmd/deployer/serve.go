package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/semalink/deploy-action/server"
	"github.com/spf13/cobra"
)

func newServeCommand() *cobra.Command {
	var (
		config string
		check  bool
	)
	cmd := &cobra.Command{
		Use:   "serve [--config FILE] [--check-config]",
		Short: "The webhook server on the droplet (in progress: --check-config validates its configuration)",
		Long: `serve will run the webhook server that turns signed requests from GitHub,
Slack and Standard Webhooks senders into deploys (docs/server.md). It is
being built: today --check-config reads the configuration, its secrets and
its projects' Compose files, and says what is wrong, with the line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !check {
				return &exitError{code: exitConfig, err: errors.New("deployer serve does not serve requests yet: only --check-config is built (docs/server.md)")}
			}
			c, err := server.LoadConfig(cmd.Context(), config)
			if err != nil {
				return &exitError{code: exitConfig, err: err}
			}
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
		},
	}
	cmd.Flags().StringVar(&config, "config", server.DefaultConfig, "the server's configuration file")
	cmd.Flags().BoolVar(&check, "check-config", false, "check the configuration and exit")
	return cmd
}
