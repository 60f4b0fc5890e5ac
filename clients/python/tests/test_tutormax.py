"""TutorMax's ConnectionManager calls, against a real Redis (the same calls
against real gateway nodes are in test_gateway.py)."""

import asyncio
import json
import time

import pytest

import dashboard_gateway
from conftest import free_port, history, with_id
from dashboard_gateway import NotOnABusError, RedisUnavailableError, Settings
from dashboard_gateway import tutormax
from dashboard_gateway.tutormax import ConnectionManager, get_connection_manager


@pytest.fixture
def manager_from_env(fresh, monkeypatch):
    monkeypatch.setenv("REDIS_URL", fresh.url)
    monkeypatch.setattr(tutormax, "_manager", None)
    manager = get_connection_manager()
    yield manager
    asyncio.run(manager.aclose())


def test_get_connection_manager_is_one_manager_from_the_environment(manager_from_env, fresh):
    assert dashboard_gateway.get_connection_manager() is manager_from_env
    assert manager_from_env.settings.redis_url == fresh.url


def test_broadcast_publishes_through_the_history(manager_from_env, fresh):
    async def run():
        return await manager_from_env.broadcast("alert", {"tutor_id": "t-17", "severity": "critical"})

    position = asyncio.run(run())
    ((sid, envelope),) = history(fresh)
    assert position.endswith(":" + sid)
    assert json.loads(envelope)["data"] == {"tutor_id": "t-17", "severity": "critical"}
    assert json.loads(with_id(position, envelope))["id"] == position


def test_broadcast_works_from_one_event_loop_after_another(manager_from_env, fresh):
    # A process-wide manager outlives event loops (one per test, asyncio.run).
    for n in range(3):
        asyncio.run(manager_from_env.broadcast("metrics_update", {"n": n}))
    assert fresh.client.xlen("ws:history") == 3


def test_get_connection_count_is_a_plain_call_summing_live_nodes(manager_from_env, fresh):
    now = int(time.time() * 1000)
    for node_id, count in (("a", 2), ("b", 5)):
        fresh.client.zadd("{ws:nodes}", {node_id: now})
        fresh.client.set(f"{{ws:nodes}}:{node_id}", json.dumps({"node_id": node_id, "active_connections": count}))
    assert manager_from_env.get_connection_count() == 7  # no await, as TutorMax calls it
    assert asyncio.run(manager_from_env.connection_count()) == 7
    assert {n["node_id"] for n in manager_from_env.cluster_nodes()} == {"a", "b"}


def test_per_socket_calls_say_what_to_do_instead():
    manager = ConnectionManager(Settings())
    with pytest.raises(NotOnABusError, match=r"connect to the gateway's /ws/dashboard"):
        manager.connect(object())
    with pytest.raises(NotOnABusError, match=r"connect to the gateway's /ws/dashboard"):
        manager.disconnect(object())
    for send in (manager.send_personal_message, manager.send_personal):
        with pytest.raises(NotOnABusError, match=r"no per-socket send on a bus.*broadcast"):
            send({"type": "x"}, object())
    with pytest.raises(NotImplementedError):
        manager.active_connections


def test_an_unreachable_redis_fails_the_count_loudly():
    manager = ConnectionManager(Settings(redis_url=f"redis://:hunter2@127.0.0.1:{free_port()}/0"))
    with pytest.raises(RedisUnavailableError) as caught:
        manager.get_connection_count()
    assert "hunter2" not in str(caught.value)
