# The plugin image: `chunkcache plugin` reads drone-cache's PLUGIN_* settings.
#   docker build -t chunkcache .
# Multi-stage: a full Rust toolchain builds a static-enough release binary; the runtime is
# Debian slim with CA certificates (HTTPS to Azure/S3/GCS) and nothing else, running as a
# non-root user.
FROM rust:1.89-bookworm AS build
WORKDIR /src
# Cargo.toml names the bench, example and test targets, so their files must be present; build.rs
# records the commit for `--version` ("unknown" here: the build context has no .git).
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY fixtures ./fixtures
COPY tests ./tests
RUN cargo build --release --locked --bin chunkcache

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin chunkcache
COPY --from=build /src/target/release/chunkcache /usr/local/bin/chunkcache
USER 10001:10001
ENTRYPOINT ["chunkcache", "plugin"]
