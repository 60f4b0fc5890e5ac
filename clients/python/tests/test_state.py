"""Keyed state through a real Redis, sync and asyncio: the publish script
keeps the latest event per key (`{ws:history}:state:<type>`), a tombstone
takes its key out, the bounds evict (and the evicting event says so), a
batch is keyed in order, TutorMax's broadcast is keyed without a change, and
the Rust CLI keys the same data under the same key."""

import asyncio
import json
import time

import pytest

from conftest import history, publish_with_cli, with_id
from dashboard_gateway import (
    AsyncPublisher,
    InvalidKeyError,
    Publisher,
    RawJSON,
    Settings,
)
from dashboard_gateway.tutormax import ConnectionManager
from test_redis import Subscriber


def state(server, message_type, prefix="ws"):
    """The state of `message_type`: {escaped key: enveloped event}."""
    return server.client.hgetall("{%s:history}:state:%s" % (prefix, message_type))


def stored(server, position):
    """The history entry of `position`, as clients receive it (id first)."""
    sid = position.split(":", 1)[1]
    (envelope,) = [e for s, e in history(server) if s == sid]
    return with_id(position, envelope)


def test_the_state_holds_the_latest_event_of_each_key_with_its_id(fresh):
    with Publisher(fresh.url) as publisher:
        publisher.metrics_update({"tutor_id": "t-1", "window": "7day", "avg_rating": 4.1})
        latest = publisher.metrics_update({"tutor_id": "t-1", "window": "7day", "avg_rating": 4.6})
        other = publisher.metrics_update({"tutor_id": "t-1", "window": "30day", "avg_rating": 4.4})
        publisher.publish("test_message", {"id": "x"})  # not a keyed type
        publisher.metrics_update({"tutor_id": "t-2"})  # no window: unkeyed
    assert state(fresh, "metrics_update") == {
        "t-1|7day": stored(fresh, latest),
        "t-1|30day": stored(fresh, other),
    }
    event = json.loads(state(fresh, "metrics_update")["t-1|7day"])
    assert list(event) == ["id", "type", "key", "data", "timestamp"]
    assert (event["id"], event["key"], event["data"]["avg_rating"]) == (latest, "t-1|7day", 4.6)
    assert fresh.client.smembers("{ws:history}:keyed") == {"metrics_update"}
    ages = fresh.client.zrange("{ws:history}:state-age:metrics_update", 0, -1, withscores=True)
    assert {k for k, _ in ages} == {"t-1|7day", "t-1|30day"}
    # Scored by the event's stream id, ms * 1000 + seq: publish order, exactly.
    assert all(abs(score / 1_000_000 - time.time()) < 60 for _, score in ages), ages
    assert len(history(fresh)) == 5, "every event, keyed or not, is in the history"


def test_the_hash_field_is_the_keys_escaped_json_text(fresh):
    with Publisher(fresh.url) as publisher:
        position = publisher.publish("custom", {"n": 1}, key='say "hi" \\ é')
    assert state(fresh, "custom") == {'say \\"hi\\" \\\\ é': stored(fresh, position)}
    assert json.loads(stored(fresh, position))["key"] == 'say "hi" \\ é'


def test_a_tombstone_removes_its_key_and_still_goes_live_and_into_the_history(fresh):
    sub = Subscriber(fresh)
    with Publisher(fresh.url) as publisher:
        publisher.alert({"id": "a-1", "severity": "critical", "status": "open"})
        kept = publisher.alert({"id": "a-2", "severity": "low", "status": "open"})
        resolved = publisher.alert({"id": "a-1", "status": "resolved"})
        publisher.intervention({"id": "i-1", "status": "pending"})
        removal = publisher.remove("intervention", "i-1")
    assert state(fresh, "alert") == {"a-2": stored(fresh, kept)}
    assert state(fresh, "intervention") == {}
    assert fresh.client.zrange("{ws:history}:state-age:alert", 0, -1) == ["a-2"]
    tombstone = json.loads(stored(fresh, resolved))
    assert list(tombstone) == ["id", "type", "key", "removed", "data", "timestamp"]
    assert (tombstone["key"], tombstone["removed"]) == ("a-1", True)
    assert json.loads(stored(fresh, removal))["data"] == {}, "remove()'s data defaults to {}"
    live = dict((json.loads(m)["id"], m) for _, m in sub.messages(5))
    assert live[resolved] == stored(fresh, resolved) and live[removal] == stored(fresh, removal)
    sub.close()


