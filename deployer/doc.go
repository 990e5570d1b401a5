// Package deployer is the deploy pipeline: Options in (NewPlan turns them
// into a Plan), the same steps for every front door (the command line, the
// GitHub Action, the webhook server), a Result per host out. Connect and
// learn the host's facts, check the project with them, build, take the
// lock, pin the images and upload the release, run migrations as a gate,
// start the new version, wait for it to be healthy, then commit it or roll
// back to the previous release.
//
// Every step has its own timeout and a failure before "up" leaves the
// running version untouched. The subpackages are the boundaries with the
// outside world: remote (SSH, files, lock, Engine API), compose (the host's
// docker compose), health (container health through Engine events), build
// (BuildKit) and ship (the image layers a host lacks).
//
// The steps reach a host only through Host and Engine, declared here, so
// that the pipeline's decisions are tested against fakes. It does not parse
// flags or Action inputs, and prints only through a Reporter.
package deployer
