#!/usr/bin/env bash
# Gateway benchmarks: one command, everything on 127.0.0.1.
#
#   bench/run.sh                 # all scenarios (~4 minutes of load plus the build)
#   bench/run.sh main slow       # only some: seed main idle slow scaling via profile
#   bench/run.sh profile         # `main`'s load again, with `perf record` on the gateway
#
# Builds the release binaries, starts its own redis-server on a free port
# (never 6379; no persistence) and a fresh gateway per scenario, runs
# `loadtest`, and writes everything under bench/results/<time>/:
#   <scenario>.txt (the report), <scenario>.json, <scenario>.metrics (the
#   gateway's /metrics afterwards), <scenario>.log (gateway stderr),
#   summary.md (one table of every run), perf-*.txt for `profile`.
# Knobs (environment): DURATION (s, per run, default 20), WARMUP (s, 3),
# IDLE_CLIENTS (default: as many as the fd limit allows, at most 20000),
# MAIN_REPEAT (runs of `main`, 3),
# THREADS (loadtest client threads, 1), OUT (results folder).
# Nothing here asserts a number: it measures and reports (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
THREADS=${THREADS:-1}
OUT=${OUT:-bench/results/$(date +%Y%m%d-%H%M%S)}
SCENARIOS=("$@")
if [ ${#SCENARIOS[@]} -eq 0 ]; then
    SCENARIOS=(seed main idle slow scaling via)
    command -v perf >/dev/null && SCENARIOS+=(profile)
fi
mkdir -p "$OUT"

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_prepare bench redis-server redis-cli curl jq python3
FD_LIMIT=$(ulimit -n)
start_redis
API_KEY=bench-publish-key-0001

GW_PID=
GW_PORT=
start_gateway() { # name [extra env...]
    local name=$1; shift
    GW_PORT=$(free_port)
    env REDIS_URL="$REDIS_URL" BIND_ADDR="127.0.0.1:$GW_PORT" NODE_ID=bench \
        PUBLISH_API_KEY="$API_KEY" RUST_LOG=warn "$@" \
        "$BIN/gateway" 2>"$OUT/$name.log" &
    GW_PID=$!
    PIDS+=("$GW_PID")
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$GW_PORT/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "bench: gateway did not become ready" >&2
    exit 1
}

stop_gateway() { # name
    curl -fs "http://127.0.0.1:$GW_PORT/metrics" >"$OUT/$1.metrics" || true
    kill "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
}

# run NAME [loadtest args...]: a fresh gateway, one loadtest run.
run() {
    local name=$1; shift
    echo "bench: --- $name: $*" >&2
    start_gateway "$name" ${GW_ENV:-}
    local perf_pid=
    if [ "$name" = profile ]; then
        # Sample the steady state only (after connect and warm-up): a flat
        # profile (8 s, 999 Hz), then call graphs (4 s, DWARF unwinding: the
        # release build keeps line tables but no frame pointers).
        ( sleep "$((WARMUP + 3))"
          perf record -F 999 -p "$GW_PID" -o "$OUT/perf-flat.data" -- sleep 8
          perf record -F 250 --call-graph dwarf,16384 -p "$GW_PID" \
              -o "$OUT/perf-graph.data" -- sleep 4 ) >"$OUT/perf-record.log" 2>&1 &
        perf_pid=$!
    fi
    # Kernel threads that take over loopback softirq work under load: their
    # CPU belongs to neither process, so it is shown apart.
    local softirq=() i=0
    for p in $(pgrep -x 'ksoftirqd/[0-9]+'); do softirq+=(--watch-pid "ksoftirqd$i=$p"); i=$((i + 1)); done
    "$BIN/loadtest" --url "ws://127.0.0.1:$GW_PORT/ws/dashboard" \
        --redis-url "$REDIS_URL" --api-key "$API_KEY" \
        --warmup "$WARMUP" --threads "$THREADS" \
        --watch-pid "gateway=$GW_PID" --watch-pid "redis=$REDIS_PID" \
        "${softirq[@]}" --label "$name" --json "$OUT/$name.json" "$@" | tee "$OUT/$name.txt"
    [ -n "$perf_pid" ] && wait "$perf_pid" || true
    stop_gateway "$name"
}

for scenario in "${SCENARIOS[@]}"; do
    case $scenario in
    seed) # The seed's scenario 7: the floor.
        run seed --clients 100 --rate 1 --duration "$DURATION" ;;
    main) # 1,000 clients × 100 events/s × 100 B, Redis bus (publisher crate).
        # Repeated (MAIN_REPEAT, default 3): on a shared 2-core box the tail moves.
        for i in $(seq "${MAIN_REPEAT:-3}"); do
            run "main-$i" --clients 1000 --rate 100 --payload-bytes 100 --duration "$DURATION"
        done ;;
    idle) # As many idle connections as one process may hold (fd limit).
        n=${IDLE_CLIENTS:-$(( FD_LIMIT - 64 < 20000 ? FD_LIMIT - 64 : 20000 ))}
        run idle --clients "$n" --via none --rate 0 --duration 5 --warmup 0 \
            --connect-concurrency 256 \
            --source-ip 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5 ;;
    slow) # 10% of clients stop reading 3 s in; the others' latency is compared with `main`.
        run slow --clients 1000 --rate 100 --payload-bytes 100 --duration "$DURATION" \
            --slow-share 0.1 --slow-after 3 ;;
    scaling) # How cost grows with clients, and with rate.
        for c in 100 1000 2000 4000; do
            run "clients-$c" --clients "$c" --rate 100 --duration "$((DURATION / 2 + WARMUP))"
        done
        for r in 10 100 500 1000; do
            run "rate-$r" --clients 1000 --rate "$r" --duration "$((DURATION / 2 + WARMUP))"
        done ;;
    profile) # `main` again under perf (its figures are perturbed: not in the tables).
        command -v perf >/dev/null || { echo "bench: perf is needed (apt-get install linux-perf)" >&2; exit 2; }
        run profile --clients 1000 --rate 100 --payload-bytes 100 --duration "$((WARMUP + 17))" ;;
    via) # The same load through a raw PUBLISH and through POST /api/publish.
        run via-redis-raw --clients 1000 --rate 100 --via redis-raw --duration "$((DURATION / 2 + WARMUP))"
        run via-http --clients 1000 --rate 100 --via http --duration "$((DURATION / 2 + WARMUP))" ;;
    *) echo "bench: unknown scenario $scenario" >&2; exit 2 ;;
    esac
