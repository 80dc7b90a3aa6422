#!/usr/bin/env bash
# Refreshes the console's third-party browser code from the npm registry: released files
# only, with their licences, into crates/qci-console/assets/vendor/. The build never runs
# this (the files are committed); run it by hand to move to newer releases, then commit.
set -euo pipefail
cd "$(dirname "$0")/.."
XTERM=@xterm/xterm@6.0.0
XTERM_FIT=@xterm/addon-fit@0.11.0
UPLOT=uplot@1.6.32
out=crates/qci-console/assets/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for pkg in "$XTERM" "$XTERM_FIT" "$UPLOT"; do
  (cd "$work" && npm pack --silent "$pkg" >/dev/null)
done
unpack() { mkdir -p "$work/$2" && tar -xzf "$work"/$1 -C "$work/$2" --strip-components=1; }
unpack "xterm-xterm-*.tgz" xterm
unpack "xterm-addon-fit-*.tgz" fit
unpack "uplot-*.tgz" uplot
rm -rf "$out" && mkdir -p "$out/xterm" "$out/uplot"
cp "$work/xterm/lib/xterm.mjs" "$work/xterm/css/xterm.css" "$work/xterm/LICENSE" "$out/xterm/"
cp "$work/fit/lib/addon-fit.mjs" "$out/xterm/"
cp "$work/fit/LICENSE" "$out/xterm/LICENSE.addon-fit"
cp "$work/uplot/dist/uPlot.iife.min.js" "$work/uplot/dist/uPlot.min.css" "$work/uplot/LICENSE" "$out/uplot/"
cat > "$out/VERSIONS" <<V
$XTERM
$XTERM_FIT
$UPLOT
V
ls -l "$out"/*
