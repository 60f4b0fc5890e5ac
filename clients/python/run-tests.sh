#!/usr/bin/env bash
# Tests of the Python package (clients/python): a throwaway venv, the package installed
# from this directory as a user installs it (pip install ./clients/python), then pytest:
# wire-format and error tests against a real redis-server, the script-equality and
# wheel checks, the FastAPI example, and tests through real gateway processes and the
# Rust publisher CLI; TLS (a private CA, client certificates) and Sentinel
# failover against real redis-server processes.
#
#   cargo build --workspace && clients/python/run-tests.sh [extra pytest args]
#
# Env: PYTHON (default python3, 3.9+), CARGO_TARGET_DIR (where the binaries are),
# GATEWAY_BIN, PUBLISHER_BIN, REDIS_SERVER_BIN (default redis-server), TMPDIR.
# Installs Debian's python3-venv (and openssl) with apt-get when missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
python="${PYTHON:-python3}"

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "run-tests.sh: need root to apt-get install $* (or install it by hand)" >&2
    return 1
  fi
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

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
# The TLS tests make a throwaway CA and certificates with the openssl CLI.
command -v openssl >/dev/null 2>&1 || apt_install openssl
export GATEWAY_BIN="$gateway_bin" PUBLISHER_BIN="$publisher_bin"
export PIP_DISABLE_PIP_VERSION_CHECK=1

command -v "$python" >/dev/null 2>&1 || apt_install python3 python3-venv
work="$(mktemp -d "${TMPDIR:-/tmp}/dashboard-gateway-python.XXXXXX")"
trap 'rm -rf "$work"' EXIT
venv="$work/venv"
if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
  # Debian's python3 ships venv without ensurepip: that is python3-venv.
  rm -rf "$venv"
  apt_install python3-venv
  "$python" -m venv "$venv"
fi
"$venv/bin/python" --version

echo "== pip install ./clients/python (+ pytest, websockets, fastapi, httpx)"
# pip >= 21.3 builds in place, so the package's link to publisher/lua/publish.lua
# resolves (older pip copies the directory alone and the build refuses).
"$venv/bin/python" -m pip install -q --upgrade pip
# setuptools builds in place and would ship a stale build/ (e.g. a deleted module).
rm -rf "$here/build" "$here"/src/*.egg-info
"$venv/bin/python" -m pip install -q "$here" pytest "websockets>=12" fastapi httpx

echo "== pytest"
# From outside the source tree, so the tests import the installed package.
cd "$work"
set +e
"$venv/bin/python" -m pytest "$here/tests" -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "run-tests.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
