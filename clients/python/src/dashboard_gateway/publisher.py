"""`Publisher` (blocking) and `AsyncPublisher` (asyncio): a redis-py client
plus the wire format.

One publish is one `EVALSHA` of `publish.lua` (`SCRIPT LOAD` and again on
`NOSCRIPT`): the event is appended to the history stream, which gives it its
position, kept as the analytics snapshot when it is an `analytics_update`, and
published live with its `id` in front -- atomically, so history order is live
order.

A publish is never retried by this package: when a connection dies after the
command was sent, Redis may have run it, and a retry would publish the event
twice. The caller gets `RedisUnavailableError` and decides.
"""

import json
import secrets
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import wire
from .errors import RedisCommandError, RedisUnavailableError
from .script import SCRIPT
from .settings import Settings
from .wire import JsonDefault

#: How long connecting to Redis, or one command, may take (as the Rust crate).
REDIS_TIMEOUT_SECS = 5.0
#: A gateway node counts while its last heartbeat is this recent (as `/ws/status`).
NODE_TTL_MS = 5_000

_Args = List[Union[str, bytes]]


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

    def _prepare(self, message_type: str, data: Any) -> Tuple[List[str], _Args]:
        """Validates and encodes; raises before any I/O when the event is bad."""
        envelope = wire.encode_envelope(message_type, data, json_default=self._json_default)
        wire.check_size(envelope, self._settings.max_event_bytes)
        args: _Args = [
            str(self._settings.history_size),
            str(self._settings.history_ttl_secs * 1000),
            secrets.token_hex(4),
            envelope,
            "1" if message_type == wire.ANALYTICS_UPDATE else "0",
            wire.events_channel(self._settings.channel_prefix, message_type),
        ]
        return self._keys, args

    @staticmethod
    def _position(reply: Any) -> str:
        # The script answers a list: one position per event of the batch.
        if isinstance(reply, list) and len(reply) == 1:
            reply = reply[0]
        position = reply.decode("utf-8") if isinstance(reply, bytes) else reply
        if not isinstance(position, str) or not wire.is_position(position):
            raise RedisCommandError(f"Redis returned an event id that is not one: {reply!r}")
        return position

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


def _translate(err: Exception, address: str) -> Exception:
    if isinstance(err, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return RedisUnavailableError(f"cannot reach Redis at {address}: {err}")
    return RedisCommandError(f"Redis command failed: {err}")


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
        `HISTORY_SIZE`, `HISTORY_TTL_SECS`, `MAX_EVENT_BYTES`."""
        return cls(
            settings=Settings.from_env(environ, **overrides),
            client=client,
            json_default=json_default,
        )

    @property
    def client(self) -> "redis.Redis":
        return self._client

    def publish(self, message_type: str, data: Any) -> str:
        """Publishes `data` (anything `json.dumps` takes, or a `RawJSON`) as an
        event of `message_type`; returns its position (`id`) once Redis has it.

        Raises `InvalidTypeError`, `DataError` or `EventTooLargeError` before
        touching Redis; `RedisUnavailableError` or `RedisCommandError` after."""
        keys, args = self._prepare(message_type, data)
        try:
            reply = self._script(keys=keys, args=args)
        except _REDIS_ERRORS as err:
            raise _translate(err, self._address) from err
        return self._position(reply)

    def metrics_update(self, data: Any) -> str:
        return self.publish(wire.METRICS_UPDATE, data)

    def alert(self, data: Any) -> str:
        return self.publish(wire.ALERT, data)

    def intervention(self, data: Any) -> str:
        return self.publish(wire.INTERVENTION, data)

    def analytics_update(self, data: Any) -> str:
        """Also becomes the snapshot every new dashboard connection is greeted with."""
        return self.publish(wire.ANALYTICS_UPDATE, data)

    def cluster_nodes(self) -> List[Dict[str, Any]]:
        """The status of every live gateway node (heartbeat within 5 s), as
        `/ws/status` lists them: `node_id`, `active_connections`, ..."""
        try:
            index = wire.nodes_index_key(self._settings.channel_prefix)
            ids = self._client.zrangebyscore(index, self._live_cutoff_ms(), "+inf")
            if not ids:
                return []
            entries = self._client.mget(self._node_keys(ids))
        except _REDIS_ERRORS as err:
            raise _translate(err, self._address) from err
        return self._statuses(entries)

    def connection_count(self) -> int:
        """Dashboards connected to the whole cluster: the sum `/ws/status` reports."""
        return self._sum(self.cluster_nodes())

    def ping(self) -> None:
        """Raises `RedisUnavailableError` unless Redis answers (e.g. at startup)."""
        try:
            self._client.ping()
        except _REDIS_ERRORS as err:
            raise _translate(err, self._address) from err

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
        if client is not None:
            self._use(client)

    def _use(self, client: "aioredis.Redis") -> "aioredis.Redis":
        self._client = client
        self._address = _address(client, self._settings if self._owns_client else None)
        self._script = client.register_script(SCRIPT)
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
        `HISTORY_SIZE`, `HISTORY_TTL_SECS`, `MAX_EVENT_BYTES`."""
        return cls(
            settings=Settings.from_env(environ, **overrides),
            client=client,
            json_default=json_default,
        )

    @property
    def client(self) -> "aioredis.Redis":
        """The redis.asyncio client (created on first use when not passed in)."""
        return self._redis()

    async def publish(self, message_type: str, data: Any) -> str:
        """See `Publisher.publish`."""
        keys, args = self._prepare(message_type, data)
        self._redis()
        try:
            reply = await self._script(keys=keys, args=args)
        except _REDIS_ERRORS as err:
            raise _translate(err, self._address) from err
        return self._position(reply)

    async def metrics_update(self, data: Any) -> str:
        return await self.publish(wire.METRICS_UPDATE, data)

    async def alert(self, data: Any) -> str:
        return await self.publish(wire.ALERT, data)

    async def intervention(self, data: Any) -> str:
        return await self.publish(wire.INTERVENTION, data)

    async def analytics_update(self, data: Any) -> str:
        return await self.publish(wire.ANALYTICS_UPDATE, data)

    async def cluster_nodes(self) -> List[Dict[str, Any]]:
        """See `Publisher.cluster_nodes`."""
        try:
            index = wire.nodes_index_key(self._settings.channel_prefix)
            client = self._redis()
            ids = await client.zrangebyscore(index, self._live_cutoff_ms(), "+inf")
            if not ids:
                return []
            entries = await client.mget(self._node_keys(ids))
        except _REDIS_ERRORS as err:
            raise _translate(err, self._address) from err
        return self._statuses(entries)

    async def connection_count(self) -> int:
        return self._sum(await self.cluster_nodes())

    async def ping(self) -> None:
        try:
            await self._redis().ping()
        except _REDIS_ERRORS as err:
            raise _translate(err, self._address) from err

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
