package main

import (
	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "deployer",
		Short: "Check and deploy a Docker Compose stack to hosts over SSH",
		Long: `deployer deploys a Docker Compose stack to one or more hosts over SSH:
preflight checks first, then images, gated migrations, a health-checked
start and an automatic rollback. Start with:

  deployer check -f compose.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       currentVersion(),
	}
	root.SetVersionTemplate("deployer {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: exitConfig, err: err}
	})
	root.AddCommand(newCheckCommand(), newDeployCommand(), newRedeployCommand(), newReleasesCommand(), newRollbackCommand(), newRotateCommand(), newServeCommand(), newSignCommand(), newVersionCommand(), newActionCommand())
	return root
}
