#!/usr/bin/env bash
# Installs what is missing, builds qci and runs `qci serve` (arguments are passed on,
# e.g. --data-dir /var/lib/qci --listen 127.0.0.1:7070).
set -euo pipefail
cd "$(dirname "$0")/.."
# busybox-static: what scripts/busybox-image.sh makes the Quickstart's image from.
QCI_DEPS="busybox-static"
source scripts/install-deps.sh
cargo build --release --locked --bin qci
exec target/release/qci serve "$@"
