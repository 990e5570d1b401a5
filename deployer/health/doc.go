// Package health waits for a compose project's services to become ready
// after `docker compose up`, from the Docker Engine's container events:
// a service with a healthcheck is ready when the Engine says it is healthy,
// one without must stay running for a while without restarting. A
// container that dies, restarts or turns unhealthy fails its service at
// once, with its last log lines.
//
// Start the Watch before `compose up`, so that no event is missed, and call
// Wait once up has returned, or while it runs (Options.UpDone): then a
// service is ready as soon as the containers up created for it are, even
// while up still holds a dependent back for it, and the containers that
// were there before are judged by their state once up has returned. Wait
// reacts to each event as it arrives (a slow poll only covers for a lost
// one), so a deploy sees a service ready within milliseconds of the
// Engine's health event.
//
// It does not start, stop or roll back anything (package compose runs
// compose; the deployer decides what a failure means), and it knows
// nothing of compose files: the caller says which services to wait for.
package health
