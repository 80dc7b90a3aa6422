#!/usr/bin/env bash
# Installs what qci needs on Debian 12 (as root), skipping what is already there. Extra
# packages come in QCI_DEPS (space-separated); the caller's own arguments are left alone.
#   runtime: runc (containers), util-linux (nsenter, used by tests), e2fsprogs (disks: ext4),
#            nftables and iproute2 (group networks: NAT and firewalls; test namespaces)
#   tests:   docker-registry (a real OCI registry), busybox-static (the test image's content)
#   build:   gcc and pkg-config for the C parts of some crates, protobuf-compiler for etcd's
#            API (the cluster store); Rust itself must be installed
set -euo pipefail
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# shellcheck disable=SC2086
for pkg in runc util-linux e2fsprogs nftables iproute2 ca-certificates gcc protobuf-compiler ${QCI_DEPS:-}; do
  have "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "error: cargo is missing; install Rust (https://rustup.rs) and run this again" >&2
    exit 1
  fi
fi
