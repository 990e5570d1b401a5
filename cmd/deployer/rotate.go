package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/semalink/deploy-action/deployer"
	"github.com/spf13/cobra"
)

func newRotateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Change a secret that the running stack keeps in its data, then deploy",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newRotateRabbitMQPasswordCommand())
	return cmd
}

type rotateOptions struct {
	deployOptions
	wipeData bool
	yes      bool
}

func newRotateRabbitMQPasswordCommand() *cobra.Command {
	var o rotateOptions
	cmd := &cobra.Command{
		Use:   "rabbitmq-password -f FILE... (--host [USER@]HOST --known-hosts FILE | --local)",
		Short: "Change RabbitMQ's password inside the running broker to the new RABBITMQ_DEFAULT_PASS, then deploy",
		Long: `RABBITMQ_DEFAULT_PASS only takes effect when RabbitMQ initialises an empty
data directory: deploying a new value leaves the old password in the broker's
volume, and the clients using the new one get ACCESS_REFUSED. deploy refuses
that (rule rabbitmq-password-drift); this command does the rotation.

On each host, under the deploy lock, it runs rabbitmqctl change_password in the
running broker (the password goes on its standard input, never on a command
line), records the new password's hash in the live release, then deploys as
deploy does, so the clients restart with the new password and must turn
healthy. Queues and messages are kept.

With --wipe-data it instead stops and removes the broker and deletes its data
volume, after asking (or with --yes): the broker starts empty with the new
password, and every queued message is lost.`,
		Example: `  # after putting the new password in .env (RABBITMQ_PASS=…)
  deployer rotate rabbitmq-password -f compose.yaml --host deploy@203.0.113.7 --known-hosts known_hosts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRotate(cmd, o) },
	}
	o.deployOptions.addFlags(cmd)
	f := cmd.Flags()
	f.BoolVar(&o.wipeData, "wipe-data", false, "delete the broker's data volume instead (every queued message is lost), after a confirmation")
	f.BoolVarP(&o.yes, "yes", "y", false, "with --wipe-data: do not ask for a confirmation")
	return cmd
}

func runRotate(cmd *cobra.Command, o rotateOptions) error {
	opts := deployer.RotateOptions{WipeData: o.wipeData}
	if o.wipeData {
		switch {
		case o.yes:
			opts.Confirm = func() bool { return true }
		case stdinIsTerminal(cmd):
			opts.Confirm = func() bool { return confirm(cmd.InOrStdin(), cmd.OutOrStdout()) }
		default:
			return &exitError{code: exitConfig, err: errors.New("--wipe-data deletes the broker's data and needs a confirmation: standard input is not a terminal to ask on, so pass --yes")}
		}
	}
	plan, err := o.plan(cmd)
	if err != nil {
		return err
	}
	return deployFailed(deployer.RotateRabbitMQPassword(cmd.Context(), plan, opts, &deployer.TextReporter{W: cmd.OutOrStdout()}), plan)
}

// confirm asks on the terminal; only yes (or y) agrees.
func confirm(in io.Reader, out io.Writer) bool {
	fmt.Fprint(out, "Delete the broker's data as described above? Type yes to go on: ")
	line, _ := bufio.NewReader(in).ReadString('\n')
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "yes" || answer == "y"
}

func stdinIsTerminal(cmd *cobra.Command) bool {
	f, ok := cmd.InOrStdin().(*os.File)
	return ok && isTerminal(f)
}
