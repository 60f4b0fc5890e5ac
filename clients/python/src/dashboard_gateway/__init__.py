"""Publish events to the dashboard gateway from Python.

Every event goes through the gateway's one write script (`publish.lua`, shared
with the Rust `publisher` crate): appended to the bounded history, given its
position (`id`), and published live to every gateway node, atomically.

```python
from dashboard_gateway import Publisher, AsyncPublisher

publisher = Publisher.from_env()     # REDIS_URL, CHANNEL_PREFIX, HISTORY_SIZE, ...
publisher.alert({"tutor_id": "t-17", "severity": "critical"})
publisher.publish_many([("metrics_update", m) for m in nightly_metrics])  # batches
publisher.remove("alert", "a-17")    # a tombstone: the key leaves the state
```

Events of a keyed type (`STATE_KEYS`: by default alerts and interventions by
`id`, metrics by `tutor_id` + `window`) are also kept as the latest per key,
which dashboards opening with `?state=1` get first.

Layout: `wire` (types, envelope, state keys, Redis names; no I/O), `state`
(which events are keyed and removed; no I/O), `settings`
(environment), `script` (the Lua source), `publisher` (`Publisher`,
`AsyncPublisher`), `core` (what both share: encoding, batches, replies,
errors; no I/O), `connection` (their redis-py clients, from `Settings`),
`pool` (commands in flight), `tutormax` (the drop-in `ConnectionManager`),
`errors`.
"""

from .errors import (
    ConfigError,
    DataError,
    EventTooLargeError,
    GatewayError,
    InvalidKeyError,
    InvalidTypeError,
    NotOnABusError,
    PoolExhaustedError,
    PublishError,
    RedisCommandError,
    RedisUnavailableError,
)
from .publisher import AsyncPublisher, Publisher
from .settings import Settings
from .state import (
    DEFAULT_STATE_KEYS,
    DEFAULT_STATE_MAX_KEYS,
    DEFAULT_STATE_TOMBSTONES,
    DEFAULT_STATE_TTL_SECS,
    Keying,
)
from .tutormax import ConnectionManager, get_connection_manager
from .wire import (
    ALERT,
    ANALYTICS_UPDATE,
    DEFAULT_BATCH_EVENTS,
    INTERVENTION,
    KNOWN_TYPES,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_KEY_BYTES,
    METRICS_UPDATE,
    Keyed,
    RawJSON,
    encode_envelope,
    validate_key,
    validate_type,
)

__version__ = "0.1.0"

__all__ = [
    "ALERT",
    "ANALYTICS_UPDATE",
    "AsyncPublisher",
    "ConfigError",
    "ConnectionManager",
    "DEFAULT_BATCH_EVENTS",
    "DEFAULT_STATE_KEYS",
    "DEFAULT_STATE_MAX_KEYS",
    "DEFAULT_STATE_TOMBSTONES",
    "DEFAULT_STATE_TTL_SECS",
    "DataError",
    "EventTooLargeError",
    "GatewayError",
    "INTERVENTION",
    "InvalidKeyError",
    "InvalidTypeError",
    "KNOWN_TYPES",
    "Keyed",
    "Keying",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "MAX_KEY_BYTES",
    "METRICS_UPDATE",
    "NotOnABusError",
    "PoolExhaustedError",
    "PublishError",
    "Publisher",
    "RawJSON",
    "RedisCommandError",
    "RedisUnavailableError",
    "Settings",
    "encode_envelope",
    "get_connection_manager",
    "validate_key",
    "validate_type",
]
