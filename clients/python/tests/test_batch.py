"""Bulk and concurrent publishing against a real Redis: `publish_many` (in
order, one round trip per batch, all-or-nothing checks), and thousands of
publishes at once, which wait for a pooled connection instead of failing,
and say so plainly when they wait too long."""

import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from conftest import REPO, history
from dashboard_gateway import (
    DEFAULT_BATCH_EVENTS,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    AsyncPublisher,
    ConfigError,
    ConnectionManager,
    DataError,
    EventTooLargeError,
    InvalidTypeError,
    PoolExhaustedError,
    Publisher,
    RawJSON,
    RedisUnavailableError,
    Settings,
)


def script_runs(server) -> int:
    """Successful EVAL/EVALSHA calls: the publisher's round trips."""
    stats = server.client.info("commandstats")
    total = 0
    for name in ("cmdstat_evalsha", "cmdstat_eval"):
        entry = stats.get(name)
        if entry:
            total += int(entry["calls"]) - int(entry.get("failed_calls", 0))
    return total


def positions(server, prefix="ws"):
    epoch = server.client.get("{%s:history}:epoch" % prefix)
    return [f"{epoch}:{sid}" for sid, _ in history(server, prefix)]


def test_the_batch_bounds_are_the_rust_crates():
    source = (REPO / "publisher" / "src" / "batch.rs").read_text(encoding="utf-8")
    rust = {
        name: eval(value.replace("_", ""))  # noqa: S307 -- a constant expression
        for name, value in re.findall(r"pub const (\w+): usize = ([0-9_ *]+);", source)
    }
    assert rust == {
        "MAX_BATCH_EVENTS": MAX_BATCH_EVENTS,
        "MAX_BATCH_BYTES": MAX_BATCH_BYTES,
        "DEFAULT_BATCH_EVENTS": DEFAULT_BATCH_EVENTS,
    }


def test_publish_many_writes_every_event_in_order_one_round_trip_per_batch(fresh):
    pubsub = fresh.client.pubsub()
    pubsub.psubscribe("ws:events:*")
    assert pubsub.get_message(timeout=2)["type"] == "psubscribe"
    events = [("metrics_update", {"tutor_id": f"t-{n}", "n": n}) for n in range(1200)]
    events[7] = ("alert", RawJSON('{"id": "a-1", "score": 1.50}'))
    events[800] = ("analytics_update", {"total_tutors": 40})
    runs = script_runs(fresh)
    with Publisher(fresh.url) as publisher:
        ids = publisher.publish_many(events)
    assert script_runs(fresh) - runs == 3, "1,200 events: three batches of 500"
    assert ids == positions(fresh), "every event in the history, in order, with its id"
    stored = history(fresh)
    # Passed through byte for byte, and keyed by its id (STATE_KEYS' alert=id).
    assert stored[7][1].startswith('{"type":"alert","key":"a-1","data":{"id": "a-1", "score": 1.50},')
    assert json.loads(stored[1199][1])["data"] == {"tutor_id": "t-1199", "n": 1199}

    live = []
    deadline = time.monotonic() + 10
    while len(live) < 1200 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "pmessage":
            live.append(json.loads(message["data"])["id"])
    assert live == ids, "live in the same order"
    assert json.loads(fresh.client.get("ws:analytics:latest"))["id"] == ids[800]
    pubsub.close()


def test_20000_events_from_python_take_well_under_a_second(fresh):
    events = [("metrics_update", {"tutor_id": f"t-{n % 40}", "window": "7day", "n": n})
              for n in range(20_000)]
    with Publisher(fresh.url, history_size=50_000) as publisher:
        publisher.ping()  # connected and the script loaded: the run itself is timed
        publisher.publish_many(events[:1])
        started = time.perf_counter()
        ids = publisher.publish_many(events[1:])
        took = time.perf_counter() - started
    assert took < 1.0, f"19,999 events took {took:.2f} s"
    assert len(ids) == 19_999
    stored = history(fresh)
    assert len(stored) == 20_000
    assert [json.loads(e)["data"]["n"] for _, e in stored] == list(range(20_000))
    assert positions(fresh)[1:] == ids


