"""REDIS_TLS_* and REDIS_SENTINELS / REDIS_SENTINEL_MASTER, read as the Rust
CLI reads them: publishing through a real TLS redis-server (with and without
client certificates), through Sentinels across a failover, and every
misconfiguration refused at start, naming the variable."""

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from conftest import free_port, wait_until
from dashboard_gateway import AsyncPublisher, ConfigError, Publisher, RedisUnavailableError, Settings
from dashboard_gateway.tutormax import ConnectionManager

REDIS_SERVER = os.environ.get("REDIS_SERVER_BIN", "redis-server")


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client one."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed (apt-get install -y openssl)")
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=test-ca", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                 "-extfile", f"{name}.ext", cwd=d)
    return d


class Proc:
    """A redis-server (or Sentinel) process on a free port."""

    def __init__(self, args, port, client):
        self.port = port
        self.proc = subprocess.Popen([REDIS_SERVER, *args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.client = client

        def up():
            try:
                return bool(self.client.ping())
            except redis.exceptions.RedisError:
                return False

        wait_until(up, 10, f"redis-server on port {port}")

    def stop(self, kill=False):
        self.client.close()
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            self.proc.wait(10)


def tls_server(certs, auth_clients):
    port = free_port()
    args = ["--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--tls-cert-file", str(certs / "server.crt"),
            "--tls-key-file", str(certs / "server.key"),
            "--tls-ca-cert-file", str(certs / "ca.crt"),
            "--tls-auth-clients", "yes" if auth_clients else "no"]
    client = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"),
                         ssl_certfile=str(certs / "client.crt"),
                         ssl_keyfile=str(certs / "client.key"), decode_responses=True)
    return Proc(args, port, client)


def events(client, prefix="ws"):
    return [fields["e"] for _, fields in client.xrange(f"{prefix}:history")]


def test_publishing_over_tls_with_a_private_ca(certs):
    server = tls_server(certs, auth_clients=False)
    try:
        env = {"REDIS_URL": f"rediss://127.0.0.1:{server.port}",
               "REDIS_TLS_CA_FILE": str(certs / "ca.crt")}
        with Publisher.from_env(env) as publisher:
            publisher.alert({"over": "tls"})
            assert "127.0.0.1" in repr(publisher)

        async def run():
            async with AsyncPublisher.from_env(env) as publisher:
                await publisher.alert({"over": "tls", "asyncio": True})

        asyncio.run(run())
        got = events(server.client)
        assert len(got) == 2 and '"over":"tls"' in got[0] and '"asyncio":true' in got[1]
        assert ConnectionManager(Settings.from_env(env)).get_connection_count() == 0

        # Without the CA the server's certificate is not trusted: no publish.
        with Publisher(f"rediss://127.0.0.1:{server.port}") as untrusting:
            with pytest.raises(RedisUnavailableError):
                untrusting.alert({"over": "tls"})
        assert len(events(server.client)) == 2
    finally:
        server.stop()


def test_mutual_tls_needs_the_client_certificate(certs):
    server = tls_server(certs, auth_clients=True)
    try:
        url = f"rediss://localhost:{server.port}"
        ca_only = {"REDIS_URL": url, "REDIS_TLS_CA_FILE": str(certs / "ca.crt")}
        with Publisher.from_env(ca_only) as publisher:
            with pytest.raises(RedisUnavailableError):
                publisher.alert({"no": "client certificate"})
        env = dict(ca_only, REDIS_TLS_CERT_FILE=str(certs / "client.crt"),
                   REDIS_TLS_KEY_FILE=str(certs / "client.key"))
        with Publisher.from_env(env) as publisher:
            publisher.alert({"mutual": "tls"})

        async def run():
            async with AsyncPublisher.from_env(env) as publisher:
                await publisher.alert({"mutual": "tls", "asyncio": True})

        asyncio.run(run())
        got = events(server.client)
        assert len(got) == 2 and all('"mutual":"tls"' in e for e in got)
    finally:
        server.stop()


def _sentinel_conf(tmp_path: Path, port: int, master_port: int) -> Path:
    conf = tmp_path / f"sentinel-{port}.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
        "sentinel down-after-milliseconds mymaster 500\n"
        "sentinel failover-timeout mymaster 2000\n"
    )
    return conf


