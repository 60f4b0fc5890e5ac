"""The wire contract, pure (no I/O): message types, the envelope, state keys,
Redis names.

Every rule here mirrors the Rust crates (`shared::kind`, `shared::envelope`,
`shared::state`, `shared::keys`), so an event written from Python is byte-for-byte the event the
Rust publisher would write, and refused for the same reasons with the same words.
"""

import json
import re
import unicodedata
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Set, Union

from .errors import DataError, EventTooLargeError, InvalidKeyError, InvalidTypeError

if TYPE_CHECKING:
    from .state import Keying

METRICS_UPDATE = "metrics_update"
ALERT = "alert"
INTERVENTION = "intervention"
ANALYTICS_UPDATE = "analytics_update"
#: The four types every dashboard understands. Any other valid name works too.
KNOWN_TYPES = (METRICS_UPDATE, ALERT, INTERVENTION, ANALYTICS_UPDATE)
#: Sent by the server only; publishing them is refused (`state` ends a
#: `?state=1` client's current state).
RESERVED_TYPES = ("recovery", "error", "state")

#: The bounds of one batch (one call of the script), as `publisher::batch`:
#: at most this many events,
MAX_BATCH_EVENTS = 1000
#: and, for more than one event, at most this many encoded bytes.
MAX_BATCH_BYTES = 4 * 1024 * 1024
#: Events per round trip when `publish_many` splits a long list.
DEFAULT_BATCH_EVENTS = 500
MAX_TYPE_LEN = 64
#: The longest state key, in UTF-8 bytes.
MAX_KEY_BYTES = 256

_TOKEN = re.compile(r"[A-Za-z0-9_.\-]+")


