# syntax=docker/dockerfile:1
# The runnerpool-operator image: one static release binary on an empty base,
# run as uid/gid 65532 (the chart's), with no shell or other program in it.
# The release workflow builds it for linux/amd64 and linux/arm64 with buildx:
#   docker buildx build --platform linux/amd64,linux/arm64 -t IMAGE:TAG .
# `make image` (scripts/image.sh) builds the same image without a container
# daemon; it reads the final stage's LABEL, USER, ENTRYPOINT and CMD from here,
# so keep each of them in the simple forms below.

ARG RUST_VERSION=1.95.0

# Cross-compiles on the build machine's platform: no emulation for arm64.
FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
ARG BUILDARCH
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc
# jemalloc fixes the page size it supports when it is built: on arm64 the
# largest (64 KiB), so the image also runs on kernels with 64 KiB pages.
ENV AARCH64_UNKNOWN_LINUX_GNU_JEMALLOC_SYS_WITH_LG_PAGE=16
RUN set -eu; \
    case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu; gcc=gcc-x86-64-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gcc=gcc-aarch64-linux-gnu ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    apt-get update; \
    apt-get install -y --no-install-recommends "$gcc" "libc6-dev-$TARGETARCH-cross"; \
    rm -rf /var/lib/apt/lists/*; \
    rustup target add "$triple"; \
    echo "$triple" > /rust-target
WORKDIR /src
COPY . .
# glibc linked statically (crt-static), as scripts/image.sh does: the binary
# needs no library from the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=runnerpool-target-${TARGETARCH} \
    set -eu; \
    triple=$(cat /rust-target); \
    RUSTFLAGS='-C target-feature=+crt-static' \
      cargo build --release --locked --target "$triple" --bin runnerpool-operator; \
    cp "target/$triple/release/runnerpool-operator" /runnerpool-operator

FROM scratch
# Cargo.toml's version; the release workflow passes the tag's.
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="runnerpool-operator"
LABEL org.opencontainers.image.description="Kubernetes operator for ephemeral, just-in-time GitHub Actions runners"
LABEL org.opencontainers.image.source="https://github.com/runnerpool/runnerpool-operator"
LABEL org.opencontainers.image.version="${VERSION}"
LABEL org.opencontainers.image.licenses="Apache-2.0"
# The system roots kube's TLS client loads (it refuses to start without any).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /runnerpool-operator /usr/local/bin/runnerpool-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/runnerpool-operator"]
CMD ["run"]
