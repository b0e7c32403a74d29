# syntax=docker/dockerfile:1
# The load-tester binary in a small image, for a distributed run placed by Kubernetes
# (deploy/kubernetes/, docs/distributed.md) or for `docker run`.
#
#   docker build -t alphapulse/load-tester:latest .
#   docker run --rm --shm-size=512m alphapulse/load-tester:latest -d 10
#
# Docker gives a container a /dev/shm of 64 MiB unless told otherwise; the rings live there
# (capacity x record size per ring, docs/distributed.md "Sizing /dev/shm"), hence --shm-size.

# The workspace's rust-version (Cargo.toml), so that the image builds with the oldest toolchain
# the project promises to support, on the same Debian release as the runtime stage (glibc).
FROM rust:1.88-bookworm AS build
WORKDIR /src
# Only what the build reads: the manifests, the lock file and the two members. load-tester's
# build.rs compiles proto/ with protox (pure Rust): no protoc. ring (rustls' crypto) needs the
# C compiler this image has. The members are copied whole, so that every target their manifests
# declare ([[bench]] among them) is there.
COPY Cargo.toml Cargo.lock ./
COPY bus bus
COPY load-tester load-tester
# The cache mounts keep the registry and the target directory between builds (BuildKit); the
# binary is copied out in the same step because the cached target/ is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p alphapulse-load-tester \
    && install -D -m 0755 target/release/load-tester /out/load-tester

FROM debian:bookworm-slim
# No ca-certificates: the binary makes no TLS connection to public hosts; a worker checks the
# coordinator's certificate against the CA file it is given (--tls-ca), not the system roots.
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --gid 10001 alphapulse \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin alphapulse
COPY --from=build /out/load-tester /usr/local/bin/load-tester
USER 10001:10001
# Without arguments the image runs the default standalone load test, as `cargo run --release`.
ENTRYPOINT ["/usr/local/bin/load-tester"]
