#!/usr/bin/env bash
# How cost grows with nodes: 1, 2, then 3 gateway nodes on one Redis, the
# same load spread over them, everything on 127.0.0.1 (issue #20).
#
#   bench/nodes.sh                     # NODES="1 2 3", both loads below
#   NODES="1 3" DURATION=10 bench/nodes.sh
#
# Two loads per node count, each on fresh nodes:
#   fanout  CLIENTS (1,500) dashboards × RATE (100) events/s, spread
#           round-robin over the nodes: the per-node cost of deliveries.
#   events  EVENT_CLIENTS (30) dashboards × EVENT_RATE (2,000) events/s: the
#           per-event cost, on every node (each decodes every event) and in
#           Redis (the publish script, and one pub/sub delivery per node).
# Each run's loadtest watches every node and redis-server (CPU from /proc),
# and `INFO commandstats` is read before and after, so Redis's cost per event
# is split into the publish script and the rest.
#
# Writes bench/results/nodes-<time>/ (or OUT): <load>-<n>.txt/.json (the
# loadtest report), redis-<load>-<n>.txt (Redis's command stats, before and
# after), summary.md (one table). Knobs: NODES, CLIENTS, RATE, EVENT_CLIENTS,
# EVENT_RATE, DURATION (s, 15), WARMUP (s, 3), THREADS (1), OUT.
# Nothing here asserts a number: it measures and reports (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=${NODES:-1 2 3}
CLIENTS=${CLIENTS:-1500}
RATE=${RATE:-100}
EVENT_CLIENTS=${EVENT_CLIENTS:-30}
EVENT_RATE=${EVENT_RATE:-2000}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
THREADS=${THREADS:-1}
OUT=${OUT:-bench/results/nodes-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_prepare nodes redis-server redis-cli curl jq python3
start_redis

NODE_PIDS=()
URLS=()
start_nodes() { # count label
    local i port
    NODE_PIDS=()
    URLS=()
    for i in $(seq "$1"); do
        port=$(free_port)
        env REDIS_URL="$REDIS_URL" BIND_ADDR="127.0.0.1:$port" NODE_ID="node-$i" \
            RUST_LOG=warn "$BIN/gateway" 2>"$OUT/$2-node-$i.log" &
        NODE_PIDS+=("$!")
        PIDS+=("$!")
        URLS+=("ws://127.0.0.1:$port/ws/dashboard")
        for _ in $(seq 100); do
            curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
            sleep 0.1
        done
    done
}

stop_nodes() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${NODE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}

# Redis's calls and CPU microseconds so far, per command: "name calls usec".
redis_stats() {
    redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' |
        sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),usec=\([0-9]*\),.*/\1 \2 \3/p'
}

run() { # label nodes clients rate
    local label=$1 n=$2 clients=$3 rate=$4 i watch=()
    echo "nodes: --- $label: $n node(s), $clients clients × $rate ev/s" >&2
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    start_nodes "$n" "$label"
    for i in "${!NODE_PIDS[@]}"; do watch+=(--watch-pid "node-$((i + 1))=${NODE_PIDS[$i]}"); done
    redis_stats >"$OUT/redis-$label.before"
    "$BIN/loadtest" --url "$(IFS=,; echo "${URLS[*]}")" --redis-url "$REDIS_URL" \
        --clients "$clients" --rate "$rate" --payload-bytes 100 \
        --duration "$((DURATION + WARMUP))" --warmup "$WARMUP" --threads "$THREADS" \
        --connect-concurrency 128 --source-ip 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5 \
        "${watch[@]}" --watch-pid "redis=$REDIS_PID" \
        --label "$label" --json "$OUT/$label.json" | tee "$OUT/$label.txt"
    redis_stats >"$OUT/redis-$label.after"
    stop_nodes
}

for n in $NODES; do
    run "fanout-$n" "$n" "$CLIENTS" "$RATE"
    run "events-$n" "$n" "$EVENT_CLIENTS" "$EVENT_RATE"
done

# One table: the nodes' summed CPU, the busiest node, Redis's CPU per event
# (whole process, from /proc) and its command time per event (INFO
# commandstats: the publish script, and everything else).
python3 - "$OUT" $NODES <<'PY'
import json, sys, os
out, counts = sys.argv[1], sys.argv[2:]
def stats(path):
    d = {}
    for line in open(path):
        name, calls, usec = line.split()
        d[name] = (int(calls), int(usec))
    return d
rows = ["| load | nodes | clients | ev/s | delivered/s | lost | p99 ms | nodes' CPU % (sum) | busiest node CPU % | deliveries per node-CPU-s | node CPU µs per event per node | Redis CPU % | Redis CPU µs per event | of which publish script µs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for load in ("fanout", "events"):
    for n in counts:
        label = f"{load}-{n}"
        path = os.path.join(out, label + ".json")
        if not os.path.exists(path):
            continue
        r = json.load(open(path))
        secs = r["window"]["seconds"]
        nodes = [p for p in r["processes"] if p["name"].startswith("node-")]
        redis = next(p for p in r["processes"] if p["name"] == "redis")
        node_cpu = sum(p["cpu_s"] for p in nodes)
        busiest = max(p["cpu_s"] for p in nodes)
        delivered = r["window"]["delivered"]
        events = r["config"]["rate"] * secs
        before, after = stats(os.path.join(out, f"redis-{label}.before")), stats(os.path.join(out, f"redis-{label}.after"))
        script = sum(after[k][1] - before.get(k, (0, 0))[1] for k in after if k in ("evalsha", "eval", "fcall"))
        rows.append(
            f"| {load} | {n} | {r['connect']['connected']} | {r['config']['rate']} | {r['window']['per_second']:,.0f} | {r['lost']} "
            f"| {r['latency']['p99_ms']:.1f} | {node_cpu / secs * 100:.0f} | {busiest / secs * 100:.0f} "
            f"| {delivered / node_cpu:,.0f} | {node_cpu / events / int(n) * 1e6:.1f} "
            f"| {redis['cpu_s'] / secs * 100:.0f} | {redis['cpu_s'] / events * 1e6:.1f} "
            f"| {script / (r['published']['ok'] or 1):.1f} |")
open(os.path.join(out, "summary.md"), "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
PY
echo "nodes: results in $OUT" >&2