def test_asyncio_publish_many_is_the_same_and_as_fast(fresh):
    events = [("alert", {"n": n}) for n in range(20_000)]

    async def run():
        async with AsyncPublisher(fresh.url, history_size=50_000) as publisher:
            await publisher.publish_many(events[:1])
            started = time.perf_counter()
            ids = await publisher.publish_many(events[1:], batch_size=1000)
            return ids, time.perf_counter() - started

    runs = script_runs(fresh)
    ids, took = asyncio.run(run())
    assert took < 1.0, f"19,999 events took {took:.2f} s"
    assert script_runs(fresh) - runs == 1 + 20, "1,000 a batch"
    assert positions(fresh)[1:] == ids
    assert [json.loads(e)["data"]["n"] for _, e in history(fresh)] == list(range(20_000))


def test_a_bad_event_refuses_the_whole_list_before_anything_is_sent(fresh):
    publisher = Publisher(fresh.url, max_event_bytes=256)
    runs = script_runs(fresh)
    ok = ("alert", {})
    cases = [
        ([ok, ok, ("no spaces", {})], InvalidTypeError, r"^events\[2\]: invalid message type: "),
        ([ok, ("alert", "x" * 300)], EventTooLargeError,
         r"^events\[1\]: event is 365 bytes encoded, over MAX_EVENT_BYTES \(256\)$"),
        ([ok, ("alert", {"t": object()})], DataError, r"^events\[1\]: data does not serialize"),
    ]
    for events, error, message in cases:
        with pytest.raises(error, match=message) as caught:
            publisher.publish_many(events)
        assert caught.value.index == len(events) - 1
    with pytest.raises(TypeError, match=r"events\[1\] is not a \(type, data\) pair"):
        publisher.publish_many([ok, "alert"])
    with pytest.raises(ValueError, match="batch_size must be a whole number from 1 to 1000"):
        publisher.publish_many([ok], batch_size=1001)
    assert script_runs(fresh) == runs and not fresh.client.exists("ws:history")
    assert publisher.publish_many([]) == []
    publisher.close()


class _FailsOnEvalsha(redis.Redis):
    """A client whose `fail_on`-th EVALSHA finds the connection gone."""

    fail_on = 2

    def evalsha(self, *args, **kwargs):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.fail_on:
            raise redis.exceptions.ConnectionError("Connection reset by peer")
        return super().evalsha(*args, **kwargs)


def test_a_batch_that_fails_says_what_was_published_before_it(fresh):
    client = _FailsOnEvalsha.from_url(fresh.url)
    publisher = Publisher(client=client)
    publisher.publish_many([("alert", {})])  # the script loaded: call 1
    client.calls, client.fail_on = 0, 2
    events = [("alert", {"n": n}) for n in range(5)]
    with pytest.raises(RedisUnavailableError) as caught:
        publisher.publish_many(events, batch_size=2)
    err = caught.value
    assert err.published == positions(fresh)[1:3], "the first batch, its ids"
    message = str(err)
    assert "batch 2 of 3, events[2:4]: published whole or not at all" in message, message
    assert "the 2 events before it were published" in message, message
    assert len(history(fresh)) == 3, "nothing after the failed batch was sent"
    client.close()


def test_five_hundred_concurrent_asyncio_publishes_all_land(fresh):
    async def run():
        async with AsyncPublisher(fresh.url) as publisher:
            ids = await asyncio.gather(*(publisher.alert({"n": n}) for n in range(500)))
            return ids, len(publisher.client.connection_pool._available_connections)

    ids, opened = asyncio.run(run())
    assert len(set(ids)) == 500
    assert sorted(ids) == sorted(positions(fresh)), "every one in the history"
    assert opened <= 50, f"{opened} connections: within the pool"


def test_five_hundred_concurrent_broadcasts_all_land(fresh):
    manager = ConnectionManager(Settings(redis_url=fresh.url))

    async def run():
        try:
            return await asyncio.gather(
                *(manager.broadcast("alert", {"n": n}) for n in range(500))
            )
        finally:
            await manager.aclose()

    ids = asyncio.run(run())
    assert len(set(ids)) == 500 == fresh.client.xlen("ws:history")


