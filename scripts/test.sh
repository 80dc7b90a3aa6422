#!/usr/bin/env bash
# Installs what is missing and runs every check and test: formatting, clippy, unit tests and
# the end-to-end tests (real runc, a real registry on 127.0.0.1, real cgroups and namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
QCI_DEPS="docker-registry busybox-static apache2-utils openssl socat skopeo chromium chromium-driver runsc etcd-server"
source scripts/install-deps.sh
export CARGO_TERM_COLOR=never
# Each fuzz target (crates/qci-fuzz) runs its corpus, then random inputs for this long.
export QCI_FUZZ_SECONDS="${QCI_FUZZ_SECONDS:-60}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
