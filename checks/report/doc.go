// Package report prints the findings of the preflight checks for people and
// for machines: text for a terminal, JSON for scripts, SARIF for GitHub code
// scanning, and workflow commands that GitHub Actions turns into
// annotations on the pull request.
//
// It formats findings and nothing else: it does not run the checks, decide
// the exit code or pick the format from the environment (the command does),
// and it writes only to the io.Writer it is given.
package report
