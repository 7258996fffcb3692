# syntax=docker/dockerfile:1
#
# onceward's container image: the `onceward` binary alone, on a distroless base (glibc
# and libgcc, no shell, no package manager), running as a non-root user.
#
#   docker build -t onceward:0.1.0 .
#   docker run --rm -p 50051:50051 onceward:0.1.0 serve --redis-url redis://redis:6379
#
# With no --database-url the ledger is SQLite under /var/lib/onceward (mount a volume
# there, or give a postgres:// URL for a fleet).

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
COPY . .
# Nothing but the server binary; the proto files are compiled in-process (protox), so
# no protoc is needed.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package onceward --bin onceward \
    && install -D -m 0755 target/release/onceward /out/onceward \
    && install -d -o 65532 -g 65532 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/onceward /usr/local/bin/onceward
COPY --from=builder --chown=65532:65532 /out/data /var/lib/onceward
# Inside a container the listeners must be reachable from the pod's network (the
# kubelet's gRPC probes connect to the pod IP), so bind every interface.
ENV ONCEWARD_LISTEN=0.0.0.0:50051 \
    ONCEWARD_METRICS_LISTEN=0.0.0.0:9464 \
    ONCEWARD_DATA_DIR=/var/lib/onceward \
    ONCEWARD_LOG_FORMAT=json
USER 65532:65532
EXPOSE 50051 9464
# `onceward health` asks 127.0.0.1:50051 (or ONCEWARD_ADDR): set ONCEWARD_ADDR too when
# serving on another port, or https://… with TLS.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/onceward", "health", "--timeout", "2s"]
ENTRYPOINT ["/usr/local/bin/onceward"]
CMD ["serve"]
