// Package project loads a Compose project exactly as docker compose does
// (several files merged, .env and env_file, interpolation, profiles,
// extends and include) and keeps what the merged model forgets: the file
// and line every key came from, inline suppression comments, the
// Dockerfiles of built services and the Caddyfiles mounted into proxies.
//
// It is the input of the preflight checks and of the deploy pipeline. It
// does not judge anything: problems it meets while loading that a user can
// fix without a crash (a missing env_file, an unset variable) are returned
// as Problems for the checks to report; only a project that cannot be read
// at all is an error.
package project