def test_a_thousand_publishes_from_200_threads_all_land(fresh):
    publisher = Publisher(fresh.url, pool_size=20)
    with ThreadPoolExecutor(max_workers=200) as pool:
        ids = list(pool.map(lambda n: publisher.alert({"n": n}), range(1000)))
    assert len(set(ids)) == 1000 == fresh.client.xlen("ws:history")
    publisher.close()


def _check_pool_error(err: BaseException) -> None:
    assert isinstance(err, PoolExhaustedError) and isinstance(err, TimeoutError)
    assert not isinstance(err, (RedisUnavailableError, ConnectionError)), "Redis is fine"
    message = str(err)
    assert message.startswith("no Redis connection became free within 0.2 s: all 1 connection "
                              "of this publisher's pool are busy"), message
    for hint in ("REDIS_POOL_SIZE", "pool_size", "REDIS_POOL_TIMEOUT_SECS",
                 "not Redis being unreachable"):
        assert hint in message, message
    assert (err.pool_size, err.timeout_secs) == (1, 0.2)


def test_a_wait_for_a_pooled_connection_that_times_out_says_the_pool_is_exhausted(fresh):
    # One connection, held by a publish that Redis keeps waiting (CLIENT
    # PAUSE): the second publish waits 0.2 s for it, then gives up.
    settings = Settings(redis_url=fresh.url, pool_size=1, pool_timeout_secs=0.2)

    async def run():
        async with AsyncPublisher(settings=settings) as publisher:
            await publisher.ping()
            fresh.client.execute_command("CLIENT", "PAUSE", "1000", "WRITE")
            return await asyncio.gather(
                publisher.alert({"n": 1}), publisher.alert({"n": 2}), return_exceptions=True
            )

    first, second = asyncio.run(run())
    assert isinstance(first, str), first
    _check_pool_error(second)

    fresh.client.execute_command("CLIENT", "UNPAUSE")
    publisher = Publisher(settings=settings)
    publisher.ping()
    fresh.client.execute_command("CLIENT", "PAUSE", "1000", "WRITE")
    results = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(_outcome(publisher, n)))
        for n in range(2)
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # the first one takes the connection
    for thread in threads:
        thread.join()
    ok = [r for r in results if isinstance(r, str)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(ok) == 1 and len(errors) == 1, results
    _check_pool_error(errors[0])
    fresh.client.execute_command("CLIENT", "UNPAUSE")
    assert fresh.client.xlen("ws:history") == 2
    publisher.close()


def _outcome(publisher, n):
    try:
        return publisher.alert({"n": n})
    except Exception as err:  # noqa: BLE001 -- the test inspects it
        return err


def test_a_callers_client_with_a_smaller_pool_is_waited_for_not_overrun(fresh):
    client = redis.asyncio.Redis.from_url(fresh.url, max_connections=3)

    async def run():
        publisher = AsyncPublisher(client=client)
        ids = await asyncio.gather(*(publisher.alert({"n": n}) for n in range(100)))
        await client.aclose() if hasattr(client, "aclose") else await client.close()
        return ids

    assert len(set(asyncio.run(run()))) == 100


def test_pool_settings_come_from_the_environment_and_are_checked():
    settings = Settings.from_env({"REDIS_POOL_SIZE": "8", "REDIS_POOL_TIMEOUT_SECS": "2.5"})
    assert (settings.pool_size, settings.pool_timeout_secs) == (8, 2.5)
    assert (Settings().pool_size, Settings().pool_timeout_secs) == (50, 10.0)
    for env, message in (
        ({"REDIS_POOL_SIZE": "0"}, "REDIS_POOL_SIZE must be between 1 and 10000"),
        ({"REDIS_POOL_SIZE": "many"}, "REDIS_POOL_SIZE \"many\" is not a whole number"),
        ({"REDIS_POOL_TIMEOUT_SECS": "0"}, "REDIS_POOL_TIMEOUT_SECS must be a number of seconds"),
        ({"REDIS_POOL_TIMEOUT_SECS": "soon"}, "REDIS_POOL_TIMEOUT_SECS \"soon\" is not a number"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            Settings.from_env(env)
