# syntax=docker/dockerfile:1
# stepup-authz container image: a static binary on distroless, non-root.
#   make image                  # docker build, tagged $(IMAGE):$(VERSION)
#   make image-push             # multi-arch (linux/amd64, linux/arm64) with buildx
# k8s/check's image test builds the same layout without a daemon and checks
# it (user, entrypoint, CA bundle); keep the two in step.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# Static (no cgo: distroless/static has no libc), reproducible paths, the
# version stamped in for `stepup-authz version` and the startup log; the
# server only (-tags serveronly: no `dev` token-minting IdP, no `bench`).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -tags serveronly -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/stepup-authz ./cmd/stepup-authz

# distroless/static: CA certificates (an https JWKS needs them), tzdata,
# /etc/passwd with nonroot (65532); no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/stepup-authz /stepup-authz
USER 65532:65532
EXPOSE 9191 9192
ENTRYPOINT ["/stepup-authz"]
CMD ["serve", "--config", "/etc/stepup-authz/config.yaml"]