def test_at_state_max_keys_the_least_recently_updated_key_is_evicted_and_named(fresh):
    sub = Subscriber(fresh)
    with Publisher(fresh.url, state_max_keys=2) as publisher:
        # Recency is the stream id: exact even within one millisecond.
        publisher.publish("custom", {"v": 1}, key="k1")
        publisher.publish("custom", {"v": 2}, key="k2")
        publisher.publish("custom", {"v": 3}, key="k1")  # k1 is now the more recent
        third = publisher.publish("custom", {"v": 4}, key="k3")
        again = publisher.publish("custom", {"v": 5}, key="k3")  # an update: no eviction
    assert set(state(fresh, "custom")) == {"k1", "k3"}
    evicting = json.loads(stored(fresh, third))
    assert list(evicting) == ["id", "type", "key", "evicted", "data", "timestamp"]
    assert evicting["evicted"] == ["k2"]
    assert "evicted" not in json.loads(stored(fresh, again))
    live = {json.loads(m)["id"]: m for _, m in sub.messages(5)}
    assert json.loads(live[third])["evicted"] == ["k2"], "live as in the history"
    assert fresh.client.zcard("{ws:history}:state-age:custom") == 2
    sub.close()


def test_within_one_batch_the_least_recently_updated_key_is_evicted(fresh):
    with Publisher(fresh.url, state_max_keys=2) as publisher:
        ids = publisher.publish_many([
            {"type": "custom", "data": 1, "key": "a"},
            {"type": "custom", "data": 2, "key": "b"},
            {"type": "custom", "data": 3, "key": "a"},
            {"type": "custom", "data": 4, "key": "z"},
        ])
    assert set(state(fresh, "custom")) == {"a", "z"}
    assert json.loads(stored(fresh, ids[3]))["evicted"] == ["b"]


def test_keys_older_than_state_ttl_secs_leave_the_state(fresh):
    with Publisher(fresh.url, state_ttl_secs=1) as publisher:
        publisher.publish("custom", {}, key="old")
        time.sleep(1.2)
        position = publisher.publish("custom", {}, key="new")
    assert set(state(fresh, "custom")) == {"new"}
    assert json.loads(stored(fresh, position))["evicted"] == ["old"]


def test_a_batch_is_keyed_in_order(fresh):
    with Publisher(fresh.url) as publisher:
        ids = publisher.publish_many([
            ("alert", {"id": "a-1", "n": 1}),
            {"type": "alert", "data": {"id": "a-1", "n": 2}},
            {"type": "alert", "data": {"id": "a-2", "n": 3}},
            {"type": "alert", "data": {"n": 4}, "key": "mine"},
            ("alert", {"id": "a-2", "status": "resolved"}),  # removes a-2, set just before
            {"type": "custom", "key": "c", "removed": True},  # a removal: data {}
            {"type": "custom", "data": 5, "key": "c"},
            ("analytics_update", {"id": "a-1"}),
        ], batch_size=3)
    assert [f"{fresh.client.get('{ws:history}:epoch')}:{s}" for s, _ in history(fresh)] == ids
    assert state(fresh, "alert") == {"a-1": stored(fresh, ids[1]), "mine": stored(fresh, ids[3])}
    assert state(fresh, "custom") == {"c": stored(fresh, ids[6])}
    assert json.loads(stored(fresh, ids[5])) == {
        "id": ids[5], "type": "custom", "key": "c", "removed": True, "data": {},
        "timestamp": json.loads(stored(fresh, ids[5]))["timestamp"],
    }
    assert state(fresh, "analytics_update") == {}


def test_a_bad_key_refuses_the_whole_list_before_redis(fresh):
    with Publisher(fresh.url) as publisher:
        with pytest.raises(InvalidKeyError) as caught:
            publisher.publish_many([("alert", {"id": "a"}), {"type": "alert", "data": {}, "key": ""}])
        assert caught.value.index == 1
        assert str(caught.value) == "events[1]: a state key is empty"
        with pytest.raises(InvalidKeyError, match="a removal needs a key"):
            publisher.publish("alert", {"status": "open"}, removed=True)
        with pytest.raises(TypeError, match=r"events\[0\] is a mapping with unknown \['kee'\]"):
            publisher.publish_many([{"type": "alert", "data": {}, "kee": "k"}])
        with pytest.raises(TypeError, match=r"events\[0\]: 'key' must be a str"):
            publisher.publish_many([{"type": "alert", "data": {}, "key": 7}])
    assert history(fresh) == []


