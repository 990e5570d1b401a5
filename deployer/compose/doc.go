// Package compose runs the host's Docker Compose command line: detect which
// one is installed (the v2 plugin, or v1 docker-compose as a fallback), and
// start, stop, validate and run one-off services of a project, each as an
// argument list handed to a Runner: a remote.Host, over SSH or on this
// machine.
//
// It is not a compose file loader (see compose-go in the project package),
// does not talk to the Engine API, and does not wait for services to become
// healthy: package health does that, from Engine events.
package compose
