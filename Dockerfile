# tally: a static musl binary on a distroless, non-root runtime.
#
#   docker build -t tally:latest .
#   docker run --rm -p 8000:8000 --read-only -v tally-data:/data tally:latest
#
# Builds with the classic builder as well as BuildKit (no cache mounts,
# heredocs or COPY --chmod), so docker-compose 1.29 can build it too.
#
# The two base images are build arguments, so a mirror (or an offline
# stand-in, as scripts/docker-test uses) can take their place:
#   docker build --build-arg RUST_IMAGE=... --build-arg RUNTIME_IMAGE=... .
ARG RUST_IMAGE=rust:1-alpine
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

# ---------------------------------------------------------------------------
# chef: the Rust toolchain plus cargo-chef, which turns Cargo.toml/Cargo.lock
# into a "recipe" so that dependencies build in their own cached layer.
# rust:1-alpine's native target is x86_64-unknown-linux-musl on amd64, and
# musl-dev supplies the C headers/CRT that rusqlite's bundled SQLite needs.
# A builder that is not Alpine (no apk) must bring the musl C toolchain
# (musl-tools) in its own image.
FROM ${RUST_IMAGE} AS chef
# Alpine package versions change with every point release of the base image;
# pinning them would break the build, and the toolchain tag is the real pin.
# hadolint ignore=DL3018
RUN if command -v apk >/dev/null; then apk add --no-cache musl-dev; fi \
    && cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# planner: only the recipe comes out of this stage, so editing src/ does not
# invalidate the dependency layer below.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# builder: dependencies first (cached while Cargo.lock is unchanged), then tally.
FROM chef AS builder
ARG TARGET=x86_64-unknown-linux-musl
# The image needs no symbols: stripped, the binary is about 8 MB instead
# of 46 MB with the release profile's line tables.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --target "$TARGET" --recipe-path recipe.json
COPY . .
# The commit `tally --version` names (the context has no .git): pass
# --build-arg REVISION="$(scripts/build-id)".
ARG REVISION=unknown
ENV TALLY_BUILD_ID=${REVISION}
# Refuse a dynamically linked result: the runtime image has no libc at all.
# /out/rootfs/data becomes the /data volume, owned by the runtime user.
RUN cargo build --release --locked --target "$TARGET" --bin tally \
    && install -D -m 0755 "target/$TARGET/release/tally" /out/tally \
    && readelf -d /out/tally > /tmp/dynamic-section \
    && if grep -q NEEDED /tmp/dynamic-section; then \
         echo "tally is dynamically linked; expected a static musl binary" >&2; exit 1; \
       fi \
    && mkdir -p /out/rootfs/data

# ---------------------------------------------------------------------------
# runtime: distroless "static" has no shell, no package manager and no libc;
# just CA certificates, /etc/passwd (uid 65532 = nonroot) and tzdata.
FROM ${RUNTIME_IMAGE}

ARG VERSION=0.3.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG RUNTIME_IMAGE
LABEL org.opencontainers.image.title="tally" \
      org.opencontainers.image.description="A self-hosted hit counter with exact, durable counts" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://example.invalid/tally" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"

COPY --from=builder /out/tally /tally
# Copies the directory entry data/ itself, so --chown applies to /data.
COPY --from=builder --chown=65532:65532 /out/rootfs/ /

# Numeric so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532

# Listen on all interfaces inside the container; JSON logs to stdout. The
# default store is SQLite on the /data volume, so the root filesystem can be
# read-only; Compose and Kubernetes point TALLY_DATABASE_URL_FILE at
# PostgreSQL instead (the _FILE variable takes precedence).
ENV TALLY_LISTEN=0.0.0.0:8000 \
    TALLY_LOG_FORMAT=json \
    TALLY_DATABASE_URL=sqlite:///data/tally.db

VOLUME ["/data"]
EXPOSE 8000

# No curl in the image: the binary checks its own /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/tally", "healthcheck"]

# tally drains in-flight requests on SIGTERM within TALLY_SHUTDOWN_GRACE (10s);
# give `docker stop` a longer timeout than that (Compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/tally"]
CMD ["serve"]
