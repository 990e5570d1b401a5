package build

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// demoDockerfile is the demo api's image: the static binary in scratch.
const demoDockerfile = `FROM scratch
COPY api /usr/local/bin/api
COPY stamp /etc/stamp
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/api"]
CMD ["serve"]
`

func TestEngineBuildAndCacheHit(t *testing.T) {
	b, docker := engineBuilder(t)
	dir := buildContext(t, map[string]string{"Dockerfile": demoDockerfile})
	tag := testTag(t)
	req := Request{Service: "api", Context: dir, Tag: tag, Labels: map[string]string{"org.example.service": "api"}}

	var first bytes.Buffer
	res, err := b.Build(t.Context(), req, plain(&first))
	if err != nil {
		t.Fatalf("build: %v\n%s", err, first.String())
	}
	img, err := docker.ImageInspect(t.Context(), tag)
	if err != nil {
		t.Fatalf("the image is not in the Engine as %s: %v", tag, err)
	}
	if img.ID != res.ImageID {
		t.Errorf("ImageID %s, the Engine has %s as %s", res.ImageID, img.ID, tag)
	}
	if got := img.Config.Labels["org.example.service"]; got != "api" {
		t.Errorf("label org.example.service = %q, want api", got)
	}
	if res.Steps != 2 || res.Cached == res.Steps {
		t.Errorf("first build: %d steps, %d cached; want 2 steps, not all cached (the stamp is new)", res.Steps, res.Cached)
	}

	var second bytes.Buffer
	again, err := b.Build(t.Context(), req, plain(&second))
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, second.String())
	}
	if again.ImageID != res.ImageID {
		t.Errorf("rebuild with no change made %s, first build %s", again.ImageID, res.ImageID)
	}
	if again.Steps != 2 || again.Cached != again.Steps {
		t.Errorf("rebuild with no change: %d of %d steps cached, want all\n%s", again.Cached, again.Steps, second.String())
	}
	// What a person sees says so too.
	cached := regexp.MustCompile(`(?m)^#\d+ CACHED$`).FindAllString(second.String(), -1)
	if len(cached) != 2 {
		t.Errorf("plain progress of the rebuild shows %d CACHED steps, want 2:\n%s", len(cached), second.String())
	}
}

func TestEngineArgsAndTarget(t *testing.T) {
	b, docker := engineBuilder(t)
	dir := buildContext(t, map[string]string{"docker/api.Dockerfile": `FROM scratch AS build
COPY api /api
COPY stamp /stamp

FROM build AS runtime
ARG VERSION=unset
LABEL version=$VERSION
ENTRYPOINT ["/api"]

FROM build AS debug
LABEL flavour=debug
`})
	for _, tc := range []struct {
		target string
		want   map[string]string
	}{
		{"runtime", map[string]string{"version": "1.2.3", "flavour": ""}},
		{"debug", map[string]string{"version": "", "flavour": "debug"}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			tag := testTag(t)
			var out bytes.Buffer
			res, err := b.Build(t.Context(), Request{
				Service: "api", Context: dir, Dockerfile: "docker/api.Dockerfile", Target: tc.target,
				Args: map[string]string{"VERSION": "1.2.3"}, Tag: tag,
			}, plain(&out))
			if err != nil {
				t.Fatalf("build: %v\n%s", err, out.String())
			}
			img, err := docker.ImageInspect(t.Context(), tag)
			if err != nil {
				t.Fatal(err)
			}
			if img.ID != res.ImageID {
				t.Errorf("ImageID %s, Engine has %s", res.ImageID, img.ID)
			}
			for k, v := range tc.want {
				if got := img.Config.Labels[k]; got != v {
					t.Errorf("label %s = %q, want %q (labels %v)", k, got, v, img.Config.Labels)
				}
			}
		})
	}
}

