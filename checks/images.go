package checks

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/semalink/deploy-action/checks/project"
)

var (
	// nodeInstall matches a dependency install by npm, yarn or pnpm.
	nodeInstall = regexp.MustCompile(`\b(npm\s+(ci|install|i)\b|yarn(\s+install)?\s*($|&&|;|\|)|yarn\s+install\b|pnpm\s+(install|i)\b)`)
	// prodOnly matches the flags that leave dev dependencies out.
	prodOnly  = regexp.MustCompile(`--omit[= ]dev|--only[= ]prod(uction)?|--production|--prod\b|\s-P\b|NODE_ENV=production|workspaces\s+focus\s+.*--production`)
	nodeBuild = regexp.MustCompile(`\b(npm|pnpm|yarn|bun)\s+(run\s+)?build\b|\btsc\b|\bnext\s+build\b|\bnest\s+build\b`)
)

var dockerfileDevDeps = &Rule{
	ID: "dockerfile-dev-deps", Severity: Warning,
	Title: "the runtime image installs Node dev dependencies",
	Help:  "Dev dependencies (compilers, test tools, migration CLIs) in the runtime image make it several times larger: slower to build, ship and start, and with more code to attack. Install production dependencies only in the final stage, and build in an earlier stage.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.longRunning() { // a one-off job may need its tools
			st, d := in.stage(name, in.Compose.Services[name])
			if st == nil {
				continue
			}
			if f, ok := devInstall(name, d, st); ok {
				out = append(out, f)
				continue
			}
			if len(d.Stages) == 1 && strings.HasPrefix(imageBase(st.Base), "node") {
				for _, step := range st.Steps {
					if step.Kind == "run" && nodeBuild.MatchString(strings.Join(step.Args, " ")) {
						out = append(out, Finding{Rule: "dockerfile-dev-deps", Service: name, Pos: project.Position{File: d.Path, Line: step.Line},
							Message: fmt.Sprintf("%s is built in a single stage: its build tools and sources ship in the runtime image", name),
							Fix:     "build in a `FROM node:… AS build` stage, then start the runtime stage afresh: COPY --from=build the output and run `npm ci --omit=dev`"})
						break
					}
				}
			}
		}
		return out
	},
}

// devInstall finds an install without production flags in the stages the
// image is made of, unless NODE_ENV=production is set before it.
func devInstall(service string, d *project.Dockerfile, st *project.Stage) (Finding, bool) {
	chain := d.Chain(st)
	prod := false // ENV carries over into the stages built FROM this one
	for i := len(chain) - 1; i >= 0; i-- {
		for _, step := range chain[i].Steps {
			text := strings.Join(step.Args, " ")
			switch {
			case step.Kind == "env" && strings.Contains(text, "NODE_ENV=production"):
				prod = true
			case step.Kind == "run" && !prod && nodeInstall.MatchString(text) && !prodOnly.MatchString(text) && !prunedLater(chain[i], step.Line):
				return Finding{Rule: "dockerfile-dev-deps", Service: service, Pos: project.Position{File: d.Path, Line: step.Line},
					Message: fmt.Sprintf("the runtime stage of %s installs dev dependencies (%s)", service, strings.TrimSpace(nodeInstall.FindString(text))),
					Fix:     "use `npm ci --omit=dev` (yarn: --production, pnpm: --prod) in the runtime stage; run tools that need dev dependencies, such as migrations, from a separate build target"}, true
			}
		}
	}
	return Finding{}, false
}

// prunedLater: `npm prune --omit=dev` after the install removes them again.
func prunedLater(st *project.Stage, after int) bool {
	for _, step := range st.Steps {
		text := strings.Join(step.Args, " ")
		if step.Line > after && step.Kind == "run" && strings.Contains(text, "prune") && prodOnly.MatchString(text) {
			return true
		}
	}
	return false
}

var imageLatest = &Rule{
	ID: "image-latest", Severity: Warning,
	Title: "an image is not pinned to a version",
	Help:  "An image without a tag, or tagged latest, changes under you: a redeploy or a rollback may pull a different version than the one that was tested, and a rollback cannot bring the old one back.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.serviceNames() {
			s := in.Compose.Services[name]
			if s.Build != nil || s.Image == "" || strings.Contains(s.Image, "@") {
				continue
			}
			ref := s.Image[strings.LastIndex(s.Image, "/")+1:]
			_, tag, tagged := strings.Cut(ref, ":")
			if tagged && tag != "latest" {
				continue
			}
			out = append(out, Finding{Rule: "image-latest", Service: name, Pos: in.ServicePos(name, "image"),
				Message: fmt.Sprintf("%s uses %s, which is not pinned: each pull may bring another version", name, s.Image),
				Fix:     fmt.Sprintf("pin the version you tested: %s:X.Y.Z, or a digest %s@sha256:…", strings.TrimSuffix(s.Image, ":latest"), strings.TrimSuffix(s.Image, ":latest"))})
		}
		return out
	},
}

var buildNoCache = &Rule{
	ID: "build-no-cache", Severity: Warning,
	Title: "a build turns the cache off",
	Help:  "build.no_cache rebuilds every layer on every deploy, reinstalling all dependencies even for a one-line change. Keep the cache on and let the Dockerfile's layer order decide what is rebuilt.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.serviceNames() {
			if b := in.Compose.Services[name].Build; b != nil && b.NoCache {
				out = append(out, Finding{Rule: "build-no-cache", Service: name, Pos: in.ServicePos(name, "build", "no_cache"),
					Message: fmt.Sprintf("%s is built with no_cache: every deploy rebuilds all its layers", name),
					Fix:     "remove no_cache: true; to refresh a base image use pull: true instead"})
			}
		}
		return out
	},
}
