package build

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	bkclient "github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestExplain(t *testing.T) {
	b := &Builder{name: "unix:///run/buildkit/buildkitd.sock"}
	df := &dockerfile{display: "api/Dockerfile", stages: []string{"build", "runtime"}, parsed: true}
	req := Request{Service: "api", Context: "/src/api", Target: "runtim"}
	now := time.Now()
	failedRun := &bkclient.SolveStatus{
		Vertexes: []*bkclient.Vertex{
			{Digest: "sha256:1", Name: "[build 1/2] COPY . /src", Started: &now, Completed: &now, Cached: true},
			{Digest: "sha256:2", Name: `[build 2/2] RUN go build ./...`, Started: &now, Completed: &now, Error: "exit code: 2"},
			{Digest: "sha256:3", Name: `[runtime 1/1] COPY --from=build /a /a`, Started: &now, Completed: &now, Error: "context canceled"},
		},
		Logs: []*bkclient.VertexLog{{Vertex: "sha256:2", Data: []byte("line 1\n./main.go:3:1: syntax error\n")}},
	}
	for _, tc := range []struct {
		name   string
		err    error
		status *bkclient.SolveStatus
		shown  bool
		want   string
	}{
		{
			name: "parse error, BuildKit 0.8",
			err:  errors.New("failed to solve: failed to solve with frontend dockerfile.v0: failed to create LLB definition: dockerfile parse error line 2: unknown instruction: FORM"),
			want: "api/Dockerfile line 2: unknown instruction: FORM (fix the Dockerfile)",
		},
		{
			name: "parse error, BuildKit 0.34",
			err:  errors.New("failed to solve: dockerfile parse error on line 2: unknown instruction: FORM (did you mean FROM?)"),
			want: "api/Dockerfile line 2: unknown instruction: FORM (did you mean FROM?) (fix the Dockerfile)",
		},
		{
			name: "target, BuildKit 0.8",
			err:  errors.New("failed to solve: failed to solve with frontend dockerfile.v0: failed to create LLB definition: failed to reach build target runtim in Dockerfile"),
			want: `target "runtim" not found in api/Dockerfile: the stages are build, runtime`,
		},
		{
			name: "target, BuildKit 0.34",
			err:  errors.New(`failed to solve: target stage "runtim" could not be found`),
			want: `target "runtim" not found in api/Dockerfile: the stages are build, runtime`,
		},
		{
			name: "secret, BuildKit 0.8",
			err:  errors.New("failed to solve: secret token not found: not found"),
			want: `api/Dockerfile needs build secret "token" (RUN --mount=type=secret,…,required) and none is given: add it to the service's build.secrets and define it under the top-level secrets: with file: or environment:`,
		},
		{
			name: "secret, BuildKit 0.34",
			err:  errors.New("failed to solve: secret token: not found"),
			want: `api/Dockerfile needs build secret "token" (RUN --mount=type=secret,…,required) and none is given: add it to the service's build.secrets and define it under the top-level secrets: with file: or environment:`,
		},
		{
			name:   "failing step, output not shown",
			err:    errors.New(`failed to solve: process "/bin/sh -c go build ./..." did not complete successfully: exit code: 2`),
			status: failedRun,
			want:   "step [build 2/2] RUN go build ./... failed (exit code: 2): fix the step in api/Dockerfile; it printed:\nline 1\n./main.go:3:1: syntax error",
		},
		{
			name:   "failing step, output shown",
			err:    errors.New(`failed to solve: executor failed running [/bin/sh -c go build ./...]: exit code: 2`),
			status: failedRun,
			shown:  true,
			want:   "step [build 2/2] RUN go build ./... failed (exit code: 2): fix the step in api/Dockerfile (its output is above)",
		},
		{
			name: "failing step, no status",
			err:  errors.New(`failed to solve: executor failed running [/bin/sh -c make]: exit code: 2`),
			want: "the command [/bin/sh -c make] failed (exit code: 2): fix the step in api/Dockerfile",
		},
		{
			name: "missing source, BuildKit 0.34",
			err:  errors.New(`failed to solve: failed to compute cache key: failed to calculate checksum of ref x::y: "/go.sum": not found`),
			want: `"/go.sum" is not in the build context /src/api: add it, or check the service's build.context and its .dockerignore`,
		},
		{
			name: "grpc status",
			err:  status.Error(codes.Unknown, "failed to solve: something new"),
			want: "something new",
		},
		{
			name: "builder gone",
			err:  status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial unix /run/buildkit/buildkitd.sock: connect: connection refused\""),
			want: "builder unix:///run/buildkit/buildkitd.sock stopped answering: dial unix /run/buildkit/buildkitd.sock: connect: connection refused (check that it still runs; then build again)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var steps stepCounter
			if tc.status != nil {
				steps.add(tc.status)
			}
			got := b.explain(t.Context(), tc.err, req, df, &steps, tc.shown)
			if got.Error() != tc.want {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
			if !errors.Is(got, tc.err) && status.Code(tc.err) != codes.Unavailable {
				t.Errorf("the explanation does not wrap BuildKit's error")
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		var steps stepCounter
		steps.add(&bkclient.SolveStatus{Vertexes: []*bkclient.Vertex{{Digest: "sha256:1", Name: "[2/3] RUN make", Started: &now}}})
		got := b.explain(ctx, errors.New("failed to solve: context canceled"), req, df, &steps, true)
		if want := "stopped during step [2/3] RUN make: context canceled"; got.Error() != want || !errors.Is(got, context.Canceled) {
			t.Fatalf("got %q, want %q wrapping context.Canceled", got, want)
		}
	})
}

