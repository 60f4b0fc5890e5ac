"""How many Redis commands a publisher has in flight at once: at most its
pool's size (`pool_size`, `REDIS_POOL_SIZE`); more wait their turn, in order,
up to `pool_timeout_secs`, and then fail with `PoolExhaustedError`, which
says so.

Why a gate of our own rather than redis-py's pool alone: redis-py's default
pool refuses the connection past its limit (`MaxConnectionsError: Too many
connections`, a `ConnectionError`, so it read as "cannot reach Redis" while
Redis was fine), its blocking pool is not available with Sentinels, and both
changed between the redis-py versions this package supports. The gate sits
in front of the client: a publisher's own pool is sized to the gate, so it
never has to refuse; a caller's client gets a gate no larger than its pool.
"""

import asyncio
import collections
import threading
from contextlib import asynccontextmanager, contextmanager
from typing import Any, AsyncIterator, Deque, Iterator, Optional

from .errors import PoolExhaustedError

#: What redis-py says when its own pool is out of connections (the default
#: pool; the blocking pool after its timeout).
_REDIS_PY_POOL_ERRORS = ("Too many connections", "No connection available.")


def exhausted(pool_size: int, timeout_secs: float) -> PoolExhaustedError:
    """The error for a wait of `timeout_secs` on `pool_size` busy connections."""
    plural = "" if pool_size == 1 else "s"
    return PoolExhaustedError(
        f"no Redis connection became free within {timeout_secs:g} s: all {pool_size} "
        f"connection{plural} of this publisher's pool are busy (pool_size / REDIS_POOL_SIZE = "
        f"{pool_size}). This is not Redis being unreachable: more publishes were in flight at "
        "once than the pool serves in that time. Raise REDIS_POOL_SIZE (pool_size=) or "
        "REDIS_POOL_TIMEOUT_SECS (pool_timeout_secs=), or send bulk events with publish_many "
        "(one round trip per batch)",
        pool_size,
        timeout_secs,
    )


def is_redis_py_pool_error(err: BaseException) -> bool:
    """Whether redis-py refused a command for want of a pooled connection
    (a caller's client whose pool is smaller than it is asked to serve)."""
    return str(err) in _REDIS_PY_POOL_ERRORS


def pool_limit(client: Any) -> Optional[int]:
    """The most connections `client`'s pool opens, when it says."""
    limit = getattr(getattr(client, "connection_pool", None), "max_connections", None)
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None


class Gate:
    """At most `size` commands at once, for threads (`Publisher`)."""

    def __init__(self, size: int, timeout_secs: float) -> None:
        self.size = size
        self.timeout_secs = timeout_secs
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.timeout_secs):
            raise exhausted(self.size, self.timeout_secs)
        try:
            yield
        finally:
            self._slots.release()


class AsyncGate:
    """At most `size` commands at once, for one event loop (`AsyncPublisher`).

    First come, first served: a freed slot goes to the longest waiter. A
    waiter that times out or is cancelled leaves the queue without taking a
    slot (and passes on one handed to it as it was cancelled), so no slot is
    ever lost. Binds to no loop until used (Python 3.9's asyncio primitives
    bind at creation)."""

    def __init__(self, size: int, timeout_secs: float) -> None:
        self.size = size
        self.timeout_secs = timeout_secs
        self._free = size
        self._waiters: Deque["asyncio.Future[None]"] = collections.deque()

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        loop = asyncio.get_running_loop()
        waiter: "asyncio.Future[None]" = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self.timeout_secs, self._expire, waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # handed a slot just as we were cancelled
            raise
        finally:
            timer.cancel()
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    def _expire(self, waiter: "asyncio.Future[None]") -> None:
        if not waiter.done():
            waiter.set_exception(exhausted(self.size, self.timeout_secs))

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to it
                return
        self._free += 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()
