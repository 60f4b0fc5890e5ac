"""What `Publisher` and `AsyncPublisher` share, with no I/O: `_Core` (the
settings, encoding and checking events, the script's arguments, cutting a
`publish_many` list into batches, reading the script's replies and the nodes'
statuses) and the helpers both publishers' calls use: reading one item of a
`publish_many` list (`_event`), turning a redis-py error into this package's
(`_translate`), and naming the event or batch an error is about
(`_in_batch`, `_partly_published`).

The publishers themselves (the I/O, blocking or asyncio) are in `publisher`;
how their redis-py clients are built, in `connection`.
"""

import json
import secrets
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import redis

from . import pool, wire
from .errors import PublishError, RedisCommandError, RedisUnavailableError
from .settings import Settings
from .wire import JsonDefault

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