func TestStepCounter(t *testing.T) {
	now := time.Now()
	v := func(d, name string, cached bool) *bkclient.Vertex {
		return &bkclient.Vertex{Digest: digest.Digest(d), Name: name, Started: &now, Completed: &now, Cached: cached}
	}
	var c stepCounter
	c.add(&bkclient.SolveStatus{Vertexes: []*bkclient.Vertex{
		v("1", "[internal] load build definition from Dockerfile", false),
		v("2", "[internal] load build context", false),
		v("3", "[1/2] FROM docker.io/library/alpine:3.20", true),
		v("4", "[build 2/3] COPY . /src", true),
		v("5", "[stage-1 2/2] RUN make", false),
		v("6", "exporting to image", false),
	}})
	if c.steps() != 3 || c.cached() != 2 {
		t.Errorf("%d steps, %d cached; want 3 steps, 2 cached", c.steps(), c.cached())
	}
	// Status comes in pieces: a vertex seen again keeps what it had.
	c.add(&bkclient.SolveStatus{Vertexes: []*bkclient.Vertex{{Digest: "5", Name: "[stage-1 2/2] RUN make"}}})
	if c.steps() != 3 {
		t.Errorf("%d steps after an update, want 3", c.steps())
	}
}

func TestDockerfileParse(t *testing.T) {
	for _, tc := range []struct {
		name, src       string
		stages, secrets []string
		parsed          bool
	}{
		{"named stages", "FROM scratch AS Build\nCOPY a /a\nFROM build AS runtime\n", []string{"build", "runtime"}, nil, true},
		{"unnamed", "FROM scratch\nCOPY a /a\n", nil, nil, true},
		{"required secrets", "FROM scratch\n" +
			"RUN --mount=type=secret,id=token,required [\"/api\"]\n" +
			"RUN --mount=type=secret,id=npmrc,required=true --mount=type=secret,id=opt [\"/api\"]\n" +
			"RUN --mount=type=secret,target=/run/secrets/key,required [\"/api\"]\n" +
			"RUN --mount=type=secret,id=$ID,required [\"/api\"]\n" +
			"RUN --mount=type=secret,id=token,required [\"/api\"]\n",
			nil, []string{"token", "npmrc", "key"}, true},
		{"syntax directive: left to the builder", "# syntax=docker/dockerfile:1\nFROM scratch AS x\n", nil, nil, false},
		{"does not parse: left to the builder", "FROM scratch\nFORM x\n", nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			df := &dockerfile{}
			df.parse([]byte(tc.src))
			if df.parsed != tc.parsed || !reflect.DeepEqual(df.stages, tc.stages) || !reflect.DeepEqual(df.secrets, tc.secrets) {
				t.Fatalf("parsed %v, stages %q, secrets %q; want %v, %q, %q", df.parsed, df.stages, df.secrets, tc.parsed, tc.stages, tc.secrets)
			}
		})
	}
}
