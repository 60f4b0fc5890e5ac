"""What a publish writes to a real Redis, sync and asyncio: the history entry,
the epoch, the snapshot, the live message; and what goes wrong, clearly."""

import asyncio
import json
import re
import threading
import time

import pytest
import redis

from conftest import free_port, history, with_id
from dashboard_gateway import (
    AsyncPublisher,
    EventTooLargeError,
    InvalidTypeError,
    Publisher,
    RawJSON,
    RedisUnavailableError,
    Settings,
)

POSITION = re.compile(r"([0-9a-f]{8}):([0-9]+-[0-9]+)")


class Subscriber:
    """Collects what is PUBLISHed on a pattern, on its own connection."""

    def __init__(self, server, pattern="ws:events:*"):
        self.pubsub = server.client.pubsub()
        self.pubsub.psubscribe(pattern)
        assert self.pubsub.get_message(timeout=2)["type"] == "psubscribe"

    def messages(self, count, timeout=5.0):
        got, deadline = [], time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage":
                got.append((message["channel"], message["data"]))
        return got

    def close(self):
        self.pubsub.close()


def test_a_publish_writes_history_epoch_and_live_in_one_go(fresh):
    sub = Subscriber(fresh)
    publisher = Publisher(fresh.url)
    first = publisher.alert({"tutor_id": "t-17", "severity": "critical"})
    second = publisher.publish("test_message", [1, 2])

    for position in (first, second):
        assert POSITION.fullmatch(position), position
    epoch = fresh.client.get("{ws:history}:epoch")
    assert first.split(":")[0] == second.split(":")[0] == epoch

    entries = history(fresh)
    assert [f"{epoch}:{sid}" for sid, _ in entries] == [first, second]
    alert = json.loads(entries[0][1])
    assert list(alert) == ["type", "data", "timestamp"]
    assert alert["data"] == {"tutor_id": "t-17", "severity": "critical"}

    live = sub.messages(2)
    assert live == [
        ("ws:events:alert", with_id(first, entries[0][1])),
        ("ws:events:test_message", with_id(second, entries[1][1])),
    ]
    assert fresh.client.get("ws:analytics:latest") is None, "only analytics_update is the snapshot"
    sub.close()
    publisher.close()


def test_analytics_update_becomes_the_snapshot(fresh):
    with Publisher(fresh.url) as publisher:
        position = publisher.analytics_update({"total_tutors": 3})
    snapshot = fresh.client.get("ws:analytics:latest")
    assert snapshot == with_id(position, history(fresh)[0][1])
    assert json.loads(snapshot)["data"] == {"total_tutors": 3}


def test_typed_helpers_publish_their_types(fresh):
    with Publisher(fresh.url) as publisher:
        publisher.metrics_update({"tutor_id": "t-1"})
        publisher.alert({})
        publisher.intervention({})
        publisher.analytics_update({})
    types = [json.loads(envelope)["type"] for _, envelope in history(fresh)]
    assert types == ["metrics_update", "alert", "intervention", "analytics_update"]


def test_raw_json_data_reaches_redis_byte_for_byte(fresh):
    text = '{"b": 1, "a": 1.0e3, "big": 12345678901234567890}'
    with Publisher(fresh.url) as publisher:
        publisher.alert(RawJSON(text))
    envelope = history(fresh)[0][1]
    assert envelope.startswith('{"type":"alert","data":%s,"timestamp":"' % text)


def test_the_epoch_stays_while_the_history_lives_and_changes_when_it_is_lost(fresh):
    with Publisher(fresh.url) as publisher:
        one = publisher.alert({})
        two = publisher.alert({})
        assert one.split(":")[0] == two.split(":")[0]
        fresh.client.delete("ws:history")
        three = publisher.alert({})
    assert three.split(":")[0] != one.split(":")[0]
    assert fresh.client.get("{ws:history}:epoch") == three.split(":")[0]


def test_the_history_keeps_history_size_events(fresh):
    with Publisher(fresh.url, history_size=3) as publisher:
        positions = [publisher.alert({"n": n}) for n in range(5)]
    kept = [f"{fresh.client.get('{ws:history}:epoch')}:{sid}" for sid, _ in history(fresh)]
    assert kept == positions[-3:]


def test_the_history_drops_events_older_than_its_ttl(fresh):
    epoch = "0badc0de"
    fresh.client.set("{ws:history}:epoch", epoch)
    fresh.client.xadd("ws:history", {"e": "{}"}, id="1000-0")  # 1970: far older than 1 s
    with Publisher(fresh.url, history_ttl_secs=1) as publisher:
        position = publisher.alert({})
    assert position.startswith(epoch + ":"), "an existing history keeps its epoch"
    assert [f"{epoch}:{sid}" for sid, _ in history(fresh)] == [position]


def test_a_custom_prefix_names_every_key_and_channel(fresh):
    sub = Subscriber(fresh, "staging:events:*")
    with Publisher(fresh.url, channel_prefix="staging") as publisher:
        position = publisher.analytics_update({"x": 1})
    assert fresh.client.xlen("staging:history") == 1
    assert fresh.client.get("{staging:history}:epoch") == position.split(":")[0]
    assert fresh.client.get("staging:analytics:latest") is not None
    assert sub.messages(1)[0][0] == "staging:events:analytics_update"
    assert not fresh.client.exists("ws:history")
    sub.close()


def test_the_script_is_loaded_again_after_a_script_flush(fresh):
    with Publisher(fresh.url) as publisher:
        publisher.alert({})
        fresh.client.script_flush()
        publisher.alert({})
    assert fresh.client.xlen("ws:history") == 2
    assert fresh.command_calls("evalsha") >= 2


