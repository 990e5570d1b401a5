# deployer as an image: one static binary on a minimal base, for a
# container job or a host that runs deployer in a container (and for the
# webhook server, once it exists). The Action installs the released binary
# instead: docs/architecture.md.
# Build with: docker buildx build --build-arg VERSION=v1.2.3 .
# GO_IMAGE and BASE_IMAGE name the base images; the tests give stand-ins.
ARG GO_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/deployer ./cmd/deployer

# Runs as root, so that it may use a Docker socket mounted into it.
FROM ${BASE_IMAGE}
COPY --from=build /out/deployer /usr/local/bin/deployer
ENTRYPOINT ["/usr/local/bin/deployer"]
