"""The test kit: real `redis-server` and gateway processes on free loopback
ports, and a WebSocket client. Nothing here touches a server on a standard
port.

Env: `GATEWAY_BIN`, `PUBLISHER_BIN` (default `$CARGO_TARGET_DIR` or
`<repo>/target`, then `debug/gateway`, `debug/publisher`), `REDIS_SERVER_BIN`
(default `redis-server`).
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import redis

REPO = Path(__file__).resolve().parents[3]
PACKAGE_DIR = REPO / "clients" / "python"
SCRIPT_SOURCE = REPO / "publisher" / "lua" / "publish.lua"


def _target_dir() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return target if target.is_absolute() else REPO / target


def gateway_bin() -> str:
    return os.environ.get("GATEWAY_BIN") or str(_target_dir() / "debug" / "gateway")


def publisher_bin() -> str:
    return os.environ.get("PUBLISHER_BIN") or str(_target_dir() / "debug" / "publisher")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Polls `check()` until it returns something truthy; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class RedisServer:
    """A throwaway `redis-server` with no persistence, on a free port."""

    def __init__(self) -> None:
        binary = os.environ.get("REDIS_SERVER_BIN", "redis-server")
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is not installed (apt-get install -y redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis(port=self.port, decode_responses=True)

        def up() -> bool:
            try:
                return bool(self.client.ping())
            except redis.exceptions.ConnectionError:
                return False

        wait_until(up, 10, f"redis-server on port {self.port}")

    def command_calls(self, command: str) -> int:
        """How often `command` ran (INFO commandstats)."""
        stats = self.client.info("commandstats")
        entry = stats.get(f"cmdstat_{command.lower()}")
        return int(entry["calls"]) if entry else 0

    def stop(self) -> None:
        self.client.close()
        self._proc.terminate()
        self._proc.wait(10)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


class Gateway:
    """A real gateway process (the Rust binary) on a free port, ready."""

    def __init__(self, redis_url: str, node_id: str, **env: str) -> None:
        binary = gateway_bin()
        if not os.access(binary, os.X_OK):
            pytest.fail(f"gateway binary {binary} is missing: build it (cargo build) or set GATEWAY_BIN")
        self.node_id = node_id
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws/dashboard"
        self._log = tempfile.NamedTemporaryFile(prefix=f"gateway-{node_id}-", suffix=".log", delete=False)
        full_env = dict(os.environ)
        full_env.update(
            BIND_ADDR=f"127.0.0.1:{self.port}",
            REDIS_URL=redis_url,
            NODE_ID=node_id,
            RUST_LOG=os.environ.get("GATEWAY_RUST_LOG", "warn"),
        )
        full_env.update(env)
        self._proc = subprocess.Popen([binary], env=full_env, stdout=self._log, stderr=self._log)
        wait_until(self._ready, 20, f"gateway {node_id} /readyz")

    def _ready(self) -> bool:
        if self._proc.poll() is not None:
            pytest.fail(f"gateway {self.node_id} exited with {self._proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(self.base + "/readyz", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def status(self) -> Dict[str, Any]:
        with urllib.request.urlopen(self.base + "/ws/status", timeout=5) as resp:
            return json.loads(resp.read())

    def log(self) -> str:
        with open(self._log.name, encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
        os.unlink(self._log.name)


class Dashboard:
    """A WebSocket client of `/ws/dashboard` that reads JSON frames."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        # Entered by hand (not `with`): works across websockets versions,
        # whose plain connect() changed meaning.
        self._connection = connect(url, open_timeout=10, close_timeout=2, max_size=None)
        self.ws = self._connection.__enter__()

    def recv(self, timeout: float = 5.0) -> Dict[str, Any]:
        return json.loads(self.recv_text(timeout))

    def recv_text(self, timeout: float = 5.0) -> str:
        message = self.ws.recv(timeout=timeout)
        assert isinstance(message, str), f"binary frame: {message!r}"
        return message

    def recv_texts(self, count: int, timeout: float = 5.0) -> List[str]:
        return [self.recv_text(timeout) for _ in range(count)]

    def nothing_more(self, within: float = 0.3) -> bool:
        try:
            extra = self.ws.recv(timeout=within)
        except TimeoutError:
            return True
        pytest.fail(f"unexpected frame: {extra!r}")

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


def publish_with_cli(redis_url: str, message_type: str, data: str, **env: str) -> str:
    """`publisher send` (the Rust CLI); returns the id it prints."""
    binary = publisher_bin()
    if not os.access(binary, os.X_OK):
        pytest.fail(f"publisher binary {binary} is missing: build it (cargo build) or set PUBLISHER_BIN")
    full_env = dict(os.environ, REDIS_URL=redis_url, RUST_LOG="warn")
    full_env.update(env)
    done = subprocess.run(
        [binary, "send", "--type", message_type, "--data", data],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, f"publisher send failed: {done.stderr}"
    return done.stdout.strip()


def history(server: RedisServer, prefix: str = "ws") -> List[Any]:
    """The history stream's entries: [(stream id, envelope text)]."""
    return [(sid, fields["e"]) for sid, fields in server.client.xrange(f"{prefix}:history")]


def with_id(position: str, envelope: str) -> str:
    """What a client receives: the envelope with `"id"` spliced in front."""
    return '{"id":"%s",%s' % (position, envelope[1:])


@pytest.fixture
def fresh(redis_server: RedisServer) -> RedisServer:
    """The module's Redis, emptied."""
    redis_server.client.flushall()
    return redis_server
