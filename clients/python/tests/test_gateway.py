"""Python-published events through real gateway nodes to real WebSocket
clients: order and ids alongside the Rust CLI, resume with `?since=`, the
TutorMax drop-in's broadcast and cluster count, and the keyed state a
dashboard opening with `?state=1` gets."""

import asyncio
import json
import time
import urllib.parse

import pytest

from conftest import Dashboard, Gateway, history, publish_with_cli, wait_until, with_id
from dashboard_gateway import AsyncPublisher, NotOnABusError, Publisher, RawJSON
from dashboard_gateway import tutormax

pytestmark = pytest.mark.gateway


@pytest.fixture(scope="module")
def nodes(redis_server):
    started = []
    try:
        for node_id in ("py-a", "py-b"):
            started.append(Gateway(redis_server.url, node_id))
        yield started
    finally:
        for node in started:
            node.stop()


def connect(url):
    dashboard = Dashboard(url)
    greeting = dashboard.recv()
    assert greeting["type"] == "analytics_update", greeting
    return dashboard, greeting


def stream_order(position):
    epoch, sid = position.split(":")
    ms, seq = sid.split("-")
    return epoch, int(ms), int(seq)


def test_python_and_cli_events_reach_every_node_in_one_order(redis_server, nodes):
    a, b = nodes
    dashboards = [connect(a.ws_url)[0], connect(b.ws_url)[0]]
    publisher = Publisher(redis_server.url)

    async def publish_async(message_type, data):
        async with AsyncPublisher(redis_server.url) as aio:
            return await aio.publish(message_type, data)

    url = redis_server.url
    ids = [
        publisher.alert({"from": "python", "n": 1}),
        publish_with_cli(url, "alert", '{"from":"cli","n":2}'),
        publisher.metrics_update({"from": "python", "n": 3, "tutor_id": "t-1"}),
        asyncio.run(publish_async("test_message", RawJSON('{"from": "python-async", "n": 4, "x": 1.0e3}'))),
        publish_with_cli(url, "intervention", '{"from":"cli","n":5}'),
        asyncio.run(publish_async("analytics_update", {"from": "python-async", "n": 6})),
        publisher.publish("test_message", {"from": "python", "n": 7}),
    ]
    publisher.close()

    epochs = {stream_order(i)[0] for i in ids}
    assert len(epochs) == 1, f"Python and the CLI wrote one history: {ids}"
    assert [stream_order(i) for i in ids] == sorted(stream_order(i) for i in ids)
    epoch = epochs.pop()
    envelopes = {f"{epoch}:{sid}": envelope for sid, envelope in history(redis_server)}

    for dashboard in dashboards:
        texts = dashboard.recv_texts(len(ids))
        frames = [json.loads(text) for text in texts]
        assert [f["id"] for f in frames] == ids
        assert [f["data"]["n"] for f in frames] == [1, 2, 3, 4, 5, 6, 7]
        # What a client receives is the history's envelope with its id in front,
        # byte for byte (RawJSON data included).
        assert texts == [with_id(i, envelopes[i]) for i in ids]
        assert '"data":{"from": "python-async", "n": 4, "x": 1.0e3}' in texts[3]
        dashboard.nothing_more()
        dashboard.close()


def test_a_dashboard_resuming_with_since_gets_python_events_replayed(redis_server, nodes):
    a, b = nodes
    publisher = Publisher(redis_server.url)
    first, _ = connect(a.ws_url)
    seen = publisher.alert({"n": 0})
    assert first.recv()["id"] == seen
    first.close()

    async def more():
        async with AsyncPublisher(redis_server.url) as aio:
            return [await aio.intervention({"n": 2}), await aio.metrics_update({"n": 3})]

    missed = [publisher.alert({"n": 1})] + asyncio.run(more())
    resumed, _ = connect(f"{b.ws_url}?since={urllib.parse.quote(seen)}")
    replay = [resumed.recv() for _ in missed]
    assert [f["id"] for f in replay] == missed
    assert [f["data"]["n"] for f in replay] == [1, 2, 3]
    recovery = resumed.recv()
    assert recovery["type"] == "recovery"
    assert recovery["data"] == {"recovered": True, "replayed": 3}

    live = publisher.alert({"n": 4})
    assert resumed.recv()["id"] == live
    resumed.nothing_more()
    resumed.close()
    publisher.close()


def test_the_tutormax_manager_broadcasts_to_and_counts_the_whole_cluster(redis_server, nodes, monkeypatch):
    a, b = nodes
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setattr(tutormax, "_manager", None)
    manager = tutormax.get_connection_manager()
    wait_until(lambda: manager.get_connection_count() == 0, 5, "earlier tests' clients to leave the count")

    dashboards = [connect(a.ws_url)[0], connect(a.ws_url)[0], connect(b.ws_url)[0]]
    connected = time.monotonic()
    wait_until(lambda: manager.get_connection_count() == 3, 3, "the count to reach 3")
    assert time.monotonic() - connected < 2.5
    assert a.status()["active_connections"] == manager.get_connection_count() == 3
    assert sorted(n["node_id"] for n in manager.cluster_nodes()) == ["py-a", "py-b"]

    async def broadcast():
        ids = [
            await manager.broadcast("alert", {"tutor_id": "t-17", "severity": "critical"}),
            await manager.broadcast("intervention", {"id": "task-1", "status": "pending"}),
        ]
        return ids, await manager.connection_count()

    ids, async_count = asyncio.run(broadcast())
    assert async_count == 3
    for dashboard in dashboards:
        frames = [dashboard.recv(), dashboard.recv()]
        assert [(f["id"], f["type"]) for f in frames] == list(zip(ids, ["alert", "intervention"]))
        assert frames[0]["data"] == {"tutor_id": "t-17", "severity": "critical"}

    dashboards.pop().close()
    wait_until(lambda: manager.get_connection_count() == 2, 3, "the count to drop to 2")
    with pytest.raises(NotOnABusError):
        manager.send_personal_message({"type": "alert"}, object())
    for dashboard in dashboards:
        dashboard.close()
    manager.sync_publisher.close()


def test_a_dashboard_opening_with_state_gets_what_python_keyed_then_live(redis_server, nodes):
    """`?state=1`: the current keyed events Python published (a tombstoned key
    gone), as the state hash holds them, then the marker, then live."""
    a, b = nodes
    rules = {"state_keys": "py_room=room_id", "state_tombstones": "py_room=open:false"}
    with Publisher(redis_server.url, **rules) as publisher:
        publisher.publish("py_room", {"room_id": "r1", "open": True})
        publisher.publish("py_room", {"room_id": "r2", "open": True})
        publisher.publish("py_room", {"room_id": "r1", "open": False})  # a tombstone
        last = publisher.publish("py_room", {"n": 1}, key='r"3')
        current = redis_server.client.hgetall("{ws:history}:state:py_room")
        assert set(current) == {"r2", 'r\\"3'}

        dashboard = Dashboard(f"{b.ws_url}?types=py_room,analytics_update&state=1")
        greeting = dashboard.recv()
        assert greeting["type"] == "analytics_update" and "id" not in greeting
        sent = sorted(dashboard.recv_texts(2))
        assert sent == sorted(current.values()), "each key once, byte for byte as kept"
        marker = dashboard.recv()
        assert (marker["type"], marker["data"]) == ("state", {"complete": True, "count": 2})
        assert marker["id"] == last, "the live stream goes on from the newest position"

        removal = publisher.remove("py_room", "r2")
        live = dashboard.recv()
        assert (live["id"], live["key"], live["removed"]) == (removal, "r2", True)
    dashboard.nothing_more()
    dashboard.close()
