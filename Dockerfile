# syntax=docker/dockerfile:1
# oauth-sidecar container image: release build, small Debian runtime with
# CA certificates (https issuers and providers), non-root user, SQLite state
# in the /data volume. The build context is the repository less what
# .dockerignore leaves out; CI compiles exactly that context
# (scripts/docker-context.py).
#
#   docker build -t oauth-sidecar .
#   docker run -p 8080:8080 -v sidecar-data:/data -e UPSTREAM=http://app:8000 oauth-sidecar

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin oauth-sidecar \
    && cp target/release/oauth-sidecar /usr/local/bin/oauth-sidecar

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 sidecar \
    && useradd --system --uid 10001 --gid sidecar --home-dir /data --shell /usr/sbin/nologin sidecar \
    && mkdir -p /data /etc/oauth-sidecar \
    && chown sidecar:sidecar /data
COPY --from=build /usr/local/bin/oauth-sidecar /usr/local/bin/oauth-sidecar
COPY config/container.yaml /etc/oauth-sidecar/sidecar.yaml
ENV OAUTH_SIDECAR_CONFIG=/etc/oauth-sidecar/sidecar.yaml
USER sidecar:sidecar
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/oauth-sidecar", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/oauth-sidecar"]
CMD ["serve"]
