"""The exceptions the package raises. Every one is a `GatewayError`."""


class GatewayError(Exception):
    """Base class of every error of this package."""


class ConfigError(GatewayError, ValueError):
    """A setting (environment variable or argument) is out of range."""


class PublishError(GatewayError):
    """An event could not be published."""


class InvalidTypeError(PublishError, ValueError):
    """The message type is not 1-64 characters of [A-Za-z0-9_.-], or is reserved."""


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


class NotOnABusError(GatewayError, NotImplementedError):
    """A per-socket operation of TutorMax's old ConnectionManager, which a bus cannot do."""
