#!/usr/bin/env bash
# Gateway benchmarks: one command, everything on 127.0.0.1.
#
#   bench/run.sh                 # all scenarios (~7 minutes of load plus the build)
#   bench/run.sh main slow       # only some: seed main idle slow scaling via profile
#                                #   rates burst ramp
#   bench/run.sh profile         # `main`'s load again, with `perf record` on the gateway
#   bench/run.sh rates burst ramp  # the event-rate axis only
#
# Builds the release binaries, starts its own redis-server on a free port
# (never 6379; no persistence) and a fresh gateway per scenario, runs
# `loadtest`, and writes everything under bench/results/<time>/:
#   <scenario>.txt (the report), <scenario>.json, <scenario>.metrics (the
#   gateway's /metrics afterwards), <scenario>.log (gateway stderr),
#   summary.md (one table of every run, one of the bursts, the ramp's
#   verdict), ramp.txt (the ramp step by step), perf-*.txt for `profile`.
# Every run's report and JSON (`.node`) also get three of the node's own
# counters from /metrics after the run: gateway_slow_client_disconnects_total,
# gateway_fanout_gaps_total, gateway_bus_reconnects_total.
#
# The event-rate axis (few clients, many events; each run says whether the
# publisher held the rate, and how busy the load tool's client thread was):
#   rates  10 clients × 2,000, 20,000 and 50,000 events/s (RATE_SECS, 10 s
#          measured each) and 10 × 100,000/s (FAST_SECS, 5 s measured).
#   burst  BURST (20,000) events at once to 10 reading clients while
#          FILTERED (1,000) clients subscribed to `intervention` (never
#          published) are connected: time until the last reader has all,
#          lost, duplicated, out of order, latency, readers and filtered
#          clients closed, frames the filtered ones got (should be 0).
#   ramp   10 clients; the rate doubles from RAMP_FROM (1,000)/s, RAMP_SECS
#          (5 s) measured each, until a run loses events, closes a client or
#          its p99 passes RAMP_P99_MS (100), or the publisher cannot hold the
#          rate (then the limit found is the load tool's or Redis's, and
#          ramp.txt says so), or RAMP_MAX (1,024,000) is reached; reports the
#          highest rate that held.
# They publish with a raw PUBLISH (EVENT_VIA=redis-raw, the default): the
# history script, in batches of 1,000, costs Redis about 6 µs of CPU an
# event (a raw PUBLISH about 2) and reached about 54,000 events/s on the
# 2-core box, so above ~50,000/s it would measure Redis, not the gateway.
# EVENT_VIA=redis runs them through the script (events with ids).
# One loadtest client thread is enough for 10 × 100,000/s: it spends about
# 0.5 µs per delivery there (the report's `clients` line: ~2M deliveries/s
# with a core to itself), and that line flags a saturated client thread. On
# a 2-core box the gateway, Redis and the publisher share those cores, so at
# 100,000/s the machine, not one component, is the limit (see `machine`).
#
# Knobs (environment): DURATION (s, per run, default 20), WARMUP (s, 3),
# IDLE_CLIENTS (default: as many as the fd limit allows, at most 20000),
# MAIN_REPEAT (runs of `main`, 3),
# THREADS (loadtest client threads, 1), OUT (results folder), BUILD (0:
# use the release binaries as they are), and for the event-rate axis
# EVENT_VIA, RATE_SECS, FAST_SECS, BURST, FILTERED, BURST_DRAIN (s, 30),
# RAMP_FROM, RAMP_MAX, RAMP_SECS, RAMP_P99_MS.
# Nothing here asserts a number: it measures and reports (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
THREADS=${THREADS:-1}
EVENT_VIA=${EVENT_VIA:-redis-raw}
RATE_SECS=${RATE_SECS:-10}
FAST_SECS=${FAST_SECS:-5}
BURST=${BURST:-20000}
FILTERED=${FILTERED:-1000}
BURST_DRAIN=${BURST_DRAIN:-30}
RAMP_FROM=${RAMP_FROM:-1000}
RAMP_MAX=${RAMP_MAX:-1024000}
RAMP_SECS=${RAMP_SECS:-5}
RAMP_P99_MS=${RAMP_P99_MS:-100}
OUT=${OUT:-bench/results/$(date +%Y%m%d-%H%M%S)}
SCENARIOS=("$@")
if [ ${#SCENARIOS[@]} -eq 0 ]; then
    SCENARIOS=(seed main idle slow scaling via rates burst ramp)
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
    local m="$OUT/$1.metrics" slow gaps reconnects
    curl -fs "http://127.0.0.1:$GW_PORT/metrics" >"$m" || true
    kill "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
    # The node's own view of the run, next to the load tool's.
    slow=$(node_counter "$m" gateway_slow_client_disconnects_total)
    gaps=$(node_counter "$m" gateway_fanout_gaps_total)
    reconnects=$(node_counter "$m" gateway_bus_reconnects_total)
    echo "  node        slow-client disconnects $slow, fan-out gaps $gaps, bus reconnects $reconnects (the gateway's /metrics after the run)" |
        tee -a "$OUT/$1.txt"
    if [ -f "$OUT/$1.json" ]; then
        jq --argjson slow "$slow" --argjson gaps "$gaps" --argjson reconnects "$reconnects" \
            '. + {node: {slow_client_disconnects: $slow, fanout_gaps: $gaps, bus_reconnects: $reconnects}}' \
            "$OUT/$1.json" >"$OUT/$1.json.tmp" && mv "$OUT/$1.json.tmp" "$OUT/$1.json"
    fi
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

# ramp: one run per rate, doubling; ramp.txt says which held and why it stopped.
ramp() {
    local r=$RAMP_FROM held="" f lost p99 closed ok why=""
    : >"$OUT/ramp.txt"
    while [ "$r" -le "$RAMP_MAX" ]; do
        run "ramp-$r" --clients 10 --rate "$r" --via "$EVENT_VIA" --duration "$((RAMP_SECS + WARMUP))"
        f="$OUT/ramp-$r.json"
        read -r lost closed ok < <(jq -r '[.lost, .disconnected, .published.held] | @tsv' "$f")
        # No samples when every client was closed before the warm-up ended.
        p99=$(jq -r 'if .latency.p99_ms == null then "no latency samples" else "p99 \(.latency.p99_ms) ms" end' "$f")
        echo "ramp $r/s: lost $lost, $p99, clients closed $closed, publisher held the rate: $ok" >>"$OUT/ramp.txt"
        local failed=""
        if [ "$lost" -gt 0 ] || [ "$closed" -gt 0 ] || jq -e --argjson max "$RAMP_P99_MS" '.latency.p99_ms > $max' "$f" >/dev/null; then
            failed="lost $lost, $closed clients closed, $p99 (limit $RAMP_P99_MS ms)"
        fi
        if [ "$ok" != true ]; then
            # Both at once on a shared box: the publisher may have been short
            # of CPU because of the gateway, or the other way round.
            why="at $r/s: the publisher could not hold the rate ($(jq -r '.published.rate_achieved // 0 | round' "$f")/s achieved)"
            if [ -n "$failed" ]; then
                why+=", and $failed"
            else
                why+=": the limit found is the load tool's or Redis's, not the gateway's"
            fi
            break
        fi
        if [ -n "$failed" ]; then
            why="at $r/s: $failed"
            break
        fi
        held=$r
        r=$((r * 2))
    done
    [ -n "$why" ] || why="at RAMP_MAX ($RAMP_MAX/s), without failing"
    echo "ramp: highest rate that held: ${held:-none}${held:+/s} (10 clients, via $EVENT_VIA); stopped $why" |
        tee -a "$OUT/ramp.txt" >&2
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
    rates) # Few clients, many events: the per-event cost and the tail as the rate grows.
        for r in 2000 20000 50000; do
            run "events-$r" --clients 10 --rate "$r" --via "$EVENT_VIA" --duration "$((RATE_SECS + WARMUP))"
        done
        run events-100000 --clients 10 --rate 100000 --via "$EVENT_VIA" --duration "$((FAST_SECS + WARMUP))" ;;
    burst) # Everything at once: bursts should cost latency, not connections,
        # and clients whose filter matches none of it should not notice.
        run burst --clients 10 --burst "$BURST" --via "$EVENT_VIA" --drain "$BURST_DRAIN" \
            --filtered-clients "$FILTERED" --filtered-types intervention ;;
    ramp) # Double the rate until a run loses events or its p99 passes RAMP_P99_MS.
        ramp ;;
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

