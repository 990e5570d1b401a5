// Package checks holds the preflight rules: pure functions from a loaded
// Compose project (its files, Dockerfiles and Caddyfile) and what is known
// of the host to findings. Each rule has a stable ID, a default severity
// and a page in docs/checks.md; each finding says where, what and how to
// fix it.
//
// It reads nothing from disk or network itself (package project does the
// loading) and changes nothing; the report subpackage prints findings.
package checks
