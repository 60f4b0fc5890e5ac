#!/usr/bin/env python3
"""What each kind of abuse costs one gateway node: CPU-seconds per 1,000
abusive requests and memory, measured from /proc on a release build.

    cargo build --release -p gateway -p publisher && python3 bench/abuse.py

Starts its own redis-server and node on free loopback ports (never 6379),
runs each abuse in turn against the node, and prints one table row each.
Standard library only.
"""
import base64
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
GATEWAY = os.environ.get("GATEWAY_BIN", os.path.join(TARGET, "release", "gateway"))
PUBLISHER = os.environ.get("PUBLISHER_BIN", os.path.join(TARGET, "release", "publisher"))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def handshake(port, query=""):
    key = base64.b64encode(os.urandom(16)).decode()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(
        f"GET /ws/dashboard{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    # What came after the response head (the greeting frame, often).
    head, _, rest = head.partition(b"\r\n\r\n")
    return s, head, rest


def drain(s):
    s.settimeout(2)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()


def measure(name, pid, n, run):
    cpu0, rss0 = cpu_seconds(pid), rss_kib(pid)
    started = time.time()
    note = run(n)
    wall = time.time() - started
    cpu = cpu_seconds(pid) - cpu0
    print(f"| {name} | {n} | {cpu / n * 1000:.3f} | {rss_kib(pid) - rss0:+d} | {wall:.1f} | {note} |")


def main():
    redis_port, port = free_port(), free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    wait_port(redis_port)
    env = dict(
        os.environ,
        BIND_ADDR=f"127.0.0.1:{port}",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}",
        HANDSHAKE_TIMEOUT_MS="1000",
        RUST_LOG="error",
    )
    node = subprocess.Popen([GATEWAY], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_port(port)
        time.sleep(0.5)
        # The position before the history's 1,000 events: where resumes start.
        s, _, greeting = handshake(port)
        s.settimeout(2)
        while b'"analytics_update"' not in greeting:
            greeting += s.recv(65536)
        s.close()
        subprocess.run(
            [PUBLISHER, "simulate", "--rate", "100000", "--count", "1000", "--seed", "1"],
            env=dict(os.environ, REDIS_URL=env["REDIS_URL"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print("| abuse | requests | node CPU-ms per request | RSS change (KiB) | wall (s) | answer |")
        print("|---|---|---|---|---|---|")

        types = "?types=" + ",".join(["alert"] * 10000)

        def huge_types(n):
            codes = set()
            for _ in range(n):
                s, head, _ = handshake(port, types)
                codes.add(head.split(b" ")[1].decode() if head else "closed")
                s.close()
            return "status " + ",".join(sorted(codes))

        measure("60 KB `?types=` handshake (10,000 entries)", node.pid, 1000, huge_types)

        def ping_flood(n):
            ping = bytes([0x89, 0x80, 0, 0, 0, 0])
            closes = 0
            for _ in range(n):
                s, _, _ = handshake(port)
                try:
                    s.sendall(ping * 200)
                except OSError:
                    pass
                data = b""
                s.settimeout(2)
                try:
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                        if b"\x88" in data:
                            closes += 1
                            break
                except OSError:
                    pass
                s.close()
            return f"{closes} closed with a close frame"

        measure("200-ping flood per connection", node.pid, 200, ping_flood)

        def silent(n):
            socks = []
            for _ in range(n):
                try:
                    socks.append(socket.create_connection(("127.0.0.1", port)))
                except OSError:
                    break
            time.sleep(0.2)
            rss = rss_kib(node.pid)
            time.sleep(1.5)
            closed = 0
            for s in socks:
                s.settimeout(0.5)
                try:
                    if s.recv(1) == b"":
                        closed += 1
                except OSError:
                    closed += 1
                s.close()
            return f"{closed}/{len(socks)} closed by HANDSHAKE_TIMEOUT_MS (1 s); RSS while open {rss} KiB"

        measure("silent connection (no request head)", node.pid, 120, silent)

        position = greeting.split(b'"id":"')[1].split(b'"')[0].decode() if b'"id":"' in greeting else None

        def resumes(n):
            done = 0
            for _ in range(n):
                s, _, data = handshake(port, f"?since={position}")
                s.settimeout(5)
                try:
                    while b'"recovery"' not in data:
                        chunk = s.recv(1 << 20)
                        if not chunk:
                            break
                        data += chunk
                    done += b'"recovery"' in data
                except OSError:
                    pass
                s.close()
            return f"{done} replays of 1,000 events completed"

        if position:
            measure("resume replaying 1,000 events", node.pid, 100, resumes)
    finally:
        node.terminate()
        redis.terminate()
        node.wait()
        redis.wait()


if __name__ == "__main__":
    main()