# One table of every run (in the order they ran), one of the bursts, the ramp's verdict.
mapfile -t RESULTS < <(ls -1tr "$OUT"/*.json 2>/dev/null | grep -v '/profile\.json$' || true)
{
    echo "| run | clients | ev/s | published/s | delivered/s | lost | dup | out of order | closed | p50 ms | p99 ms | p999 ms | max ms | gateway CPU s | gateway CPU % | deliveries / gateway CPU-s | slow-client disconnects | fan-out gaps | bus reconnects | gateway RSS connected | KiB / conn | conn/s |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for f in "${RESULTS[@]}"; do
        jq -r '
          def r(x): if x == null then "–" else (x * 100 | round / 100 | tostring) end;
          def i(x): if x == null then "–" else (x | round | tostring) end;
          def v(x): if x == null then "–" else (x | tostring) end;
          (.processes[] | select(.name == "gateway")) as $g
          | "| \(.label) | \(.connect.connected) | \(if (.config.burst // 0) > 0 then "burst \(.config.burst)" else .config.rate end) | \(i(.published.rate_achieved))\(if .published.held == false then " (not held)" else "" end) | \(i(.window.per_second)) | \(.lost) | \(.duplicated) | \(v(.order_violations))\(if (.published.pipelines // 0) == 0 and (.order_violations // 0) > 0 then " (publisher unordered)" else "" end) | \(.disconnected) | \(r(.latency.p50_ms)) | \(r(.latency.p99_ms)) | \(r(.latency.p999_ms)) | \(r(.latency.max_ms)) | \(r($g.cpu_s)) | \(i(if $g.cpu_s then $g.cpu_s / .window.seconds * 100 else null end)) | \(i($g.deliveries_per_cpu_s)) | \(v(.node.slow_client_disconnects)) | \(v(.node.fanout_gaps)) | \(v(.node.bus_reconnects)) | \(if $g.rss_connected then ($g.rss_connected / 1048576 * 10 | round / 10 | tostring) + " MiB" else "–" end) | \(r(if $g.rss_per_connection then $g.rss_per_connection / 1024 else null end)) | \(i(.connect.rate_per_s)) |"
        ' "$f"
    done
    BURSTS=()
    for f in "${RESULTS[@]}"; do
        jq -e '(.config.burst // 0) > 0' "$f" >/dev/null && BURSTS+=("$f")
    done
    if [ ${#BURSTS[@]} -gt 0 ]; then
        echo
        echo "| burst | events | readers | filtered clients | published in ms | last reader had all, ms | lost | dup | out of order | readers closed | filtered closed | filtered frames | p50 ms | p99 ms | max ms | gateway CPU s | deliveries / gateway CPU-s | slow-client disconnects | fan-out gaps | bus reconnects |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        for f in "${BURSTS[@]}"; do
            jq -r '
              def r(x): if x == null then "–" else (x * 100 | round / 100 | tostring) end;
              def i(x): if x == null then "–" else (x | round | tostring) end;
              def v(x): if x == null then "–" else (x | tostring) end;
              (.processes[] | select(.name == "gateway")) as $g
              | "| \(.label) | \(.burst.events) | \(.burst.readers) | \(.filtered.connected) | \(i(if .published.span_s then .published.span_s * 1000 else null end)) | \(if .burst.last_complete_ms then i(.burst.last_complete_ms) else "not all (\(.burst.complete) of \(.burst.readers))" end) | \(.lost) | \(.duplicated) | \(.order_violations) | \(.disconnected) | \(.filtered.closed) | \(.filtered.received) | \(r(.latency.p50_ms)) | \(r(.latency.p99_ms)) | \(r(.latency.max_ms)) | \(r($g.cpu_s)) | \(i($g.deliveries_per_cpu_s)) | \(v(.node.slow_client_disconnects)) | \(v(.node.fanout_gaps)) | \(v(.node.bus_reconnects)) |"
            ' "$f"
        done
    fi
    if [ -s "$OUT/ramp.txt" ]; then
        echo
        tail -n 1 "$OUT/ramp.txt"
    fi
} >"$OUT/summary.md"
echo "bench: results in $OUT" >&2
cat "$OUT/summary.md"
