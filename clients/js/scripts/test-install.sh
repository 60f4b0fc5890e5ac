#!/usr/bin/env bash
# The package as an app installs it: `npm pack` (prebuilt dist/, no node_modules, React a
# peer), a fresh Vite + React + TypeScript app in a temp dir installs the tarball the way
# README.md says, type-checks and builds, and a component using useWebSocket() runs in
# real headless Chromium against a real gateway node: it shows `connected` and the
# analytics published through /api/publish, and the app holds exactly one React.
#
#   cargo build -p gateway && clients/js/scripts/test-install.sh
#
# Packages come from the npm registry through npm's cache (--prefer-offline): the first
# run downloads, later runs take seconds. Env: GATEWAY_BIN (or CARGO_TARGET_DIR),
# CHROMIUM_BIN (default /usr/bin/chromium), KEEP_APP=1 keeps the temp app for a look.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pkg="$(cd "$here/.." && pwd)"
repo="$(cd "$pkg/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
export GATEWAY_BIN="${GATEWAY_BIN:-$target/debug/gateway}"
if [ ! -x "$GATEWAY_BIN" ]; then
  echo "test-install.sh: missing binary $GATEWAY_BIN; build it first: (cd $repo && cargo build -p gateway)" >&2
  exit 2
fi
if [ ! -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ]; then
  echo "test-install.sh: chromium is required (apt-get install -y chromium, or set CHROMIUM_BIN)" >&2
  exit 2
fi
# the package's dev dependencies build dist/; the browser harness brings playwright-core
if [ ! -x "$pkg/node_modules/.bin/tsc" ]; then (cd "$pkg" && npm ci --no-audit --no-fund); fi
if [ ! -d "$repo/tests/browser/node_modules/playwright-core" ]; then
  (cd "$repo/tests/browser" && npm ci --no-audit --no-fund)
fi
exec node "$here/test-install.mjs"
