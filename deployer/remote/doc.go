// Package remote is the one place that talks to a host: it runs commands,
// reads and writes files, takes the deploy lock and reaches the Docker Engine
// API, either on a droplet over one SSH connection (*Client) or on this
// machine (Local), behind the same Host interface.
//
// Commands are argument lists, never shell strings. Over SSH they are joined
// by Quote, the only place a command line is built, and run by the login
// shell of the remote user, which must be a POSIX shell (sh, bash, dash,
// zsh). Host keys are always verified, against a known_hosts file or a
// pinned fingerprint.
//
// A cancelled command is stopped with TERM, then KILL, sent to its process
// group. Over SSH that is done by running kill in a second session: sshd
// refuses SSH signal requests on root logins, the usual deploy user. A
// command left running when the connection drops keeps running on the host
// until it next touches its stdin or stdout.
//
// The deploy lock is flock(2) on a file, taken on a remote host with
// flock(1) from util-linux, so that a webhook server running on the host
// shares it. Over SSH it is held by a session: a dropped connection
// releases it as soon as sshd notices.
//
// It is not for: deciding what to run (the pipeline and deployer/compose
// do), moving images (deployer/ship does, through Docker), or interactive
// use (no pty, no shell, no forwarding other than to unix sockets).
package remote
