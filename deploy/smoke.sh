#!/usr/bin/env bash
# Loopback cluster smoke: a real redis-server, three real gateway nodes and a real nginx
# running the project's deploy/nginx.conf, all on 127.0.0.1 (no Docker), then 30
# WebSocket clients through nginx:
#   connect    every client connects through nginx and gets the initial analytics_update
#   origin     with CORS_ORIGINS set, a handshake through nginx from the page's own
#              origin (by address or as localhost) gets 101, one from a page on
#              another name pointed at nginx (DNS rebinding) gets 403
#   broadcast  POST /api/publish through nginx -> 202; every client gets the event
#   status     /ws/status through nginx reports active_connections == N (summed via Redis)
#   logs       a page load (?token=, a Referer naming it) and a WebSocket with ?token=:
#              nginx's log holds their paths and no token; the page says no-referrer
#   drain      SIGTERM one node: exactly its clients get close code 1001; the node exits
#   failover   those clients reconnect through nginx (resuming with ?since=) to the other
#              nodes; N live again and a new event reaches all N
# Prints PASS/FAIL per check and a final `smoke: X passed, Y failed`; exits 0 only if all
# passed.
#
# Needs the Rust binaries already built (`cargo build -p gateway -p publisher`):
#   GATEWAY_BIN    default $CARGO_TARGET_DIR/debug/gateway (target/debug/gateway)
#   SMOKE_CLIENTS  default 30
#   SMOKE_KEEP=1   keep the temp dir (logs, nginx config) after the run
# Installs nginx (apt-get) when it is not on PATH. Never touches port 6379 or any
# system service: every process it starts lives in a temp dir and is stopped on exit.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CHECKS=(connect origin broadcast status logs drain failover)
N="${SMOKE_CLIENTS:-30}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
GATEWAY_BIN="${GATEWAY_BIN:-$TARGET/debug/gateway}"
API_KEY=smoke-publish-key-0001
TMP=""
PIDS=()
NGINX_PID=""
REDIS_PID=""

say() { echo "smoke: $*"; }

# Setup failed before the checks could run: every check counts as failed.
setup_fail() {
  say "setup failed: $*"
  for c in "${CHECKS[@]}"; do echo "FAIL $c: not run (setup failed)"; done
  echo "smoke: 0 passed, ${#CHECKS[@]} failed"
  exit 1
}

stop_pid() { # pid [signal]
  local pid="$1" sig="${2:-TERM}"
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill "-$sig" "$pid" 2>/dev/null
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$NGINX_PID" ] && stop_pid "$NGINX_PID" QUIT
  for pid in "${PIDS[@]}"; do stop_pid "$pid" TERM; done
  [ -n "$REDIS_PID" ] && stop_pid "$REDIS_PID" TERM
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    if [ "${SMOKE_KEEP:-0}" = 1 ]; then
      say "kept $TMP"
    else
      rm -rf "$TMP"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- prerequisites -------------------------------------------------------------------
[ -x "$GATEWAY_BIN" ] || setup_fail "gateway binary not found at $GATEWAY_BIN; build it first: cargo build -p gateway -p publisher (or set GATEWAY_BIN)"

need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ "${#need_apt[@]}" -gt 0 ]; then
  say "installing ${need_apt[*]} (apt-get)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"; } >/dev/null; then
    setup_fail "could not install ${need_apt[*]} with apt-get"
  fi
  # The Debian package may start a system nginx on :80; stop it if we just installed it
  # (the smoke runs its own nginx). A system redis-server (:6379) is left alone.
  if [[ " ${need_apt[*]} " == *" nginx "* ]] && command -v service >/dev/null 2>&1; then
    service nginx stop >/dev/null 2>&1 || true
  fi
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
command -v node >/dev/null 2>&1 || setup_fail "node (>= 20) is required for the WebSocket clients"

NODE_FLAGS=(--no-warnings)
if [ "$(node -e 'process.stdout.write(typeof WebSocket)')" != function ]; then
  NODE_FLAGS+=(--experimental-websocket)
  [ "$(node "${NODE_FLAGS[@]}" -e 'process.stdout.write(typeof WebSocket)' 2>/dev/null)" = function ] ||
    setup_fail "this node ($(node --version)) has no WebSocket client; need Node >= 20"
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/gateway-smoke.XXXXXX")"

# Free loopback ports: bind port 0 several times at once, never 6379.
mapfile -t PORTS < <(node -e '
  const net = require("net");
  const want = 5, servers = [], ports = [];
  (function next() {
    if (ports.length === want) { servers.forEach(s => s.close()); console.log(ports.join("\n")); return; }
    const s = net.createServer(); servers.push(s);
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; if (p !== 6379) ports.push(p); next(); });
  })();')
[ "${#PORTS[@]}" -eq 5 ] || setup_fail "could not find free ports"
REDIS_PORT="${PORTS[0]}"
NGINX_PORT="${PORTS[1]}"
GW_PORTS=("${PORTS[2]}" "${PORTS[3]}" "${PORTS[4]}")

http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null; }

wait_http_200() { # url seconds
  local url="$1" deadline=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$deadline" ]; do
    [ "$(http_code "$url")" = 200 ] && return 0
    sleep 0.2
  done
  return 1
}

