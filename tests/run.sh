#!/usr/bin/env bash
# Runs every test of the project, installing what is missing first:
#   0. Gates: cargo fmt --check, cargo clippy -D warnings.
#   1. Rust: unit, single-node and multi-process system tests (cargo nextest,
#      installed when missing), against a real redis-server.
#   2. deploy/smoke.sh: three gateways behind a real nginx on loopback.
#   3. tests/browser/run.sh: the dashboard page in real headless Chromium.
#   4. clients/js/run-tests.sh: the TypeScript client and React hook (Vitest),
#      against a real gateway where the behaviour crosses the wire.
#   5. clients/js/scripts/test-install.sh: the packed package installed into a fresh
#      Vite + React app, built, and run in headless Chromium against a real gateway.
#   6. clients/python/run-tests.sh: the Python publisher package (pytest, in a
#      throwaway venv), against real redis-server, gateway and publisher CLI.
# Exits non-zero if any suite fails; the last line sums the suites.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

updated=""
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "run.sh: need root (or install by hand): $*" >&2
    return 1
  fi
  if [ -z "$updated" ]; then
    apt-get update -qq >/dev/null && updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# Debian's redis-server has TLS (--tls-port) and Sentinel built in; the TLS tests make
# their certificates in-process (rcgen), so no openssl CLI is needed.
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server
command -v nginx >/dev/null || apt_install nginx
command -v chromium >/dev/null || apt_install chromium
command -v node >/dev/null || apt_install nodejs npm

passed=0
failed=0
suite() { # name command...
  local name="$1"
  shift
  echo "=== $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "=== $name FAILED"
  fi
}

# One debug build serves every suite (the system tests, the smoke and the
# browser tests run the built binaries).
cargo build --workspace --locked || { echo "suites: 0 passed, 1 failed"; exit 1; }

# Gates: formatting and lints fail the run like a failing test.
suite fmt cargo fmt --all -- --check
suite clippy cargo clippy --workspace --all-targets --locked -- -D warnings
# nextest is the one runner (one process per test, so tests that read the
# process-wide metrics cannot see another test's node); installed if missing.
cargo nextest --version >/dev/null 2>&1 || cargo install cargo-nextest --locked
suite rust cargo nextest run --workspace --locked
suite smoke deploy/smoke.sh
suite browser tests/browser/run.sh
suite js-client clients/js/run-tests.sh
suite js-install clients/js/scripts/test-install.sh
suite python-client clients/python/run-tests.sh

echo "suites: $passed passed, $failed failed"
[ "$failed" = 0 ]