def test_asyncio_publish_and_remove_keep_the_state_too(fresh):
    async def run():
        async with AsyncPublisher(fresh.url) as publisher:
            set_ = await publisher.publish("custom", RawJSON('{"a": 1}'), key="k")
            await publisher.alert({"id": "a-1"})
            await publisher.remove("alert", "a-1", {"reason": "merged"})
            many = await publisher.publish_many([{"type": "custom", "data": 2, "key": "j"}])
            return set_, many

    set_, many = asyncio.run(run())
    assert state(fresh, "custom") == {"k": stored(fresh, set_), "j": stored(fresh, many[0])}
    assert state(fresh, "alert") == {}


def test_tutormax_broadcast_is_keyed_by_the_rules_without_a_change(fresh):
    manager = ConnectionManager(Settings(fresh.url))

    async def run():
        opened = await manager.broadcast("alert", {"id": "a-9", "severity": "critical"})
        task = await manager.broadcast("intervention", {"id": "task-1", "status": "pending"})
        await manager.broadcast("intervention", {"id": "task-1", "status": "completed"})
        metrics = await manager.broadcast("metrics_update", {"tutor_id": "t-1", "window": "7day"})
        await manager.aclose()
        return opened, task, metrics

    opened, task, metrics = asyncio.run(run())
    assert state(fresh, "alert") == {"a-9": stored(fresh, opened)}
    assert state(fresh, "intervention") == {}, "the completed task left the state"
    assert state(fresh, "metrics_update") == {"t-1|7day": stored(fresh, metrics)}
    assert json.loads(stored(fresh, task))["key"] == "task-1"


def test_state_settings_from_the_environment_reach_the_script(fresh):
    env = {"REDIS_URL": fresh.url, "STATE_KEYS": "custom=room", "STATE_TOMBSTONES": "none",
           "STATE_MAX_KEYS": "1"}
    with Publisher.from_env(env) as publisher:
        publisher.publish("custom", {"room": "r1"})
        last = publisher.publish("custom", {"room": "r2", "status": "resolved"})
        publisher.alert({"id": "a-1"})  # the defaults are replaced: alerts are not keyed
    assert state(fresh, "custom") == {"r2": stored(fresh, last)}
    assert json.loads(stored(fresh, last))["evicted"] == ["r1"]
    assert state(fresh, "alert") == {}


def test_a_new_history_epoch_starts_with_no_state(fresh):
    with Publisher(fresh.url) as publisher:
        publisher.alert({"id": "a-1"})
        publisher.publish("custom", {}, key="k")
        fresh.client.delete("ws:history")  # lost, as with a Redis restart
        position = publisher.alert({"id": "a-2"})
    assert state(fresh, "custom") == {}
    assert state(fresh, "alert") == {"a-2": stored(fresh, position)}
    assert fresh.client.smembers("{ws:history}:keyed") == {"alert"}


@pytest.mark.gateway
@pytest.mark.parametrize(
    "message_type, data",
    [
        ("alert", r'{"id":"a|b\\c\"d é"}'),  # one field: as it is (JSON-escaped in Redis)
        ("metrics_update", r'{"tutor_id":"a|b","window":"c\\"}'),  # several: \ and | escaped
        ("alert", '{"id":17}'),
        ("alert", '{"id":1.50}'),
        ("alert", '{"id":1e16}'),
        ("alert", '{"id":0.00001}'),
        ("alert", '{"id":1.5e-7}'),
        ("alert", '{"id":-0}'),
        ("alert", '{"id":18446744073709551616}'),
        ("intervention", '{"id":false,"status":"open"}'),
    ],
)
def test_the_rust_cli_keys_the_same_data_under_the_same_key(fresh, message_type, data):
    publish_with_cli(fresh.url, message_type, data)
    rust = set(state(fresh, message_type))
    fresh.client.flushall()
    with Publisher(fresh.url) as publisher:
        publisher.publish(message_type, RawJSON(data))
    python = set(state(fresh, message_type))
    assert len(rust) == 1 and python == rust
