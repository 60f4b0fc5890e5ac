# Shared setup of the benchmark scripts (sourced, not run). Needs OUT set.

# bench_prepare NAME TOOL...: checks the tools, builds the release binaries
# (gateway and loadtest; BUILD=0 takes them as they are, e.g. on a shared box
# where they were just built), records what is measured in
# $OUT/version.txt, raises the open-files limit. BIN is target/release, or
# $CARGO_TARGET_DIR/release when that is set.
bench_prepare() {
    local name=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$name: $tool is needed" >&2; exit 2; }
    done
    BIN=${CARGO_TARGET_DIR:-target}/release
    if [ "${BUILD:-1}" != 0 ]; then
        echo "$name: building release binaries" >&2
        cargo build --release --quiet -p gateway -p loadtest
    fi
    for tool in gateway loadtest; do
        [ -x "$BIN/$tool" ] || { echo "$name: $BIN/$tool is missing (BUILD=0?)" >&2; exit 2; }
    done
    # What was measured: the commit, and a hash of any uncommitted change to
    # the crates on the path.
    {
        echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
        echo "uncommitted-diff $(git diff HEAD -- gateway shared publisher 2>/dev/null | sha1sum | cut -c1-12)"
        echo "date $(date -u +%FT%TZ)"
        echo "cpus $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
        echo "kernel $(uname -r)"
    } >"$OUT/version.txt"
    # Both the gateway and the load tool hold one descriptor per connection.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Every process started here is stopped on exit.
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# start_redis: a redis-server on a free loopback port (never 6379), no
# persistence; sets REDIS_PORT, REDIS_PID, REDIS_URL.
start_redis() {
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --maxclients 1000 --logfile "$OUT/redis.log" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
}

# node_counter FILE NAME: the value of counter NAME in a /metrics dump, summed
# over its labels; 0 when absent (a counter appears once it first moves).
node_counter() {
    awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d\n", s }' "$1"
}
