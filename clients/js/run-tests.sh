#!/usr/bin/env bash
# Tests of the client SDK (clients/js): the checked-in page bundle is not stale, the types
# check, then every Vitest test (unit tests with fake timers, React Testing Library, and
# wire tests against real gateway / redis-server / publisher processes the tests start).
#
#   cargo build --workspace && clients/js/run-tests.sh [extra vitest args]
#
# Installs node_modules with `npm ci` when missing. Env: CARGO_TARGET_DIR (where the
# binaries are), GATEWAY_BIN, PUBLISHER_BIN, REDIS_SERVER_BIN (default redis-server).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac

if ! command -v node >/dev/null 2>&1; then
  echo "run-tests.sh: node (>= 20) is required" >&2
  exit 2
fi
gateway_bin="${GATEWAY_BIN:-$target/debug/gateway}"
publisher_bin="${PUBLISHER_BIN:-$target/debug/publisher}"
missing=0
for bin in "$gateway_bin" "$publisher_bin"; do
  if [ ! -x "$bin" ]; then
    echo "run-tests.sh: missing binary $bin" >&2
    missing=1
  fi
done
if [ "$missing" = 1 ]; then
  echo "run-tests.sh: build them first: (cd $repo && cargo build --workspace)" >&2
  exit 2
fi
if ! command -v "${REDIS_SERVER_BIN:-redis-server}" >/dev/null 2>&1; then
  echo "run-tests.sh: redis-server is required (apt-get install -y redis-server)" >&2
  exit 2
fi
export GATEWAY_BIN="$gateway_bin" PUBLISHER_BIN="$publisher_bin"

cd "$here"
if [ ! -x node_modules/.bin/vitest ]; then
  npm ci --no-audit --no-fund
fi

echo "== page bundle (gateway/assets/ws-client.js) is up to date"
node scripts/build.mjs check
echo "== typecheck"
node_modules/.bin/tsc --noEmit -p tsconfig.json
echo "== vitest"
exec node_modules/.bin/vitest run "$@"
