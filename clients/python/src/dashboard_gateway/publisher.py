"""`Publisher` (blocking) and `AsyncPublisher` (asyncio): a redis-py client
plus the wire format.

One publish is one `EVALSHA` of `publish.lua` (`SCRIPT LOAD` and again on
`NOSCRIPT`): the event is appended to the history stream, which gives it its
position, kept as the analytics snapshot when it is an `analytics_update`, and
published live with its `id` in front -- atomically, so history order is live
order. `publish_many` sends a list the same way, one `EVALSHA` per batch of up
to `DEFAULT_BATCH_EVENTS` events (each batch atomic, in order).

A keyed event (its key given, or derived by `STATE_KEYS`, see `state`) names
its key in the envelope, and the same script keeps it as the latest event of
that key (a removal deletes the key), within `STATE_MAX_KEYS` keys per type
and `STATE_TTL_SECS`.

A publish is never retried by this package: when a connection dies after the
command was sent, Redis may have run it, and a retry would publish the event
twice. The caller gets `RedisUnavailableError` and decides.

At most `pool_size` commands are in flight at once (`pool.py`); more wait for
a connection and, after `pool_timeout_secs`, raise `PoolExhaustedError`.

What both share and does no I/O (encoding, the script's arguments, batches,
replies, errors) is `core`; how their redis-py clients are built from
`Settings` is `connection`.
"""

from typing import Any, Dict, Iterable, List, Mapping, Optional

import redis
import redis.asyncio as aioredis

from . import pool, wire
from .connection import REDIS_TIMEOUT_SECS  # noqa: F401  (re-exported: was defined here)
from .connection import _address, _async_client, _sync_client
from .core import NODE_TTL_MS  # noqa: F401  (re-exported: was defined here)
from .core import _POLICY_ARGS, _REDIS_ERRORS, _Args, _Core, _partly_published, _translate
from .errors import PublishError
from .script import SCRIPT
from .settings import Settings
from .wire import JsonDefault


