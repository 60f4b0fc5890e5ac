"""A drop-in for TutorMax's `ConnectionManager`.

TutorMax's backend held every dashboard socket itself and looped over them to
broadcast. With the gateway, dashboards connect to the gateway's nodes and the
backend only publishes; this module keeps the calls the backend already makes:

```python
from dashboard_gateway.tutormax import get_connection_manager

manager = get_connection_manager()
await manager.broadcast("alert", {"tutor_id": "t-17", "severity": "critical"})
manager.get_connection_count()     # dashboards on every gateway node
```

`broadcast` is a coroutine, as before. `get_connection_count()` stays a plain
(blocking) call, as TutorMax calls it without `await`: one Redis round trip
(well under a millisecond on a LAN). In a coroutine that should not block,
`await manager.connection_count()` is the asyncio version.

`connect`, `disconnect` and `send_personal_message` raise `NotOnABusError`:
there are no sockets here to accept or to write to.
"""

import asyncio
import threading
import weakref
from typing import Any, Dict, List, NoReturn, Optional

from .errors import NotOnABusError
from .publisher import AsyncPublisher, Publisher
from .settings import Settings
from .wire import JsonDefault

_CONNECT = (
    "dashboards no longer connect to this backend: they connect to the gateway's "
    "/ws/dashboard (any node, behind the load balancer). Remove the backend's own "
    "WebSocket route and point the frontend (NEXT_PUBLIC_WS_URL) at the gateway; "
    "publish with `await manager.broadcast(message_type, data)`"
)
_SEND_PERSONAL = (
    "there is no per-socket send on a bus: the backend holds no dashboard sockets. "
    "Publish with `await manager.broadcast(message_type, data)`; to reach some "
    "dashboards only, publish a type of your own (e.g. 'alert.t-17') that only they "
    "ask for with ?types=, or put the recipient in `data` and filter in the client. "
    "Replies to a dashboard's 'ping' are the gateway's job"
)


class ConnectionManager:
    """TutorMax's `ConnectionManager`, publishing through the gateway's Redis
    history instead of holding sockets.

    Holds an `AsyncPublisher` for `broadcast` and a blocking `Publisher` for
    `get_connection_count`; both are created lazily from `settings`
    (default: the environment, as `Settings.from_env()`).
    """

    def __init__(
        self,
        settings: Optional[Settings] = None,
        *,
        json_default: Optional[JsonDefault] = None,
    ) -> None:
        self._settings = settings if settings is not None else Settings.from_env()
        self._json_default = json_default
        self._async: Optional[AsyncPublisher] = None
        self._async_loop: Optional["weakref.ReferenceType[asyncio.AbstractEventLoop]"] = None
        self._sync: Optional[Publisher] = None
        self._lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def publisher(self) -> AsyncPublisher:
        """The asyncio publisher behind `broadcast`, for the running event loop.

        redis.asyncio connections belong to the loop that opened them, and a
        process-wide manager may outlive a loop (tests that run one loop each,
        `asyncio.run` in a script): a new loop gets a new publisher."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._async is None or self._async_loop is None or self._async_loop() is not loop:
                self._async = AsyncPublisher(settings=self._settings, json_default=self._json_default)
                self._async_loop = weakref.ref(loop)
            return self._async

    @property
    def sync_publisher(self) -> Publisher:
        """The blocking publisher behind `get_connection_count` (created on first use)."""
        with self._lock:
            if self._sync is None:
                self._sync = Publisher(settings=self._settings, json_default=self._json_default)
            return self._sync

    async def broadcast(self, message_type: str, data: Any, *, key: Optional[str] = None,
                        removed: bool = False) -> str:
        """Sends `{"type": message_type, "data": data, "timestamp": ...}` to every
        dashboard on every gateway node, through the history (so a dashboard
        that was away gets it on resume). Returns the event's id.

        Keyed by the settings' `STATE_KEYS` (by default an alert or
        intervention by its `id`, metrics by `tutor_id` and `window`), so a
        dashboard opening with `?state=1` gets the current ones; a resolved
        alert or completed intervention (`STATE_TOMBSTONES`) removes its key.
        `key` and `removed` are `AsyncPublisher.publish`'s."""
        return await self.publisher.publish(message_type, data, key=key, removed=removed)

    def get_connection_count(self) -> int:
        """Dashboards connected to the whole cluster (what `/ws/status` sums).
        Blocking; raises `RedisUnavailableError` when Redis cannot be asked."""
        return self.sync_publisher.connection_count()

    async def connection_count(self) -> int:
        """`get_connection_count` for coroutines that must not block."""
        return await self.publisher.connection_count()

    def cluster_nodes(self) -> List[Dict[str, Any]]:
        """Every live gateway node's status (`node_id`, `active_connections`, ...)."""
        return self.sync_publisher.cluster_nodes()

    # What a bus cannot do. Plain methods, so the error comes at the call,
    # with or without `await`.

    def connect(self, websocket: Any = None, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotOnABusError(f"ConnectionManager.connect: {_CONNECT}")

    def disconnect(self, websocket: Any = None, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotOnABusError(f"ConnectionManager.disconnect: {_CONNECT}")

    def send_personal_message(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotOnABusError(f"ConnectionManager.send_personal_message: {_SEND_PERSONAL}")

    def send_personal(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotOnABusError(f"ConnectionManager.send_personal: {_SEND_PERSONAL}")

    @property
    def active_connections(self) -> NoReturn:
        raise NotOnABusError(
            "ConnectionManager.active_connections: the sockets are held by the gateway "
            "nodes; use get_connection_count() for how many there are"
        )

    async def aclose(self) -> None:
        """Closes both publishers' connections (e.g. at application shutdown)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            async_pub, async_loop, sync_pub = self._async, self._async_loop, self._sync
            self._async = self._sync = self._async_loop = None
        # Another loop's connections cannot be closed from this one; they go
        # with that loop.
        if async_pub is not None and async_loop is not None and async_loop() is loop:
            await async_pub.aclose()
        if sync_pub is not None:
            sync_pub.close()


_manager: Optional[ConnectionManager] = None
_manager_lock = threading.Lock()


def get_connection_manager() -> ConnectionManager:
    """The process-wide `ConnectionManager`, configured from the environment
    (`REDIS_URL`, `CHANNEL_PREFIX`, ...) on first call -- TutorMax's
    `get_connection_manager()`, and usable as a FastAPI dependency."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = ConnectionManager(Settings.from_env())
        return _manager
