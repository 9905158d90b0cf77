# istio-canary in a container image: the binary and nothing else.
#
# istioctl is not in the image. The policy pins the istioctl binaries you vendor (by sha256), so
# you mount them together with the policy and the IstioOperator specs; the real istioctl is a
# static Go binary and needs nothing from the image. (The stand-in istioctl of fixtures/ is a
# Python script for the tests; it does not run here.)
#
#   docker build -t istio-canary .
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/repo" istio-canary compile --policy canary.yaml --out bundles

# The build: the release profile of Cargo.toml, with the versions of Cargo.lock.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin istio-canary \
    && cp target/release/istio-canary /istio-canary

# The image: Debian's slim base (the glibc the binary was linked against), the binary, no shell
# tools of ours, a non-root user.
FROM debian:bookworm-slim
COPY --from=build /istio-canary /usr/local/bin/istio-canary
USER 65532:65532
WORKDIR /repo
ENTRYPOINT ["/usr/local/bin/istio-canary"]