def test_asyncio_publisher_writes_the_same_format(fresh):
    async def run():
        async with AsyncPublisher(fresh.url) as publisher:
            ids = [
                await publisher.metrics_update({"tutor_id": "t-1"}),
                await publisher.alert({"severity": "critical"}),
                await publisher.intervention({"id": "i-1"}),
                await publisher.analytics_update({"total_tutors": 2}),
                await publisher.publish("test_message", RawJSON("[1, 2]")),
            ]
            # Concurrent publishes from one loop all land, each once.
            ids += await asyncio.gather(*(publisher.alert({"n": n}) for n in range(20)))
            return ids

    sub = Subscriber(fresh)
    ids = asyncio.run(run())
    epoch = fresh.client.get("{ws:history}:epoch")
    assert sorted(f"{epoch}:{sid}" for sid, _ in history(fresh)) == sorted(ids)
    assert len(set(ids)) == 25
    assert len(sub.messages(25)) == 25
    sub.close()


def test_publishes_from_many_threads_share_one_publisher(fresh):
    publisher = Publisher(fresh.url)
    ids = []

    def work():
        for n in range(20):
            ids.append(publisher.alert({"n": n}))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 80 == fresh.client.xlen("ws:history")
    publisher.close()


def test_an_oversized_event_is_refused_before_redis_is_touched(fresh):
    calls_before = fresh.command_calls("evalsha") + fresh.command_calls("eval")
    publisher = Publisher(fresh.url, max_event_bytes=256)
    fits = "x" * (256 - len(b'{"type":"alert","data":"","timestamp":"2026-11-25T10:00:00.123Z"}'))
    with pytest.raises(EventTooLargeError) as caught:
        publisher.alert(fits + "y")
    assert str(caught.value) == "event is 257 bytes encoded, over MAX_EVENT_BYTES (256)"
    assert (caught.value.size, caught.value.max_bytes) == (257, 256)
    # Characters count as their UTF-8 bytes: one fewer, but two of two bytes.
    with pytest.raises(EventTooLargeError, match=r"^event is 259 bytes encoded"):
        publisher.alert(fits[:-1] + "éé")
    assert fresh.command_calls("evalsha") + fresh.command_calls("eval") == calls_before
    assert not fresh.client.exists("ws:history")
    publisher.alert(fits)  # exactly MAX_EVENT_BYTES is allowed
    assert fresh.client.xlen("ws:history") == 1
    publisher.close()

    # The default limit is 65536, and the check comes before any connection:
    # against a Redis that is not there, the size error still wins.
    nowhere = Publisher(f"redis://127.0.0.1:{free_port()}")
    with pytest.raises(EventTooLargeError, match=r"over MAX_EVENT_BYTES \(65536\)$"):
        nowhere.alert("x" * 65536)


def test_a_bad_type_is_refused_before_redis_is_touched(fresh):
    publisher = Publisher(fresh.url)
    with pytest.raises(InvalidTypeError) as caught:
        publisher.publish("a b", {})
    assert str(caught.value) == (
        "invalid message type: message type \"a b\" may only contain letters, digits, '_', '-' and '.'"
    )

    async def run():
        async with AsyncPublisher(fresh.url) as aio:
            await aio.publish("recovery", {})

    with pytest.raises(InvalidTypeError, match="is reserved for messages the server itself sends"):
        asyncio.run(run())
    assert not fresh.client.exists("ws:history")
    publisher.close()


def test_an_unreachable_redis_is_a_clear_error_without_the_password():
    port = free_port()
    url = f"redis://admin:hunter2@127.0.0.1:{port}/0"
    publisher = Publisher(url)
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError) as caught:
        publisher.alert({})
    assert time.monotonic() - started < 6
    message = str(caught.value)
    assert message.startswith(f"cannot reach Redis at 127.0.0.1:{port}: "), message
    assert isinstance(caught.value, ConnectionError)
    with pytest.raises(RedisUnavailableError):
        publisher.connection_count()
    with pytest.raises(RedisUnavailableError):
        publisher.ping()

    async def run():
        async with AsyncPublisher(url) as aio:
            await aio.alert({})

    with pytest.raises(RedisUnavailableError) as async_caught:
        asyncio.run(run())
    for err in (caught.value, async_caught.value):
        text = str(err) + repr(err) + str(err.__cause__) + repr(err.__cause__)
        assert "hunter2" not in text


def test_connection_count_sums_live_nodes_only(fresh):
    now = int(time.time() * 1000)
    nodes = {"a": (now, 3), "b": (now - 1000, 4), "stale": (now - 60_000, 100)}
    for node_id, (seen, count) in nodes.items():
        fresh.client.zadd("{ws:nodes}", {node_id: seen})
        fresh.client.set(f"{{ws:nodes}}:{node_id}",
                         json.dumps({"node_id": node_id, "active_connections": count}))
    fresh.client.zadd("{ws:nodes}", {"expired": now})  # in the index, its entry gone
    with Publisher(fresh.url) as publisher:
        assert publisher.connection_count() == 7
        assert sorted(n["node_id"] for n in publisher.cluster_nodes()) == ["a", "b"]

    async def run():
        async with AsyncPublisher(fresh.url) as aio:
            return await aio.connection_count()

    assert asyncio.run(run()) == 7
    fresh.client.flushall()
    with Publisher(fresh.url) as publisher:
        assert publisher.connection_count() == 0


def test_a_passed_in_client_is_used_and_left_open(fresh):
    client = redis.Redis.from_url(fresh.url)
    publisher = Publisher(client=client, settings=Settings(channel_prefix="mine"))
    publisher.alert({})
    publisher.close()
    assert client.xlen("mine:history") == 1, "the caller's client still works"
    client.close()