show_log() { # file
  echo "----- tail of $1"
  tail -n 30 "$1" 2>/dev/null | sed 's/^/    /'
}

# --- redis-server ----------------------------------------------------------------------
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$TMP" --daemonize no --logfile "$TMP/redis.log" &
REDIS_PID=$!
redis_up() {
  local reply
  { exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  IFS= read -r -t 1 reply <&3
  exec 3>&- 3<&-
  [[ "$reply" == "+PONG"* ]]
}
for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
redis_up || { show_log "$TMP/redis.log"; setup_fail "redis-server did not start on 127.0.0.1:$REDIS_PORT"; }
say "redis-server on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"

# --- three gateway nodes ---------------------------------------------------------------
NODE_PIDS=""
for i in 1 2 3; do
  port="${GW_PORTS[$((i - 1))]}"
  BIND_ADDR="127.0.0.1:$port" \
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    NODE_ID="smoke-$i" \
    PUBLISH_API_KEY="$API_KEY" \
    CORS_ORIGINS=https://ops.example.com \
    PING_INTERVAL_MS=2000 \
    PONG_TIMEOUT_MS=2000 \
    DRAIN_TIMEOUT_SECS=5 \
    RUST_LOG="${RUST_LOG:-info}" \
    "$GATEWAY_BIN" >"$TMP/gateway-$i.log" 2>&1 &
  PIDS+=($!)
  NODE_PIDS+="${NODE_PIDS:+,}smoke-$i=$!"
done
for i in 1 2 3; do
  port="${GW_PORTS[$((i - 1))]}"
  if ! wait_http_200 "http://127.0.0.1:$port/readyz" 20; then
    show_log "$TMP/gateway-$i.log"
    setup_fail "gateway smoke-$i (127.0.0.1:$port) not ready (GET /readyz != 200) within 20 s"
  fi
  say "gateway smoke-$i on 127.0.0.1:$port ready (pid ${PIDS[$((i - 1))]})"
done

# --- nginx with deploy/nginx.conf --------------------------------------------------------
# Only the `# @upstream-server` lines (-> one line per smoke node) and the `# @listen`
# line change; everything else is the production file verbatim.
CONF="$TMP/nginx.conf"
awk -v listen="127.0.0.1:$NGINX_PORT" -v ports="${GW_PORTS[*]}" '
  /# @upstream-server[[:space:]]*$/ {
    if (!done) {
      match($0, /^[[:space:]]*/); indent = substr($0, 1, RLENGTH)
      line = $0; sub(/^[[:space:]]*server[[:space:]]+[^[:space:]]+/, "", line)
      n = split(ports, p, " ")
      for (i = 1; i <= n; i++) print indent "server 127.0.0.1:" p[i] line
      done = 1
    }
    next
  }
  /# @listen[[:space:]]*$/ { sub(/listen[[:space:]]+[^;]+;/, "listen " listen ";") }
  { print }
' deploy/nginx.conf >"$CONF"
grep -q "server 127.0.0.1:${GW_PORTS[2]}" "$CONF" && grep -q "listen 127.0.0.1:$NGINX_PORT;" "$CONF" ||
  setup_fail "could not template deploy/nginx.conf (missing '# @upstream-server' / '# @listen' markers?)"
# The prefix (-p) holds pid, temp dirs; logs go to stdout/stderr -> $TMP/nginx.log.
# Running as root, nginx would switch workers to nobody, who cannot read a 0700 temp dir.
chmod 755 "$TMP"
"$NGINX" -e "$TMP/nginx-startup.log" -p "$TMP/" -c "$CONF" -t >"$TMP/nginx-test.log" 2>&1 ||
  { show_log "$TMP/nginx-test.log"; setup_fail "nginx -t rejected the templated deploy/nginx.conf"; }
"$NGINX" -e "$TMP/nginx-startup.log" -p "$TMP/" -c "$CONF" -g 'daemon off;' >"$TMP/nginx.log" 2>&1 &
NGINX_PID=$!
LB="http://127.0.0.1:$NGINX_PORT"
if ! wait_http_200 "$LB/healthz" 10; then
  show_log "$TMP/nginx.log"
  setup_fail "nginx did not proxy GET /healthz on 127.0.0.1:$NGINX_PORT within 10 s"
fi
say "nginx on $LB (pid $NGINX_PID), upstreams 127.0.0.1:{${GW_PORTS[*]}}"

# --- the checks ----------------------------------------------------------------------
SMOKE_LB_URL="$LB" SMOKE_CLIENTS="$N" SMOKE_API_KEY="$API_KEY" SMOKE_NODE_PIDS="$NODE_PIDS" \
  SMOKE_NGINX_LOG="$TMP/nginx.log" \
  node "${NODE_FLAGS[@]}" deploy/smoke/cluster-checks.mjs | tee "$TMP/checks.log"

passed=$(grep -c '^PASS ' "$TMP/checks.log")
failed=$(grep -c '^FAIL ' "$TMP/checks.log")
if [ $((passed + failed)) -lt "${#CHECKS[@]}" ]; then
  failed=$((${#CHECKS[@]} - passed))
fi
if [ "$failed" -ne 0 ]; then
  for i in 1 2 3; do show_log "$TMP/gateway-$i.log"; done
  show_log "$TMP/nginx.log"
fi
echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -eq "${#CHECKS[@]}" ]
