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
			c, err := server.LoadConfig(cmd.Context(), config)
			if err != nil {
				return &exitError{code: exitConfig, err: err}
			}
			if !check {
				return &exitError{code: exitConfig, err: errors.New("deployer serve does not serve requests yet: only --check-config is built (docs/server.md)")}
			}
			var hooks []string
			for name, on := range map[string]bool{"github": c.Hooks.GitHub != nil, "slack": c.Hooks.Slack != nil, "standard": c.Hooks.Standard != nil} {
				if on {
					hooks = append(hooks, name)
				}
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: configuration OK: listen %s, %d project(s), hooks %s\n",
				config, c.Listen, len(c.Projects), strings.Join(sortedStrings(hooks), ", "))
			return err
		},
	}
	cmd.Flags().StringVar(&config, "config", server.DefaultConfig, "the server's configuration file")
	cmd.Flags().BoolVar(&check, "check-config", false, "check the configuration and exit")
	return cmd
}

func sortedStrings(s []string) []string {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return sortedKeys(m)
}
