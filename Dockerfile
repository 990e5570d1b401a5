# The webhook server's image: one static binary on a minimal base. (The
# Action installs the released binary instead: docs/architecture.md.)
# Build with: DOCKER_BUILDKIT=1 docker build --build-arg VERSION=v1.2.3 .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/deployer ./cmd/deployer

# Runs as root, so that it may use the Docker socket mounted into it.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/deployer /usr/local/bin/deployer
ENTRYPOINT ["/usr/local/bin/deployer"]