done

if [ -f "$OUT/perf-flat.data" ]; then
    perf report -i "$OUT/perf-flat.data" --stdio --sort dso,symbol --percent-limit 0.5 \
        2>/dev/null | grep -v '^$' | head -80 >"$OUT/perf-flat.txt" || true
    perf report -i "$OUT/perf-flat.data" --stdio --sort dso --percent-limit 0.5 \
        2>/dev/null | grep -v '^$' | head -30 >"$OUT/perf-dso.txt" || true
fi
if [ -f "$OUT/perf-graph.data" ]; then
    perf report -i "$OUT/perf-graph.data" --children --stdio --sort symbol -g none \
        --percent-limit 2 2>/dev/null | grep -v '^$' | head -100 >"$OUT/perf-children.txt" || true
fi

# One table of every run.
{
    echo "| run | clients | ev/s | delivered/s | lost | dup | p50 ms | p99 ms | p999 ms | max ms | gateway CPU % | deliveries / gateway CPU-s | gateway RSS connected | KiB / conn | conn/s |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for f in "$OUT"/*.json; do
        [ "$(basename "$f")" = profile.json ] && continue
        jq -r '
          def r(x): if x == null then "–" else (x * 100 | round / 100 | tostring) end;
          def i(x): if x == null then "–" else (x | round | tostring) end;
          (.processes[] | select(.name == "gateway")) as $g
          | "| \(.label) | \(.connect.connected) | \(.config.rate) | \(i(.window.per_second)) | \(.lost) | \(.duplicated) | \(r(.latency.p50_ms)) | \(r(.latency.p99_ms)) | \(r(.latency.p999_ms)) | \(r(.latency.max_ms)) | \(i(if $g.cpu_s then $g.cpu_s / .window.seconds * 100 else null end)) | \(i($g.deliveries_per_cpu_s)) | \(if $g.rss_connected then ($g.rss_connected / 1048576 * 10 | round / 10 | tostring) + " MiB" else "–" end) | \(r(if $g.rss_per_connection then $g.rss_per_connection / 1024 else null end)) | \(i(.connect.rate_per_s)) |"
        ' "$f"
    done
} >"$OUT/summary.md"
echo "bench: results in $OUT" >&2
cat "$OUT/summary.md"
