#!/usr/bin/env bash
# Browser tests of the dashboard page (real headless Chromium, real gateway, real Redis).
#
#   cargo build -p gateway -p publisher && tests/browser/run.sh [extra node --test args]
#
# Installs what is missing (Chromium from apt, node_modules from package-lock.json),
# then runs every tests/*.test.mjs with Node's built-in test runner, one file at a time.
# Env: CARGO_TARGET_DIR (where the binaries are), GATEWAY_BIN, PUBLISHER_BIN,
#      CHROMIUM_BIN (default /usr/bin/chromium), REDIS_SERVER_BIN (default redis-server).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac

gateway_bin="${GATEWAY_BIN:-$target/debug/gateway}"
publisher_bin="${PUBLISHER_BIN:-$target/debug/publisher}"
missing=0
for bin in "$gateway_bin" "$publisher_bin"; do
  if [ ! -x "$bin" ]; then
    echo "run.sh: missing binary $bin" >&2
    missing=1
  fi
done
if [ "$missing" = 1 ]; then
  echo "run.sh: build them first: (cd $repo && cargo build -p gateway -p publisher)" >&2
  exit 2
fi
export GATEWAY_BIN="$gateway_bin" PUBLISHER_BIN="$publisher_bin"

if ! command -v node >/dev/null 2>&1; then
  echo "run.sh: node (>= 20) is required" >&2
  exit 2
fi
if ! command -v "${REDIS_SERVER_BIN:-redis-server}" >/dev/null 2>&1; then
  echo "run.sh: redis-server is required (apt-get install -y redis-server)" >&2
  exit 2
fi

chromium="${CHROMIUM_BIN:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "run.sh: $chromium missing; installing Debian's chromium" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
fi

# nginx, for the upgrade-refusing proxy of tests/transport.test.mjs
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "run.sh: nginx missing; installing it (apt-get)" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends nginx
  # the package may start a system nginx on :80; the tests run their own
  $sudo service nginx stop >/dev/null 2>&1 || true
fi

cd "$here"
if [ ! -d node_modules/playwright-core ]; then
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
fi

exec node --test --test-concurrency=1 "$@" tests/