class RawJSON:
    """`data` that is already JSON text: it goes into the envelope byte for byte
    (no re-ordering of keys, no rewriting of numbers). Checked to be one valid
    JSON value (NaN and Infinity are not JSON and are refused)."""

    __slots__ = ("text",)

    def __init__(self, text: Union[str, bytes, bytearray]) -> None:
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"RawJSON is not valid UTF-8: {err}") from None
        if not isinstance(text, str):
            raise TypeError(f"RawJSON takes str or bytes, not {type(text).__name__}")
        try:
            json.loads(text, parse_constant=_refuse_constant)
        except ValueError as err:
            raise DataError(f"RawJSON is not valid JSON: {err}") from None
        self.text = text

    def __repr__(self) -> str:
        return f"RawJSON({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawJSON) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def rust_debug_str(value: str) -> str:
    """`value` quoted as Rust's `{:?}` quotes a `str`, so error messages match
    the Rust crate's: double quotes, backslash escapes, `\\u{..}` for characters
    that are not printable."""
    out = ['"']
    for ch in value:
        if ch in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[ch])
        elif " " <= ch <= "~":
            out.append(ch)
        elif _rust_escapes_unicode(ch):
            out.append("\\u{%x}" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_SIMPLE_ESCAPES = {"\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\", '"': '\\"', "\0": "\\0"}
_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs", "Mn", "Me"}


def _rust_escapes_unicode(ch: str) -> bool:
    # Rust escapes what is not printable, separators other than ' ', and
    # grapheme extenders (approximated by the combining-mark categories).
    return unicodedata.category(ch) in _UNPRINTABLE


def validate_type(message_type: str) -> None:
    """Raises `InvalidTypeError` unless `message_type` may be published: 1-64
    characters of `[A-Za-z0-9_.-]` (safe in a channel name, never a glob), and
    not `recovery` or `error`. The same checks, in the same order and with the
    same messages, as the Rust `shared::validate_kind`."""
    if not isinstance(message_type, str):
        raise TypeError(f"message type must be a str, not {type(message_type).__name__}")
    if message_type == "":
        reason = "message type is empty"
    elif len(message_type.encode("utf-8", "surrogatepass")) > MAX_TYPE_LEN:
        reason = f"message type is longer than {MAX_TYPE_LEN} characters"
    elif not _TOKEN.fullmatch(message_type):
        reason = (
            f"message type {rust_debug_str(message_type)} may only contain letters, "
            "digits, '_', '-' and '.'"
        )
    elif message_type in RESERVED_TYPES:
        reason = (
            f"message type {rust_debug_str(message_type)} is reserved for messages "
            "the server itself sends"
        )
    else:
        return
    raise InvalidTypeError(f"invalid message type: {reason}")


class Keyed(NamedTuple):
    """An event's place in the keyed state: its key, and whether it removes it."""

    key: str
    removed: bool = False


_CONTROL = re.compile("[\x00-\x1f]")


def validate_key(key: str) -> None:
    """Raises `InvalidKeyError` unless `key` may be a state key: 1 to
    `MAX_KEY_BYTES` bytes of UTF-8, no control characters (below U+0020).
    The checks, their order and messages are `shared::state::validate_key`'s."""
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, not {type(key).__name__}")
    if key == "":
        raise InvalidKeyError("a state key is empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"a state key is longer than {MAX_KEY_BYTES} bytes")
    if _CONTROL.search(key):
        raise InvalidKeyError("a state key may not contain control characters")


def explicit_key(key: Optional[str], removed: bool) -> Optional[Keyed]:
    """A caller's own key and removal, checked, with no rules applied."""
    if not isinstance(removed, bool):
        raise TypeError(f"removed must be a bool, not {type(removed).__name__}")
    if key is None:
        if removed:
            raise InvalidKeyError(
                "a removal needs a key (none given, and none derived from the data)"
            )
        return None
    validate_key(key)
    return Keyed(key, removed)


def format_timestamp(at: datetime) -> str:
    """RFC 3339, UTC, milliseconds (truncated): `2026-11-25T10:00:00.123Z`."""
    if at.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    at = at.astimezone(timezone.utc)
    return f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}Z"


JsonDefault = Callable[[Any], Any]


def _json_encoder(json_default: Optional[JsonDefault]) -> json.JSONEncoder:
    """What `json.dumps(..., separators=(",", ":"), ensure_ascii=False,
    allow_nan=False, default=...)` builds on every call, built once."""
    return json.JSONEncoder(
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=json_default,
    )


class Encoder:
    """Encodes envelopes with one JSON encoder and one timestamp: every
    event of a `publish_many` is stamped alike (as the Rust crate stamps a
    batch), and a type is validated once however often it recurs."""

    def __init__(self, json_default: Optional[JsonDefault] = None,
                 at: Optional[datetime] = None) -> None:
        self._json = _json_encoder(json_default).encode
        self._stamp = format_timestamp(at if at is not None else datetime.now(timezone.utc))
        self._valid: Set[str] = set()

    def data(self, data: Any) -> str:
        """`data` as compact JSON text; a `RawJSON` as given."""
        if isinstance(data, RawJSON):
            return data.text
        try:
            return self._json(data)
        except (TypeError, ValueError, RecursionError) as err:
            raise DataError(f"data does not serialize to JSON: {err}") from None

    def envelope(
        self,
        message_type: str,
        data: Any,
        key: Optional[str] = None,
        removed: bool = False,
        keying: "Optional[Keying]" = None,
    ) -> bytes:
        """See `encode_envelope`."""
        if type(message_type) is not str or message_type not in self._valid:
            validate_type(message_type)
            self._valid.add(message_type)
        data_json = self.data(data)
        if keying is not None:
            if not isinstance(removed, bool):
                raise TypeError(f"removed must be a bool, not {type(removed).__name__}")
            keyed = keying.key_for(message_type, data_json, key, removed)
        else:
            keyed = explicit_key(key, removed)
        if keyed is None:
            text = '{"type":"%s","data":%s,"timestamp":"%s"}' % (
                message_type,
                data_json,
                self._stamp,
            )
        else:
            # The order the publish script reads: type, key, removed, data.
            text = '{"type":"%s","key":%s%s,"data":%s,"timestamp":"%s"}' % (
                message_type,
                json.dumps(keyed.key, ensure_ascii=False),
                ',"removed":true' if keyed.removed else "",
                data_json,
                self._stamp,
            )
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise DataError(f"data does not serialize to UTF-8 JSON: {err}") from None


def encode_data(data: Any, json_default: Optional[JsonDefault] = None) -> str:
    """`data` as compact JSON text; a `RawJSON` as given."""
    return Encoder(json_default).data(data)


def encode_envelope(
    message_type: str,
    data: Any,
    at: Optional[datetime] = None,
    json_default: Optional[JsonDefault] = None,
    *,
    key: Optional[str] = None,
    removed: bool = False,
    keying: "Optional[Keying]" = None,
) -> bytes:
    """The envelope without an id, exactly as the Rust crate writes it:
    `{"type":"alert","data":{...},"timestamp":"2026-11-25T10:00:00.123Z"}`,
    as UTF-8. Validates the type first.

    With a state key, it follows the type (as a JSON string), then
    `"removed":true` for a removal:
    `{"type":"alert","key":"a-17","removed":true,"data":{...},"timestamp":...}`.
    The key is `key` (checked), or with `keying` (a `state.Keying`, as a
    publisher's settings make it) the one its rules derive."""
    return Encoder(json_default, at).envelope(message_type, data, key, removed, keying)


def check_size(envelope: bytes, max_event_bytes: int) -> None:
    if len(envelope) > max_event_bytes:
        raise EventTooLargeError(len(envelope), max_event_bytes)


# Redis names, all under one CHANNEL_PREFIX (see shared/src/keys.rs).


def events_channel(prefix: str, message_type: str) -> str:
    return f"{prefix}:events:{message_type}"


def analytics_key(prefix: str) -> str:
    return f"{prefix}:analytics:latest"


def history_key(prefix: str) -> str:
    return f"{prefix}:history"


def epoch_key(prefix: str) -> str:
    """`{{prefix}:history}:epoch`: hash-tagged into the history's cluster slot."""
    return "{%s:history}:epoch" % prefix


def keyed_types_key(prefix: str) -> str:
    """`{{prefix}:history}:keyed`: the set of types that have keyed state."""
    return "{%s:history}:keyed" % prefix


def state_key(prefix: str, message_type: str) -> str:
    """`{{prefix}:history}:state:<type>`: hash of escaped key -> the latest
    event of that key, with its id."""
    return "{%s:history}:state:%s" % (prefix, message_type)


def state_age_key(prefix: str, message_type: str) -> str:
    """`{{prefix}:history}:state-age:<type>`: sorted set of escaped key -> ms
    of its latest event (for STATE_MAX_KEYS and STATE_TTL_SECS)."""
    return "{%s:history}:state-age:%s" % (prefix, message_type)


def nodes_index_key(prefix: str) -> str:
    """Sorted set of gateway node ids scored by their last heartbeat (ms)."""
    return "{%s:nodes}" % prefix


def node_key(prefix: str, node_id: str) -> str:
    """One gateway node's JSON status, with a short expiry."""
    return "{%s:nodes}:%s" % (prefix, node_id)


_POSITION = re.compile(r"[^:]+:[0-9]+-[0-9]+")


def is_position(value: str) -> bool:
    """Whether `value` looks like an event position, `<epoch>:<ms>-<seq>`."""
    return _POSITION.fullmatch(value) is not None
