#!/usr/bin/env bash
# Builds the Debian package of qci: target/qci_<version>_<arch>.deb with the binary, a systemd
# unit for `qci serve`, shell completions and manual pages, depending on what qci runs with.
#   usage: scripts/package.sh [--binary PATH] [--out DIR]
#   --binary PATH   package this qci binary instead of building a release one (the tests do)
#   --out DIR       where the .deb goes (default target/)
#   --fast          no compression (for tests: a debug binary is large)
# Install it with `apt-get install ./target/qci_*.deb` (or dpkg -i), then
# `systemctl enable --now qci`.
set -euo pipefail
cd "$(dirname "$0")/.."
binary="" out="target" compress=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --fast) compress=(-Znone); shift ;;
    *) echo "usage: $0 [--binary PATH] [--out DIR] [--fast]" >&2; exit 2 ;;
  esac
done
command -v dpkg-deb >/dev/null || { echo "error: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 1; }
if [ -z "$binary" ]; then
  cargo build --release --locked --bin qci
  binary=target/release/qci
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
pkg="$root/qci"
install -D -m 0755 "$binary" "$pkg/usr/bin/qci"
# The unit: containers outlive a restart of the service (their monitors are in their own
# sessions; KillMode=process stops only `qci serve`), which adopts them when it comes back.
install -d "$pkg/lib/systemd/system"
cat > "$pkg/lib/systemd/system/qci.service" <<'EOF'
[Unit]
Description=qci: elastic container instances on this machine
Documentation=man:qci-serve(1)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=/usr/bin/qci serve --data-dir /var/lib/qci
Restart=on-failure
RestartSec=2
KillMode=process
TimeoutStopSec=30
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
EOF
"$pkg/usr/bin/qci" completion bash | install -D -m 0644 /dev/stdin "$pkg/usr/share/bash-completion/completions/qci"
"$pkg/usr/bin/qci" completion zsh | install -D -m 0644 /dev/stdin "$pkg/usr/share/zsh/vendor-completions/_qci"
"$pkg/usr/bin/qci" completion fish | install -D -m 0644 /dev/stdin "$pkg/usr/share/fish/vendor_completions.d/qci.fish"
"$pkg/usr/bin/qci" man "$pkg/usr/share/man/man1"
gzip -9n "$pkg"/usr/share/man/man1/*.1
install -d "$pkg/usr/share/doc/qci"
cp README.md ARCHITECTURE.md "$pkg/usr/share/doc/qci/"
printf 'qci\nLicense: Apache-2.0 (/usr/share/common-licenses/Apache-2.0)\n' > "$pkg/usr/share/doc/qci/copyright"
size=$(du -sk "$pkg" | cut -f1)
install -d "$pkg/DEBIAN"
cat > "$pkg/DEBIAN/control" <<EOF
Package: qci
Version: $version
Architecture: $arch
Maintainer: qci developers <qci@localhost>
Installed-Size: $size
Depends: runc, util-linux, e2fsprogs, nftables, iproute2, ca-certificates
Recommends: busybox-static
Suggests: runsc, etcd-server
Section: admin
Priority: optional
Description: elastic container instances on your own machines
 qci runs container groups (pods of up to 20 containers sharing one network
 namespace) on real Linux containers through runc, behind an HTTP API and a CLI,
 with tenants, API keys, quotas, disks, VPCs, EIPs and firewalls.
EOF
mkdir -p "$out"
deb="$out/qci_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$pkg" "$deb" >/dev/null
echo "$deb"