func TestEngineSecrets(t *testing.T) {
	b, _ := engineBuilder(t)
	// api migrate runs in the build, with the secret mounted: required,
	// so BuildKit fails the step when the secret does not reach it.
	dir := buildContext(t, map[string]string{"Dockerfile": `FROM scratch
COPY api /api
COPY stamp /stamp
RUN --mount=type=secret,id=token,required ["/api", "migrate"]
`})
	// Where a secret's value comes from is the caller's business (package
	// deployer reads it from the project); here it is given.
	for _, tc := range []struct {
		name    string
		secrets map[string][]byte
		want    string // in the error; empty for success
	}{
		{"given", map[string][]byte{"token": []byte("s3cr3t")}, ""},
		{"not given", nil, `build api: ` + displayPath(filepath.Join(dir, "Dockerfile")) + ` needs build secret "token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := b.Build(t.Context(), Request{Service: "api", Context: dir, Secrets: tc.secrets, Tag: testTag(t)}, plain(&out))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("build: %v\n%s", err, out.String())
			case tc.want != "" && err == nil:
				t.Fatalf("build succeeded, want %q", tc.want)
			case tc.want != "" && !strings.HasPrefix(err.Error(), tc.want):
				t.Fatalf("error %q\nwant it to start %q", err, tc.want)
			case tc.want != "" && out.Len() > 0:
				t.Errorf("refused after building started:\n%s", out.String())
			}
			if strings.Contains(out.String(), "s3cr3t") {
				t.Errorf("the secret's value is in the progress output")
			}
		})
	}
}

func TestEngineErrors(t *testing.T) {
	b, _ := engineBuilder(t)
	for _, tc := range []struct {
		name       string
		dockerfile string
		target     string
		want       []string // in this order in the error
	}{
		{
			name:       "bad Dockerfile",
			dockerfile: "FROM scratch\nFORM scratch\n",
			want:       []string{"build api: ", "Dockerfile line 2: unknown instruction: FORM", "(fix the Dockerfile)"},
		},
		{
			name:       "unknown target",
			dockerfile: "FROM scratch AS build\nCOPY api /api\nFROM build AS runtime\nENTRYPOINT [\"/api\"]\n",
			target:     "runtim",
			want:       []string{`build api: target "runtim" not found in `, "Dockerfile: the stages are build, runtime"},
		},
		{
			name:       "failing step",
			dockerfile: "FROM scratch\nCOPY api /api\nRUN [\"/api\", \"nope\"]\n",
			want:       []string{`build api: step [2/2] RUN ["/api", "nope"] failed (exit code: 1): fix the step in `},
		},
		{
			name:       "missing file",
			dockerfile: "FROM scratch\nCOPY nothere /x\n",
			want:       []string{`build api: step [1/1] COPY nothere /x: "/nothere" is not in the build context `, "add it, or check the service's build.context"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := buildContext(t, map[string]string{"Dockerfile": tc.dockerfile})
			var out bytes.Buffer
			_, err := b.Build(t.Context(), Request{Service: "api", Context: dir, Target: tc.target, Tag: testTag(t)}, plain(&out))
			if err == nil {
				t.Fatalf("build succeeded\n%s", out.String())
			}
			rest := err.Error()
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q\nwant %q (in order)", err, tc.want)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestEngineRefusesCacheItCannotExport(t *testing.T) {
	b, _ := engineBuilder(t)
	dir := buildContext(t, map[string]string{"Dockerfile": demoDockerfile})
	cache := filepath.Join(t.TempDir(), "cache")
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"local cache-to", Options{CacheTo: []string{"type=local,dest=" + cache}},
			`build api: builder engine (the Docker Engine's built-in BuildKit, Engine `},
		{"gha cache-to", Options{CacheTo: []string{"type=gha,url=http://127.0.0.1:1/,token=t0k3n"}},
			`cannot export a "gha" cache (it can export: inline): use a standalone buildkitd (scripts/buildkitd start, then --builder unix:///…/buildkitd.sock), or --cache-to type=inline, or drop --cache-to type=gha`},
		{"gha cache-from", Options{CacheFrom: []string{"type=gha,url=http://127.0.0.1:1/,token=t0k3n"}},
			`cannot import a "gha" cache (it can import: local, registry): use a standalone buildkitd`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			tc.o.Progress, tc.o.Mode = &out, "plain"
			_, err := b.Build(t.Context(), Request{Service: "api", Context: dir, Tag: testTag(t)}, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "t0k3n") {
				t.Errorf("the token is in the error: %v", err)
			}
			if out.Len() > 0 {
				t.Errorf("refused after building started:\n%s", out.String())
			}
			if _, err := os.Stat(cache); !os.IsNotExist(err) {
				t.Errorf("the cache directory was made: %v", err)
			}
		})
	}
	t.Run("local cache-to message", func(t *testing.T) {
		_, err := b.Build(t.Context(), Request{Service: "api", Context: dir}, Options{CacheTo: []string{"type=local,dest=" + cache}})
		want := `cannot export a "local" cache (it can export: inline): use a standalone buildkitd (scripts/buildkitd start, then --builder unix:///…/buildkitd.sock), or --cache-to type=inline, or drop --cache-to type=local`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v\nwant %q", err, want)
		}
	})
	t.Run("inline cache-to builds", func(t *testing.T) {
		var out bytes.Buffer
		o := plain(&out)
		o.CacheTo = []string{"type=inline"}
		if _, err := b.Build(t.Context(), Request{Service: "api", Context: dir, Tag: testTag(t)}, o); err != nil {
			t.Fatalf("build: %v\n%s", err, out.String())
		}
	})
}

