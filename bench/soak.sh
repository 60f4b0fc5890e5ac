#!/usr/bin/env bash
# Soak: thousands of clients with churn and steady publishing for a set time,
# on 127.0.0.1; reports the gateway's RSS and open file descriptors over time
# and whether they grow once warm (issue #8, "Hardening").
#
#   bench/soak.sh                      # 5 minutes, 3,000 clients, 100 churned/s, 50 ev/s
#   SOAK_SECS=600 bench/soak.sh        # 10 minutes
#
# Clients connect from four loopback addresses (127.0.0.2-5): 256 handshakes
# at once from one address would meet the gateway's cap of 128
# not-yet-upgraded connections per address.
# Builds the release binaries, starts its own redis-server on a free port
# (never 6379; no persistence) and one gateway (RUST_LOG=warn), raises the
# open-files limit as far as allowed, and runs `loadtest` with `--churn-per-sec`
# and `--series`. Every second CHURN connected clients leave and as many new
# ones connect: most drop the TCP socket without a WebSocket close, a share
# CLOSE_SHARE closes cleanly, a share SILENT_SHARE stops reading and answering
# pings and holds its socket SILENT_HOLD seconds (the gateway's ping timeout
# has to find those). A share EXEMPT of the first clients is never churned:
# loss and duplicates are counted on them, and per connection on the
# replacements (see BENCHMARKS.md, "Soak").
#
# Everything goes to bench/results/soak-<time>/ (or OUT):
#   series.csv      one row per second: clients, churn, publishes, deliveries,
#                   RSS (KiB), open fds and CPU % of gateway, redis and loadtest
#   report.txt      loadtest's report: the series every SERIES_EVERY s and the
#                   warm-vs-end comparison (one third into the run vs its end)
#   report.json     the same as JSON
#   metrics/<t>.prom  the gateway's /metrics every METRICS_EVERY s, plus
#                   start.prom, end.prom (clients still connected) and
#                   after.prom (AFTER seconds after every client has gone)
#   after.txt       the gateway's RSS and fds at the start and after the run
#   gateway.log, redis.log, version.txt, summary.txt (what is printed last)
# Knobs (environment): SOAK_SECS (300), CLIENTS (3000), CHURN (100 per s),
# RATE (50 ev/s), PAYLOAD (100 B), CLOSE_SHARE (0.1), SILENT_SHARE (0.05),
# SILENT_HOLD (45 s), EXEMPT (0.1), WARMUP (10 s), THREADS (loadtest client
# threads, 1), SERIES_EVERY (30 s), METRICS_EVERY (30 s), AFTER (5 s), OUT,
# GATEWAY_ENV (extra VAR=value pairs for the gateway).
# Nothing here asserts a number: it measures and reports.
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_SECS=${SOAK_SECS:-300}
CLIENTS=${CLIENTS:-3000}
CHURN=${CHURN:-100}
RATE=${RATE:-50}
PAYLOAD=${PAYLOAD:-100}
CLOSE_SHARE=${CLOSE_SHARE:-0.1}
SILENT_SHARE=${SILENT_SHARE:-0.05}
SILENT_HOLD=${SILENT_HOLD:-45}
EXEMPT=${EXEMPT:-0.1}
WARMUP=${WARMUP:-10}
THREADS=${THREADS:-1}
SERIES_EVERY=${SERIES_EVERY:-30}
METRICS_EVERY=${METRICS_EVERY:-30}
AFTER=${AFTER:-5}
OUT=${OUT:-bench/results/soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/metrics"

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_prepare soak redis-server redis-cli curl python3
echo "soak: open-files limit $(ulimit -n)" >&2
trap 'exit 130' INT TERM
start_redis
API_KEY=soak-publish-key-0001

GW_PORT=$(free_port)
# shellcheck disable=SC2086 # GATEWAY_ENV is a list of VAR=value words
env REDIS_URL="$REDIS_URL" BIND_ADDR="127.0.0.1:$GW_PORT" NODE_ID=soak \
    PUBLISH_API_KEY="$API_KEY" RUST_LOG=warn ${GATEWAY_ENV:-} \
    "$BIN/gateway" 2>"$OUT/gateway.log" &
GW_PID=$!
PIDS+=("$GW_PID")
ready=
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$GW_PORT/readyz" >/dev/null 2>&1 && { ready=1; break; }
    sleep 0.1
done
[ -n "$ready" ] || { echo "soak: gateway did not become ready" >&2; exit 1; }

metrics() { curl -fs "http://127.0.0.1:$GW_PORT/metrics" >"$OUT/metrics/$1.prom" 2>/dev/null || true; }
resources() { # label: the gateway's RSS and fds, one line
    printf '%-8s rss %s KiB  fds %s\n' "$1" \
        "$(awk '/^VmRSS:/ {print $2}' "/proc/$GW_PID/status" 2>/dev/null)" \
        "$(find "/proc/$GW_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
}
metrics start
resources start >"$OUT/after.txt"

# /metrics every METRICS_EVERY s while the load runs.
( i=0
  while sleep "$METRICS_EVERY"; do
      i=$((i + METRICS_EVERY))
      metrics "$(printf 't%05d' "$i")"
  done ) &
METRICS_PID=$!
PIDS+=("$METRICS_PID")

echo "soak: $CLIENTS clients, $CHURN churned/s, $RATE ev/s × $PAYLOAD B for $SOAK_SECS s; results in $OUT" >&2
"$BIN/loadtest" --url "ws://127.0.0.1:$GW_PORT/ws/dashboard" \
    --redis-url "$REDIS_URL" --api-key "$API_KEY" \
    --clients "$CLIENTS" --rate "$RATE" --payload-bytes "$PAYLOAD" \
    --duration "$SOAK_SECS" --warmup "$WARMUP" --threads "$THREADS" \
    --connect-concurrency 256 \
    --source-ip 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5 \
    --churn-per-sec "$CHURN" --churn-close-share "$CLOSE_SHARE" \
    --churn-silent-share "$SILENT_SHARE" --churn-silent-hold "$SILENT_HOLD" \
    --churn-exempt "$EXEMPT" \
    --series "$OUT/series.csv" --series-every "$SERIES_EVERY" \
    --watch-pid "gateway=$GW_PID" --watch-pid "redis=$REDIS_PID" \
    --label soak --json "$OUT/report.json" 2>"$OUT/progress.log" | tee "$OUT/report.txt"
# loadtest has dropped every client when it returns; `end` is the last
# periodic snapshot (clients connected), `after` once the gateway has noticed.
kill "$METRICS_PID" 2>/dev/null || true
last=$(find "$OUT/metrics" -name 't*.prom' | sort | tail -1)
[ -n "$last" ] && cp "$last" "$OUT/metrics/end.prom"
sleep "$AFTER"
metrics after
resources after >>"$OUT/after.txt"

{
    echo
    echo "gateway /metrics (start → last snapshot under load → ${AFTER} s after the run):"
    for m in gateway_connections_opened_total gateway_connections_closed_total gateway_connections_active \
             gateway_slow_client_disconnects_total gateway_handshakes_rejected_total; do
        for f in start end after; do
            [ -f "$OUT/metrics/$f.prom" ] || continue
            grep -E "^$m(\{| )" "$OUT/metrics/$f.prom" | sed "s/^/  $f: /" || true
        done
    done
    echo
    echo "gateway process (before the clients / ${AFTER} s after the last one left):"
    sed 's/^/  /' "$OUT/after.txt"
} | tee "$OUT/summary.txt"
echo "soak: results in $OUT" >&2
