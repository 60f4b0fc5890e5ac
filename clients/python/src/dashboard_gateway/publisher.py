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
"""

import json
import secrets
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import pool, wire
from .errors import PublishError, RedisCommandError, RedisUnavailableError
from .script import SCRIPT
from .settings import Settings
from .wire import JsonDefault

#: How long connecting to Redis, or one command, may take (as the Rust crate).
REDIS_TIMEOUT_SECS = 5.0
#: A gateway node counts while its last heartbeat is this recent (as `/ws/status`):
#: `shared::status::NODE_TTL_SECS` (a test checks they agree).
NODE_TTL_MS = 5_000

_Args = List[Union[str, bytes]]
#: The script's arguments before the envelopes (ARGV[1..6], see `publish.lua`).
_POLICY_ARGS = 6
#: What `publish_many` takes in an event given as a mapping.
_EVENT_FIELDS = ("type", "data", "key", "removed")


class _Core:
    """What both publishers share: settings, encoding, the script's arguments,
    reading the replies. No I/O."""

    def __init__(self, settings: Settings, json_default: Optional[JsonDefault]) -> None:
        if not isinstance(settings, Settings):
            raise TypeError(f"settings must be a Settings, not {type(settings).__name__}")
        self._settings = settings
        self._json_default = json_default
        prefix = settings.channel_prefix
        self._keys = [wire.history_key(prefix), wire.epoch_key(prefix), wire.analytics_key(prefix)]

    @property
    def settings(self) -> Settings:
        return self._settings

    def _encode(self, message_type: str, data: Any, key: Optional[str] = None,
                removed: bool = False) -> bytes:
        """Validates, keys and encodes one event; raises before any I/O when
        it is bad."""
        envelope = wire.encode_envelope(
            message_type, data, json_default=self._json_default, key=key, removed=removed,
            keying=self._settings.keying,
        )
        wire.check_size(envelope, self._settings.max_event_bytes)
        return envelope

    def _args(self, envelopes: Sequence[bytes]) -> _Args:
        """The script's arguments for one batch (see `publish.lua`): the
        history policy, the live channels' prefix, the state's bounds, then
        one envelope per event (each names its type first, then any key,
        where the script reads them)."""
        args: _Args = [
            str(self._settings.history_size),
            str(self._settings.history_ttl_secs * 1000),
            secrets.token_hex(4),
            wire.events_channel(self._settings.channel_prefix, ""),
            str(self._settings.state_max_keys),
            str(self._settings.state_ttl_secs * 1000),
        ]
        args.extend(envelopes)
        return args

    def _prepare(self, message_type: str, data: Any, key: Optional[str] = None,
                 removed: bool = False) -> _Args:
        """One event as a batch of one; raises before any I/O when it is bad."""
        return self._args([self._encode(message_type, data, key, removed)])

    def _batches(self, events: Iterable[Any], batch_size: int) -> List[_Args]:
        """Every event encoded and checked first (the first bad one raises,
        its `index` set and named in the message: nothing is sent), then cut
        into batches of at most `batch_size` events and `MAX_BATCH_BYTES`."""
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or not 1 <= batch_size <= wire.MAX_BATCH_EVENTS
        ):
            raise ValueError(
                f"batch_size must be a whole number from 1 to {wire.MAX_BATCH_EVENTS} "
                f"(got {batch_size!r})"
            )
        # One JSON encoder and one timestamp for the whole list, as the Rust
        # crate stamps a batch: the per-event cost is the JSON itself.
        encoder = wire.Encoder(self._json_default)
        keying = self._settings.keying
        max_bytes = self._settings.max_event_bytes
        batches: List[List[bytes]] = []
        current: List[bytes] = []
        size = 0
        for index, event in enumerate(events):
            message_type, data, key, removed = _event(index, event)
            try:
                envelope = encoder.envelope(message_type, data, key, removed, keying)
                wire.check_size(envelope, max_bytes)
            except PublishError as err:
                raise _in_batch(err, index) from None
            if current and (
                len(current) >= batch_size or size + len(envelope) > wire.MAX_BATCH_BYTES
            ):
                batches.append(current)
                current, size = [], 0
            current.append(envelope)
            size += len(envelope)
        if current:
            batches.append(current)
        return [self._args(batch) for batch in batches]

    @staticmethod
    def _position(reply: Any) -> str:
        position = reply.decode("utf-8") if isinstance(reply, bytes) else reply
        if not isinstance(position, str) or not wire.is_position(position):
            raise RedisCommandError(f"Redis returned an event id that is not one: {reply!r}")
        return position

    @classmethod
    def _positions(cls, reply: Any, args: _Args) -> List[str]:
        """The script's answer for a batch: one position per event, in order,
        joined by ','."""
        expected = len(args) - _POLICY_ARGS
        text = reply.decode("utf-8") if isinstance(reply, bytes) else reply
        ids = text.split(",") if isinstance(text, str) else []
        if len(ids) != expected:
            raise RedisCommandError(f"Redis answered {reply!r} for a batch of {expected} events")
        return [cls._position(one) for one in ids]

    def _gate_size(self, client: Any) -> int:
        """The pool size, but no more than a caller's client's pool holds."""
        limit = pool.pool_limit(client)
        size = self._settings.pool_size
        return min(size, limit) if limit is not None else size

    def _live_cutoff_ms(self) -> int:
        return int(time.time() * 1000) - NODE_TTL_MS

    def _node_keys(self, ids: Sequence[Any]) -> List[str]:
        prefix = self._settings.channel_prefix
        return [wire.node_key(prefix, _text(node_id)) for node_id in ids]

    @staticmethod
    def _statuses(entries: Sequence[Any]) -> List[Dict[str, Any]]:
        statuses = []
        for entry in entries:
            if entry is None:
                continue  # expired between the two reads
            try:
                status = json.loads(entry)
            except ValueError:
                continue
            if isinstance(status, dict):
                statuses.append(status)
        return statuses

    @staticmethod
    def _sum(statuses: Sequence[Mapping[str, Any]]) -> int:
        total = 0
        for status in statuses:
            count = status.get("active_connections")
            if isinstance(count, int) and not isinstance(count, bool):
                total += count
        return total


def _event(index: int, event: Any) -> Tuple[Any, Any, Optional[str], bool]:
    """One item of a `publish_many` list: a `(type, data)` pair, or a mapping
    `{"type", "data", "key"?, "removed"?}` (a removal's data defaults to {})."""
    if isinstance(event, Mapping):
        unknown = [name for name in event if name not in _EVENT_FIELDS]
        if unknown or "type" not in event or ("data" not in event and not event.get("removed")):
            wrong = f"unknown {unknown!r}" if unknown else "no 'type' or 'data'"
            raise TypeError(
                f"events[{index}] is a mapping with {wrong}: it takes 'type', 'data' "
                "(optional for a removal), and optionally 'key' and 'removed'"
            )
        key, removed = event.get("key"), event.get("removed", False)
        if (key is not None and not isinstance(key, str)) or not isinstance(removed, bool):
            raise TypeError(
                f"events[{index}]: 'key' must be a str and 'removed' a bool "
                f"(got {type(key).__name__} and {type(removed).__name__})"
            )
        return event["type"], event.get("data", {}), key, removed
    try:
        message_type, data = event
    except (TypeError, ValueError):
        raise TypeError(
            f"events[{index}] is not a (type, data) pair or a mapping with 'type' and "
            f"'data': {type(event).__name__}"
        ) from None
    return message_type, data, None, False


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _address(client: Any, settings: Optional[Settings] = None) -> str:
    """Where `client` connects, for error messages: host:port or a socket
    path, or the master's name and the Sentinels; never a password."""
    if settings is not None and settings.sentinel is not None:
        return settings.sentinel.shown
    try:
        kwargs = client.connection_pool.connection_kwargs
    except AttributeError:
        return "(a caller-supplied client)"
    if kwargs.get("path"):
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def _client_options(settings: Settings, tls: bool, retry: Any) -> Dict[str, Any]:
    options: Dict[str, Any] = {
        "socket_connect_timeout": REDIS_TIMEOUT_SECS,
        "socket_timeout": REDIS_TIMEOUT_SECS,
        "retry": retry,
        # As many as the gate lets through (pool.py): the pool never refuses.
        "max_connections": settings.pool_size,
    }
    if tls:
        options.update(settings.tls_options())
    return options


def _sentinel_options(settings: Settings, retry: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """redis-py keyword arguments for the Sentinels and for the master, as
    the Rust connector sets them: each side's TLS and credentials."""
    target = settings.sentinel
    assert target is not None
    sentinel_kwargs = _client_options(settings, target.sentinel_tls, retry)
    del sentinel_kwargs["max_connections"]  # the Sentinels are asked one at a time
    master_kwargs = _client_options(settings, target.master_tls, retry)
    for kwargs, tls, auth in (
        (sentinel_kwargs, target.sentinel_tls, target.sentinel_auth),
        (master_kwargs, target.master_tls, target.master_auth),
    ):
        if tls:
            kwargs["ssl"] = True
        if auth.username is not None:
            kwargs["username"] = auth.username
        if auth.password is not None:
            kwargs["password"] = auth.password
    return sentinel_kwargs, master_kwargs


def _sync_client(settings: Settings) -> "redis.Redis":
    """A client for `settings`: one Redis, or the master the Sentinels name,
    asked again for every new connection (so a failover is followed)."""
    retry = Retry(NoBackoff(), 0)
    target = settings.sentinel
    if target is not None:
        sentinel_kwargs, master_kwargs = _sentinel_options(settings, retry)
        sentinel = redis.sentinel.Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)
        return sentinel.master_for(target.master, **master_kwargs)
    url = settings.redis_url or ""
    return redis.Redis.from_url(url, **_client_options(settings, url.startswith("rediss:"), retry))


def _async_client(settings: Settings) -> "aioredis.Redis":
    """`_sync_client` for asyncio."""
    retry = AsyncRetry(NoBackoff(), 0)
    target = settings.sentinel
    if target is not None:
        sentinel_kwargs, master_kwargs = _sentinel_options(settings, retry)
        sentinel = redis.asyncio.sentinel.Sentinel(
            list(target.sentinels), sentinel_kwargs=sentinel_kwargs
        )
        return sentinel.master_for(target.master, **master_kwargs)
    url = settings.redis_url or ""
    return aioredis.Redis.from_url(
        url, **_client_options(settings, url.startswith("rediss:"), retry)
    )


def _translate(err: Exception, address: str, gate: Any) -> Exception:
    if isinstance(err, redis.exceptions.ConnectionError) and pool.is_redis_py_pool_error(err):
        # A caller's client whose own pool ran out: the pool's doing, not Redis's.
        return pool.exhausted(gate.size, gate.timeout_secs)
    if isinstance(err, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return RedisUnavailableError(f"cannot reach Redis at {address}: {err}")
    return RedisCommandError(f"Redis command failed: {err}")


def _in_batch(err: PublishError, index: int) -> PublishError:
    """`err`, about the event at `index` of a `publish_many` list."""
    err.args = (f"events[{index}]: {err}",)
    err.index = index
    return err


def _partly_published(err: Exception, published: List[str], batch: int, batches: int,
                      first: int, count: int) -> Exception:
    """`err` (a `PublishError`) of batch `batch` of a `publish_many`, saying
    what went out before it (`published`, also its attribute)."""
    if not isinstance(err, PublishError) or batches == 1:
        return err
    err.args = (
        f"{err} (batch {batch + 1} of {batches}, events[{first}:{first + count}]: published "
        f"whole or not at all; the {len(published)} events before it were published, their "
        "ids in .published; none after it was sent)",
    )
    err.published = list(published)
    return err


_REDIS_ERRORS = (redis.exceptions.RedisError,)


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
