# Shadowcat gateway image. Build: docker build -t shadowcat .
# Run:   docker run -p 8080:8080 -p 9901:9901 shadowcat
# (the image's config listens on all interfaces, which a container needs; see
# config/container.yaml and put the gateway behind your own authentication until
# Shadowcat's lands).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
# A workspace member: cargo loads its manifest even when building only the gateway.
COPY loadtest ./loadtest
RUN cargo build --release --locked --bin shadowcat

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin shadowcat
COPY --from=build /src/target/release/shadowcat /usr/local/bin/shadowcat
COPY config/container.yaml /etc/shadowcat/config.yaml
USER 10001
EXPOSE 8080 9901
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/shadowcat"]
CMD ["gateway", "--config", "/etc/shadowcat/config.yaml"]
