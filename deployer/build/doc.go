// Package build builds service images with BuildKit: the Dockerfile
// frontend (dockerfile.v0) run by BuildKit's own client, with the build
// context and Dockerfile sent over the session, build secrets served from
// files or the environment, cache imported and exported in BuildKit's
// --cache-from/--cache-to syntax, and BuildKit's progress display.
//
// A Builder is one BuildKit: the Docker Engine's built-in one (Engine),
// whose result is an image in that Engine, or a standalone buildkitd
// (Dial), whose result is a docker image tarball handed to a LoadFunc.
// What each can do with the cache differs; Build refuses, before building,
// a cache type its builder cannot handle.
//
// A local cache export goes to a new directory that replaces the old one
// only when the build succeeded, so the cache holds what the last build
// used and never grows without bound.
//
// It is not for deciding what to build (that is the compose project's) nor
// for moving images to the host (that is package ship's).
package build