func TestEngineMissingLocalCacheFromIsSkipped(t *testing.T) {
	b, _ := engineBuilder(t)
	dir := buildContext(t, map[string]string{"Dockerfile": demoDockerfile})
	missing := filepath.Join(t.TempDir(), "no-cache-here")
	var out bytes.Buffer
	o := plain(&out)
	o.CacheFrom = []string{"type=local,src=" + missing}
	if _, err := b.Build(t.Context(), Request{Service: "api", Context: dir, Tag: testTag(t)}, o); err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	want := "note: no local cache in " + filepath.Join(missing, "api") + " yet: building without it\n"
	if !strings.HasPrefix(out.String(), want) {
		t.Errorf("progress starts %q, want %q", firstLine(out.String()), want)
	}
}

func TestUnreachableBuilder(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	t.Run("engine", func(t *testing.T) {
		docker, err := client.NewClientWithOpts(client.WithHost("unix:///nonexistent/docker.sock"), client.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatal(err)
		}
		defer docker.Close()
		_, err = Engine(ctx, docker)
		want := "builder engine: the Docker Engine does not answer: "
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), "(start it, or check DOCKER_HOST)") {
			t.Fatalf("error %v\nwant %q… (start it, or check DOCKER_HOST)", err, want)
		}
	})
	t.Run("buildkitd", func(t *testing.T) {
		_, err := Dial(ctx, "unix:///nonexistent/buildkitd.sock", WithLoad(func(context.Context, io.Reader) error { return nil }))
		want := "builder unix:///nonexistent/buildkitd.sock does not answer: dial unix /nonexistent/buildkitd.sock: connect: no such file or directory (start it, e.g. scripts/buildkitd start, or check the address given with --builder)"
		if err == nil || err.Error() != want {
			t.Fatalf("error %v\nwant  %s", err, want)
		}
	})
	t.Run("bad address", func(t *testing.T) {
		_, err := Dial(ctx, "buildkitd.sock")
		if err == nil || !strings.Contains(err.Error(), "want unix:///path/to/buildkitd.sock, tcp://HOST:PORT or docker-container://NAME") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("no load", func(t *testing.T) {
		_, err := Dial(ctx, "unix:///nonexistent/buildkitd.sock")
		if err == nil || !strings.Contains(err.Error(), "no Docker Engine to load images into") {
			t.Fatalf("error %v", err)
		}
	})
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func TestEngineBuildStopsWhenCancelled(t *testing.T) {
	b, _ := engineBuilder(t)
	dir := buildContext(t, map[string]string{"Dockerfile": `FROM scratch
COPY api /api
COPY stamp /stamp
ENV MIGRATE_SLEEP=60s
RUN ["/api", "migrate"]
`})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	start := time.Now()
	var out bytes.Buffer
	_, err := b.Build(ctx, Request{Service: "api", Context: dir, Tag: testTag(t)}, plain(&out))
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("the build returned %v after its deadline", took-3*time.Second)
	}
	want := `build api: stopped during step [3/3] RUN ["/api", "migrate"]: context deadline exceeded`
	if err == nil || err.Error() != want || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v\nwant %q wrapping context.DeadlineExceeded\n%s", err, want, out.String())
	}
}

func TestProgressModes(t *testing.T) {
	var buf bytes.Buffer
	for _, tc := range []struct{ mode, want string }{
		{"", ""}, {"auto", ""}, {"plain", ""}, {"quiet", ""},
		{"tty", "progress tty: the output is not a terminal: use plain or auto"},
		{"fancy", `progress "fancy": want auto, plain, tty or quiet`},
	} {
		_, err := newDisplay(Options{Progress: &buf, Mode: tc.mode})
		if (err == nil) != (tc.want == "") || (err != nil && err.Error() != tc.want) {
			t.Errorf("mode %q: error %v, want %q", tc.mode, err, tc.want)
		}
	}
}

// TestEngineContextLeavesOutGit: a Dockerfile cannot reach a checkout's
// .git (its config may hold the workflow's token), at the top of the
// context or below, though .dockerignore does not name it; the rest of
// the context is there.
func TestEngineContextLeavesOutGit(t *testing.T) {
	b, _ := engineBuilder(t)
	token := "[http]\n\textraheader = AUTHORIZATION: basic c2VudGluZWw=\n"
	for name, file := range map[string]string{"top": ".git/config", "nested": "tools/.git/config"} {
		t.Run(name, func(t *testing.T) {
			dir := buildContext(t, map[string]string{
				"Dockerfile":        "FROM scratch\nCOPY stamp /stamp\nCOPY " + file + " /config\n",
				".git/config":       token,
				"tools/.git/config": token,
			})
			var out bytes.Buffer
			_, err := b.Build(t.Context(), Request{Service: "api", Context: dir, Dockerfile: "Dockerfile", Tag: testTag(t)}, plain(&out))
			if err == nil || !strings.Contains(err.Error(), file) {
				t.Fatalf("build copying %s = %v, want it not found\n%s", file, err, out.String())
			}
			if strings.Contains(err.Error(), "stamp") {
				t.Errorf("the rest of the context is missing too: %v", err)
			}
		})
	}
}