def test_publishing_through_sentinels_follows_a_failover(tmp_path):
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    master = Proc(["--port", str(master_port), *common], master_port,
                  redis.Redis(port=master_port, decode_responses=True))
    replica = Proc(["--port", str(replica_port), "--replicaof", "127.0.0.1", str(master_port),
                    *common], replica_port, redis.Redis(port=replica_port, decode_responses=True))
    sentinel = None
    try:
        wait_until(lambda: replica.client.info("replication").get("master_link_status") == "up",
                   10, "the replica in sync")
        sentinel = Proc([str(_sentinel_conf(tmp_path, sentinel_port, master_port)), "--sentinel"],
                        sentinel_port, redis.Redis(port=sentinel_port, decode_responses=True))
        wait_until(lambda: sentinel.client.sentinel_slaves("mymaster"), 10,
                   "the Sentinel to know the replica")
        env = {"REDIS_SENTINELS": f"127.0.0.1:{sentinel_port}",
               "REDIS_SENTINEL_MASTER": "mymaster"}
        publisher = Publisher.from_env(env)
        assert "master mymaster via sentinels" in repr(publisher)
        first = publisher.alert({"n": 1})
        assert len(events(master.client)) == 1
        wait_until(lambda: len(events(replica.client)) == 1, 5, "the event replicated")
        manager = ConnectionManager(Settings.from_env(env))
        assert manager.get_connection_count() == 0

        master.stop(kill=True)
        deadline, second, failures = time.monotonic() + 15, None, 0
        while second is None and time.monotonic() < deadline:
            try:
                second = publisher.alert({"n": 2})
            except RedisUnavailableError as err:
                failures += 1
                assert "mymaster" in str(err)
                time.sleep(0.2)
        assert second is not None, "no publish succeeded after the failover"
        assert replica.client.info("replication")["role"] == "master"
        assert [e.count('"n":') for e in events(replica.client)] == [1, 1]
        assert second.split(":")[0] == first.split(":")[0], "one history, one epoch"
        assert manager.get_connection_count() == 0, "the count follows the new master"

        async def run():
            async with AsyncPublisher.from_env(env) as publisher:
                await publisher.alert({"n": 3})

        asyncio.run(run())
        assert len(events(replica.client)) == 3
        publisher.close()
    finally:
        for proc in (sentinel, replica, master):
            if proc is not None:
                proc.stop()


