// Command deployer deploys a Docker Compose stack to hosts over SSH, after
// preflight checks that catch what breaks such stacks in production.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/semalink/deploy-action/deployer"
	"github.com/sirupsen/logrus"
)

// Exit codes, documented in docs/cli.md; the deploy's are package
// deployer's, shared by every front door.
const (
	exitOK       = 0
	exitFindings = deployer.ExitFindings // check: findings at the failing level
	exitConfig   = deployer.ExitConfig   // the configuration could not be loaded, or the command line is wrong
	exitFailed   = deployer.ExitFailed   // deploy: it failed on the host (migration, health, lock); the previous release serves
)

func main() {
	ctx := cancelOnSignal(context.Background())
	// The Compose loader logs its warnings through logrus; deployer reports
	// the same problems as findings, with a place and a fix.
	logrus.SetOutput(io.Discard)

	err := newRootCommand().ExecuteContext(ctx)
	os.Exit(exitCode(os.Stderr, err))
}

// cancelOnSignal returns a context that the first SIGINT or SIGTERM
// cancels: a deploy stops and rolls back what it changed. The second ends
// the process as the signal would by default, for someone who will not
// wait for that rollback. Both are caught on one channel, so that no
// second signal can slip in between.
func cancelOnSignal(parent context.Context) context.Context {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		sig, _ := (<-sigs).(syscall.Signal)
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		syscall.Kill(os.Getpid(), sig)
		time.Sleep(time.Second) // the signal's default action ends the process first
		os.Exit(128 + int(sig))
	}()
	return ctx
}

// exitError carries an exit code; its message (if any) has been printed
// already or is printed by exitCode.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitCode prints err for a person and maps it to an exit code.
func exitCode(w io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(w, "deployer: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(w, "deployer: %v\n", err)
	return exitConfig
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
