# syntax=docker/dockerfile:1
#
# Multi-stage build of the dashboard gateway.
#   docker build -t dashboard-gateway .
#   docker run --rm -p 8000:8000 dashboard-gateway                  # gateway (default)
#   docker run --rm -e REDIS_URL=redis://redis:6379 dashboard-gateway publisher simulate
#
# The runtime image holds both binaries (/usr/local/bin/gateway, /usr/local/bin/publisher),
# runs as an unprivileged user and listens on 8000.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and incremental build between image builds; the binaries
# are copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gateway -p publisher \
    && mkdir -p /out \
    && cp target/release/gateway target/release/publisher /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin gateway
COPY --from=builder /out/gateway /out/publisher /usr/local/bin/

ENV BIND_ADDR=0.0.0.0:8000 \
    RUST_LOG=info
EXPOSE 8000
USER 10001:10001
# SIGTERM drains: the node stops accepting, closes its clients with 1001 and leaves the
# cluster count. Give it DRAIN_TIMEOUT_SECS (+ margin) before a SIGKILL.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${BIND_ADDR##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
CMD ["gateway"]