@pytest.fixture
def files(certs, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    return {"ca": str(certs / "ca.crt"), "cert": str(certs / "client.crt"),
            "key": str(certs / "client.key"), "junk": str(junk),
            "missing": str(tmp_path / "nowhere.pem")}


@pytest.mark.parametrize(
    "env, message",
    [
        ({"REDIS_URL": "redis://a:1", "REDIS_SENTINELS": "b:26379",
          "REDIS_SENTINEL_MASTER": "mymaster"},
         "set only one of REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS "
         "(found REDIS_URL and REDIS_SENTINELS)"),
        ({"REDIS_SENTINELS": "b:26379"}, "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_MASTER": "mymaster"},
         "REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not"),
        ({"REDIS_SENTINELS": "sentinel:hunter2@b:26379", "REDIS_SENTINEL_MASTER": "m"},
         'REDIS_SENTINELS entry "sentinel:***@b:26379" is not a Sentinel address'),
        ({"REDIS_SENTINELS": "just-a-host", "REDIS_SENTINEL_MASTER": "m"},
         'REDIS_SENTINELS entry "just-a-host" is not a Sentinel address'),
        ({"REDIS_SENTINELS": "unix:///tmp/s.sock", "REDIS_SENTINEL_MASTER": "m"},
         "REDIS_SENTINELS entry"),
        ({"REDIS_SENTINELS": "redis://a:1,rediss://b:2", "REDIS_SENTINEL_MASTER": "m"},
         "REDIS_SENTINELS mixes redis:// and rediss:// entries"),
        ({"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "my master"},
         'REDIS_SENTINEL_MASTER "my master" is not a master name'),
        ({"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "http://u:hunter2@m"},
         'REDIS_SENTINEL_MASTER "http://u:***@m" is not a master name'),
        ({"REDIS_URL": "rediss://x:1", "REDIS_TLS_CA_FILE": "{missing}"},
         'REDIS_TLS_CA_FILE "{missing}": cannot be read'),
        ({"REDIS_URL": "rediss://x:1", "REDIS_TLS_CA_FILE": "{junk}"},
         'REDIS_TLS_CA_FILE "{junk}": holds no PEM certificate'),
        ({"REDIS_URL": "rediss://x:1", "REDIS_TLS_CERT_FILE": "{cert}"},
         "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together"),
        ({"REDIS_URL": "rediss://x:1", "REDIS_TLS_KEY_FILE": "{key}"},
         "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together"),
        ({"REDIS_URL": "rediss://x:1", "REDIS_TLS_CERT_FILE": "{junk}",
          "REDIS_TLS_KEY_FILE": "{key}"},
         'REDIS_TLS_CERT_FILE "{junk}": holds no PEM certificate'),
        ({"REDIS_URL": "rediss://x:1", "REDIS_TLS_CERT_FILE": "{cert}",
          "REDIS_TLS_KEY_FILE": "{cert}"},
         'REDIS_TLS_KEY_FILE "{cert}": holds no PEM private key'),
        ({"REDIS_URL": "redis://:hunter2@x:1", "REDIS_TLS_CA_FILE": "{ca}"},
         "REDIS_TLS_CA_FILE is set but no Redis address uses TLS (use rediss:// URLs)"),
        ({"REDIS_TLS_CERT_FILE": "{cert}", "REDIS_TLS_KEY_FILE": "{key}"},
         "REDIS_TLS_CERT_FILE is set but no Redis address uses TLS"),
        ({"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_TLS_CA_FILE": "{ca}"},
         "REDIS_TLS_CA_FILE is set but no Redis address uses TLS"),
        ({"REDIS_CLUSTER_NODES": "redis://a:1"},
         "REDIS_CLUSTER_NODES is set, but the Python package does not read it: "
         "Redis Cluster is not supported from Python"),
    ],
)
def test_misconfigurations_are_refused_at_start(env, message, files):
    env = {name: value.format(**files) for name, value in env.items()}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message.format(**files)), str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_sentinel_settings_mirror_the_rust_cli(files):
    target = Settings.from_env({
        "REDIS_SENTINELS": "redis://sentinel:pw1@a:26379, redis://b:26380",
        "REDIS_SENTINEL_MASTER": "rediss://app:pw2@mymaster",
        "REDIS_TLS_CA_FILE": files["ca"],
    }).sentinel
    assert target.sentinels == (("a", 26379), ("b", 26380))
    assert target.sentinel_auth == ("sentinel", "pw1") and not target.sentinel_tls
    assert target.master == "mymaster" and target.master_tls
    assert target.master_auth == ("app", "pw2")
    assert "pw1" not in repr(target) and "pw2" not in repr(target)
    assert target.shown == "master mymaster via sentinels redis://sentinel:***@a:26379,redis://b:26380"
    # A bare name: the master shares the Sentinels' scheme and credentials.
    shared = Settings(redis_sentinels="rediss://u:pw@a:1", redis_sentinel_master="m",
                      redis_tls_ca_file=files["ca"])
    assert shared.sentinel.master_tls and shared.sentinel.master_auth == ("u", "pw")
    assert "pw" not in repr(shared).replace("redis_sentinels", "")
    assert shared.redis_url is None
    with pytest.raises(ConfigError):
        Settings("redis://a:1", redis_sentinels=("b:1",), redis_sentinel_master="m")
