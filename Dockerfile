# syntax=docker/dockerfile:1
#
# The ajil binary, static (CGO_ENABLED=0), on distroless: no shell, no
# package manager, CA certificates for FCM and the webhook endpoints, and a
# non-root user.
#
#   docker build --build-arg VERSION="$(git describe --tags --always)" \
#       -t ghcr.io/ajil-news/ajil:TAG .
#
# Targets: runtime (the default, what production runs) and debug (the same
# binary plus busybox, for compose's health check and for poking around).

# Keep in step with the go directive of go.mod.
ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
# The image's Go builds the module as it is; it never downloads another
# toolchain.
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
# The module cache mount keeps downloads across builds, and the build
# fetches only what ./cmd/ajil imports (not the test-only modules).
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/ajil ./cmd/ajil

FROM gcr.io/distroless/static-debian13:debug-nonroot AS debug
COPY --from=build /out/ajil /usr/local/bin/ajil
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ajil"]
CMD ["serve", "--roles", "api,dispatcher"]

FROM gcr.io/distroless/static-debian13:nonroot AS runtime
COPY --from=build /out/ajil /usr/local/bin/ajil
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ajil"]
CMD ["serve", "--roles", "api,dispatcher"]