class Publisher(_Core):
    """Publishes events from blocking code (Django, Celery, scripts, threads).

    ```python
    publisher = Publisher.from_env()            # REDIS_URL, CHANNEL_PREFIX, ...
    event_id = publisher.alert({"tutor_id": "t-17", "severity": "critical"})
    ```

    Creating one does no I/O; the first publish connects. Thread-safe (redis-py
    pools connections). With Sentinels, every new connection asks them for the
    master, so a failover is followed. `client=` takes a configured
    `redis.Redis` instead (options the settings do not cover); it is then
    yours to close.
    """

    def __init__(
        self,
        redis_url: Optional[str] = None,
        *,
        settings: Optional[Settings] = None,
        client: Optional["redis.Redis"] = None,
        json_default: Optional[JsonDefault] = None,
        **options: Any,
    ) -> None:
        settings = _settings(redis_url, settings, options)
        super().__init__(settings, json_default)
        self._owns_client = client is None
        self._client: redis.Redis = client if client is not None else _sync_client(settings)
        self._address = _address(self._client, settings if client is None else None)
        self._script = self._client.register_script(SCRIPT)
        self._gate = pool.Gate(self._gate_size(self._client), settings.pool_timeout_secs)

    @classmethod
    def from_env(
        cls,
        environ: Optional[Mapping[str, str]] = None,
        *,
        client: Optional["redis.Redis"] = None,
        json_default: Optional[JsonDefault] = None,
        **overrides: Any,
    ) -> "Publisher":
        """Configured like the Rust CLI, from `REDIS_URL` (or `REDIS_SENTINELS`
        + `REDIS_SENTINEL_MASTER`), `REDIS_TLS_*`, `CHANNEL_PREFIX`,
        `HISTORY_SIZE`, `HISTORY_TTL_SECS`, `MAX_EVENT_BYTES`, `STATE_*`."""
        return cls(
            settings=Settings.from_env(environ, **overrides),
            client=client,
            json_default=json_default,
        )

    @property
    def client(self) -> "redis.Redis":
        return self._client

    def publish(self, message_type: str, data: Any, *, key: Optional[str] = None,
                removed: bool = False) -> str:
        """Publishes `data` (anything `json.dumps` takes, or a `RawJSON`) as an
        event of `message_type`; returns its position (`id`) once Redis has it.

        Its state key is `key`, or else the one `STATE_KEYS` derives from
        `data` (none: the event is not part of the state). `removed=True`
        (or a `STATE_TOMBSTONES` rule) makes it a removal of its key.

        Raises `InvalidTypeError`, `InvalidKeyError`, `DataError` or
        `EventTooLargeError` before touching Redis; `RedisUnavailableError`,
        `RedisCommandError` or `PoolExhaustedError` after."""
        return self._run(self._prepare(message_type, data, key, removed))[0]

    def remove(self, message_type: str, key: str, data: Any = None) -> str:
        """Publishes a removal of `key` of `message_type` (a tombstone: live
        and in the history, and the key leaves the state), with `data`
        (default `{}`); returns its id."""
        return self.publish(message_type, {} if data is None else data, key=key, removed=True)

    def publish_many(
        self, events: Iterable[Any], *, batch_size: int = wire.DEFAULT_BATCH_EVENTS
    ) -> List[str]:
        """Publishes `events` in order; returns their ids in the same order.
        An event is a `(type, data)` pair, or a mapping
        `{"type": ..., "data": ..., "key": ..., "removed": ...}` (`key` and
        `removed` optional, as for `publish`; a removal's `data` too).

        Every event is checked first: a bad one raises (`InvalidTypeError`,
        `InvalidKeyError`, `DataError`, `EventTooLargeError`, its message
        starting `events[3]: ` and its `index` set) and nothing is sent. Then one Redis call per
        batch of `batch_size` events (at most `MAX_BATCH_EVENTS`; a batch also
        ends at `MAX_BATCH_BYTES`), each atomic: all of its events in the
        history and live, in order, or none. When a later batch fails, the
        error's `published` holds the ids of the events before it."""
        batches = self._batches(events, batch_size)
        ids: List[str] = []
        for number, args in enumerate(batches):
            try:
                ids += self._run(args)
            except PublishError as err:
                count = len(args) - _POLICY_ARGS
                raise _partly_published(err, ids, number, len(batches), len(ids), count)
        return ids

    def _run(self, args: _Args) -> List[str]:
        """One call of the script, within the pool's limit."""
        with self._gate.slot():
            try:
                reply = self._script(keys=self._keys, args=args)
            except _REDIS_ERRORS as err:
                raise _translate(err, self._address, self._gate) from err
        return self._positions(reply, args)

    def metrics_update(self, data: Any, *, key: Optional[str] = None, removed: bool = False) -> str:
        return self.publish(wire.METRICS_UPDATE, data, key=key, removed=removed)

    def alert(self, data: Any, *, key: Optional[str] = None, removed: bool = False) -> str:
        return self.publish(wire.ALERT, data, key=key, removed=removed)

    def intervention(self, data: Any, *, key: Optional[str] = None, removed: bool = False) -> str:
        return self.publish(wire.INTERVENTION, data, key=key, removed=removed)

    def analytics_update(self, data: Any) -> str:
        """Also becomes the snapshot every new dashboard connection is greeted with."""
        return self.publish(wire.ANALYTICS_UPDATE, data)

    def cluster_nodes(self) -> List[Dict[str, Any]]:
        """The status of every live gateway node (heartbeat within 5 s), as
        `/ws/status` lists them: `node_id`, `active_connections`, ..."""
        with self._gate.slot():
            try:
                index = wire.nodes_index_key(self._settings.channel_prefix)
                ids = self._client.zrangebyscore(index, self._live_cutoff_ms(), "+inf")
                if not ids:
                    return []
                entries = self._client.mget(self._node_keys(ids))
            except _REDIS_ERRORS as err:
                raise _translate(err, self._address, self._gate) from err
        return self._statuses(entries)

    def connection_count(self) -> int:
        """Dashboards connected to the whole cluster: the sum `/ws/status` reports."""
        return self._sum(self.cluster_nodes())

    def ping(self) -> None:
        """Raises `RedisUnavailableError` unless Redis answers (e.g. at startup)."""
        with self._gate.slot():
            try:
                self._client.ping()
            except _REDIS_ERRORS as err:
                raise _translate(err, self._address, self._gate) from err

    def close(self) -> None:
        """Closes the connections this publisher opened (not a passed-in client)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Publisher({self._settings!r})"


class AsyncPublisher(_Core):
    """The asyncio twin of `Publisher` (FastAPI, aiohttp, ...), on
    `redis.asyncio`:

    ```python
    publisher = AsyncPublisher.from_env()
    event_id = await publisher.alert({"tutor_id": "t-17", "severity": "critical"})
    ...
    await publisher.aclose()
    ```

    Creating one does no I/O; its client is created on first use. Use it from
    one event loop (redis.asyncio connections belong to the loop that opened
    them).
    """

    def __init__(
        self,
        redis_url: Optional[str] = None,
        *,
        settings: Optional[Settings] = None,
        client: Optional["aioredis.Redis"] = None,
        json_default: Optional[JsonDefault] = None,
        **options: Any,
    ) -> None:
        settings = _settings(redis_url, settings, options)
        super().__init__(settings, json_default)
        self._owns_client = client is None
        self._client: Optional[aioredis.Redis] = None
        self._script: Any = None
        self._address = "Redis"
        self._gate = pool.AsyncGate(settings.pool_size, settings.pool_timeout_secs)
        if client is not None:
            self._use(client)

    def _use(self, client: "aioredis.Redis") -> "aioredis.Redis":
        self._client = client
        self._address = _address(client, self._settings if self._owns_client else None)
        self._script = client.register_script(SCRIPT)
        if not self._owns_client:
            self._gate = pool.AsyncGate(self._gate_size(client), self._settings.pool_timeout_secs)
        return client

    def _redis(self) -> "aioredis.Redis":
        # Created on first use, inside the running loop: on Python 3.9 the
        # client's asyncio primitives bind to the loop current at creation,
        # which at import time is not the loop a server later runs.
        if self._client is None:
            return self._use(_async_client(self._settings))
        return self._client

    @classmethod
    def from_env(
        cls,
        environ: Optional[Mapping[str, str]] = None,
        *,
        client: Optional["aioredis.Redis"] = None,
        json_default: Optional[JsonDefault] = None,
        **overrides: Any,
    ) -> "AsyncPublisher":
        """Configured like the Rust CLI, from `REDIS_URL` (or `REDIS_SENTINELS`
        + `REDIS_SENTINEL_MASTER`), `REDIS_TLS_*`, `CHANNEL_PREFIX`,
        `HISTORY_SIZE`, `HISTORY_TTL_SECS`, `MAX_EVENT_BYTES`, `STATE_*`."""
        return cls(
            settings=Settings.from_env(environ, **overrides),
            client=client,
            json_default=json_default,
        )

    @property
    def client(self) -> "aioredis.Redis":
        """The redis.asyncio client (created on first use when not passed in)."""
        return self._redis()

    async def publish(self, message_type: str, data: Any, *, key: Optional[str] = None,
                      removed: bool = False) -> str:
        """See `Publisher.publish`. Publishes beyond `pool_size` at once (an
        `asyncio.gather` of thousands) wait their turn for a connection."""
        return (await self._run(self._prepare(message_type, data, key, removed)))[0]

    async def remove(self, message_type: str, key: str, data: Any = None) -> str:
        """See `Publisher.remove`."""
        return await self.publish(
            message_type, {} if data is None else data, key=key, removed=True
        )

    async def publish_many(
        self, events: Iterable[Any], *, batch_size: int = wire.DEFAULT_BATCH_EVENTS
    ) -> List[str]:
        """See `Publisher.publish_many`: the batches go out one after the
        other, in order."""
        batches = self._batches(events, batch_size)
        ids: List[str] = []
        for number, args in enumerate(batches):
            try:
                ids += await self._run(args)
            except PublishError as err:
                count = len(args) - _POLICY_ARGS
                raise _partly_published(err, ids, number, len(batches), len(ids), count)
        return ids

    async def _run(self, args: _Args) -> List[str]:
        """One call of the script, within the pool's limit."""
        self._redis()
        async with self._gate.slot():
            try:
                reply = await self._script(keys=self._keys, args=args)
            except _REDIS_ERRORS as err:
                raise _translate(err, self._address, self._gate) from err
        return self._positions(reply, args)

    async def metrics_update(self, data: Any, *, key: Optional[str] = None,
                             removed: bool = False) -> str:
        return await self.publish(wire.METRICS_UPDATE, data, key=key, removed=removed)

    async def alert(self, data: Any, *, key: Optional[str] = None,
                    removed: bool = False) -> str:
        return await self.publish(wire.ALERT, data, key=key, removed=removed)

    async def intervention(self, data: Any, *, key: Optional[str] = None,
                           removed: bool = False) -> str:
        return await self.publish(wire.INTERVENTION, data, key=key, removed=removed)

    async def analytics_update(self, data: Any) -> str:
        return await self.publish(wire.ANALYTICS_UPDATE, data)

    async def cluster_nodes(self) -> List[Dict[str, Any]]:
        """See `Publisher.cluster_nodes`."""
        client = self._redis()
        async with self._gate.slot():
            try:
                index = wire.nodes_index_key(self._settings.channel_prefix)
                ids = await client.zrangebyscore(index, self._live_cutoff_ms(), "+inf")
                if not ids:
                    return []
                entries = await client.mget(self._node_keys(ids))
            except _REDIS_ERRORS as err:
                raise _translate(err, self._address, self._gate) from err
        return self._statuses(entries)

    async def connection_count(self) -> int:
        return self._sum(await self.cluster_nodes())

    async def ping(self) -> None:
        client = self._redis()
        async with self._gate.slot():
            try:
                await client.ping()
            except _REDIS_ERRORS as err:
                raise _translate(err, self._address, self._gate) from err

    async def aclose(self) -> None:
        if not self._owns_client or self._client is None:
            return
        client, self._client = self._client, None  # a later publish opens anew
        if client is not None:
            closer = getattr(client, "aclose", None)  # redis-py >= 5
            await (closer() if closer is not None else client.close())

    async def __aenter__(self) -> "AsyncPublisher":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncPublisher({self._settings!r})"


def _settings(
    redis_url: Optional[str], settings: Optional[Settings], options: Dict[str, Any]
) -> Settings:
    if settings is not None:
        if redis_url is not None or options:
            raise TypeError("pass either settings=... or redis_url and options, not both")
        return settings
    if redis_url is not None:
        options["redis_url"] = redis_url
    return Settings(**options)
