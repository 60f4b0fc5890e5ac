"""How a publisher's redis-py client is built from its `Settings`: one Redis
from `redis_url` (`rediss:` for TLS), or the master the Sentinels name, each
side with its own TLS and credentials, as the Rust connector sets them.

Every client times out after `REDIS_TIMEOUT_SECS` and never retries a command
(a retried publish could go out twice, see `publisher`); its pool holds
`pool_size` connections, as many as the gate lets through (`pool`).
`_address` names where a client connects, for error messages.
"""

from typing import Any, Dict, Optional, Tuple

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from .settings import Settings

#: How long connecting to Redis, or one command, may take (as the Rust crate).
REDIS_TIMEOUT_SECS = 5.0


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
