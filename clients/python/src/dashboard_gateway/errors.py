"""The exceptions the package raises. Every one is a `GatewayError`."""

from typing import List, Optional


class GatewayError(Exception):
    """Base class of every error of this package."""


class ConfigError(GatewayError, ValueError):
    """A setting (environment variable or argument) is out of range."""


class PublishError(GatewayError):
    """An event could not be published.

    Raised by `publish_many`, it may carry `index` (the bad event's place in
    the list: the message starts `events[3]: `) or `published` (the ids of
    the events published before a batch failed, in order)."""

    index: Optional[int] = None
    published: Optional[List[str]] = None


class InvalidTypeError(PublishError, ValueError):
    """The message type is not 1-64 characters of [A-Za-z0-9_.-], or is reserved."""


class InvalidKeyError(PublishError, ValueError):
    """A state key given by the caller is empty, over 256 bytes (UTF-8) or
    holds a control character; or a removal has no key (none given, none
    derived from the data). Raised before Redis is touched."""


class EventTooLargeError(PublishError, ValueError):
    """The encoded envelope is over MAX_EVENT_BYTES. Raised before Redis is touched."""

    def __init__(self, size: int, max_bytes: int) -> None:
        super().__init__(f"event is {size} bytes encoded, over MAX_EVENT_BYTES ({max_bytes})")
        self.size = size
        self.max_bytes = max_bytes


class DataError(PublishError, ValueError):
    """`data` is not JSON (or a `RawJSON` is not valid JSON text)."""


class RedisUnavailableError(PublishError, ConnectionError):
    """Redis could not be reached. The message names host and port, never a password."""


class RedisCommandError(PublishError):
    """Redis answered with an error (or something that is not an event position)."""


class PoolExhaustedError(PublishError, TimeoutError):
    """No connection of the publisher's pool became free in time: more
    commands were in flight at once than the pool holds (`pool_size`,
    `REDIS_POOL_SIZE`). Redis itself was not found unreachable. The message
    says the pool's size and how to raise it."""

    def __init__(self, message: str, pool_size: int, timeout_secs: float) -> None:
        super().__init__(message)
        self.pool_size = pool_size
        self.timeout_secs = timeout_secs


class NotOnABusError(GatewayError, NotImplementedError):
    """A per-socket operation of TutorMax's old ConnectionManager, which a bus cannot do."""
