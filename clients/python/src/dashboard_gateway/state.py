"""Keyed state, pure (no I/O): which events are keyed, which remove their key.

The gateway keeps the latest event per key of a type beside the history, so a
dashboard opening with `?state=1` gets the current alerts, interventions and
per-tutor metrics before the live stream. A publisher decides each event's
key: from the fields configured for its type (`STATE_KEYS`), or given by the
caller. A tombstone (`STATE_TOMBSTONES`, or `removed=True`) takes the key out.
Key and removal travel in the envelope, after the type:
`{"type":"alert","key":"a-17","removed":true,"data":...}` (see `wire`).

The rules, the defaults and the messages are the Rust `shared::state`'s
(`shared/src/state.rs`; a test checks the defaults agree), so an event keyed
from Python lands under the same key as one from the Rust crate or
`/api/publish`.
"""

import json
import math
from typing import Any, Dict, List, Optional, Tuple

from .errors import ConfigError, InvalidKeyError, InvalidTypeError
from .wire import Keyed, rust_debug_str, validate_key, validate_type

#: `STATE_KEYS` unless configured: TutorMax's types, keyed the way its
#: dashboard merges them (one row per tutor and window, one per alert and task).
DEFAULT_STATE_KEYS = "metrics_update=tutor_id+window,alert=id,intervention=id"
#: `STATE_TOMBSTONES` unless configured: a resolved alert and a completed
#: intervention are no longer current.
DEFAULT_STATE_TOMBSTONES = "alert=status:resolved,intervention=status:completed"
#: `STATE_MAX_KEYS` unless configured: keys kept per type; at the bound the
#: least recently updated key makes room.
DEFAULT_STATE_MAX_KEYS = 100_000
#: `STATE_TTL_SECS` unless configured: a key not updated for a week leaves the
#: state (0: no age limit).
DEFAULT_STATE_TTL_SECS = 7 * 24 * 3600

#: What joins the values of a key made of several fields (`\` and `|` in a
#: value are escaped with `\` first, so two keys never collide).
JOIN = "|"

# serde_json reads integers in these bounds as integers, others as f64.
_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1


class Keying:
    """The rules a publisher keys events by: `STATE_KEYS` and
    `STATE_TOMBSTONES`, parsed (`Keying.parse`)."""

    __slots__ = ("_fields", "_tombstones")

    def __init__(self, fields: Dict[str, Tuple[str, ...]],
                 tombstones: Dict[str, Tuple[Tuple[str, str], ...]]) -> None:
        self._fields = fields
        self._tombstones = tombstones

    @classmethod
    def none(cls) -> "Keying":
        """No event keyed (explicit keys still work)."""
        return cls({}, {})

    @classmethod
    def default(cls) -> "Keying":
        return cls.parse(DEFAULT_STATE_KEYS, DEFAULT_STATE_TOMBSTONES)

    @classmethod
    def parse(cls, keys: str, tombstones: str) -> "Keying":
        """Parses `STATE_KEYS` (`type=field[+field...]`, comma separated) and
        `STATE_TOMBSTONES` (`type=field:value`, comma separated, several per
        type allowed); `none` or empty for no rules. Raises `ConfigError`
        with the Rust crate's message, naming the variable."""
        fields: Dict[str, Tuple[str, ...]] = {}
        for item in _items(keys):
            kind, sep, names = item.partition("=")
            if not sep:
                raise ConfigError(
                    f"STATE_KEYS: {rust_debug_str(item)} is not type=field[+field...]"
                )
            kind = _checked_kind(kind, "STATE_KEYS")
            parts = tuple(name.strip() for name in names.split("+"))
            if any(not name for name in parts):
                raise ConfigError(f"STATE_KEYS: {rust_debug_str(item)} names an empty field")
            if kind in fields:
                raise ConfigError(f"STATE_KEYS: {rust_debug_str(kind)} is keyed twice")
            fields[kind] = parts
        rules: Dict[str, List[Tuple[str, str]]] = {}
        for item in _items(tombstones):
            kind, sep, rule = item.partition("=")
            field, colon, value = rule.partition(":")
            if not sep or not colon or not field.strip():
                raise ConfigError(
                    f"STATE_TOMBSTONES: {rust_debug_str(item)} is not type=field:value"
                )
            kind = _checked_kind(kind, "STATE_TOMBSTONES")
            rules.setdefault(kind, []).append((field.strip(), value.strip()))
        return cls(fields, {kind: tuple(r) for kind, r in rules.items()})

    def is_empty(self) -> bool:
        """Whether no type is keyed by fields and none has tombstones."""
        return not self._fields and not self._tombstones

    def key_for(self, kind: str, data_json: str, key: Optional[str] = None,
                removed: bool = False) -> Optional[Keyed]:
        """The key and removal of an event of `kind` whose data is the JSON
        text `data_json` (as it goes into the envelope).

        An explicit `key` wins (and is checked: `InvalidKeyError`). Otherwise
        the type's fields make it: `data` must be an object holding every
        field as a string, number or boolean, and the result a valid key, or
        the event is published unkeyed (None), never refused. `removed`, or
        a matching tombstone rule, makes the event a removal; an explicit
        removal with no key at all is the caller's mistake (`InvalidKeyError`),
        while a rule matching an unkeyed event leaves it unkeyed."""
        fields = self._fields.get(kind)
        rules = self._tombstones.get(kind)
        # The data is read only for a type that has rules, and from the very
        # text that is published, as the Rust crate reads it.
        value = _parse(data_json) if (fields is not None and key is None) or rules else None
        if key is not None:
            validate_key(key)
        elif fields is not None and value is not None:
            key = _derive(fields, value)
            if key is not None and not _valid(key):
                key = None
        tombstone = value is not None and rules is not None and any(
            _scalar(_get(value, field)) == expected for field, expected in rules
        )
        if key is not None:
            return Keyed(key, removed or tombstone)
        if removed:
            raise InvalidKeyError(
                "a removal needs a key (none given, and none derived from the data)"
            )
        return None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Keying)
            and other._fields == self._fields
            and other._tombstones == self._tombstones
        )

    def __hash__(self) -> int:
        return hash((tuple(self._fields.items()), tuple(self._tombstones.items())))

    def __repr__(self) -> str:
        return f"Keying(fields={self._fields!r}, tombstones={self._tombstones!r})"


def _items(spec: str) -> List[str]:
    if not isinstance(spec, str):
        raise ConfigError(f"a state rule must be a string, not {type(spec).__name__}")
    spec = spec.strip()
    if not spec or spec.lower() == "none":
        return []
    return [item.strip() for item in spec.split(",") if item.strip()]


def _checked_kind(kind: str, what: str) -> str:
    kind = kind.strip()
    try:
        validate_type(kind)
    except InvalidTypeError as err:
        reason = str(err)
        prefix = "invalid message type: "
        if reason.startswith(prefix):
            reason = reason[len(prefix):]
        raise ConfigError(f"{what}: {reason}") from None
    return kind


def _valid(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKeyError:
        return False
    return True


def _derive(fields: Tuple[str, ...], data: Any) -> Optional[str]:
    """The key `fields` make of `data` (a parsed JSON value), or None: one
    field's value as it is; several joined with `|`, each with `\\` -> `\\\\`
    and `|` -> `\\|` first. Not yet checked against the key rules."""
    values = []
    for field in fields:
        text = _scalar(_get(data, field))
        if text is None:
            return None
        values.append(text)
    if len(values) == 1:
        return values[0]
    return JOIN.join(v.replace("\\", "\\\\").replace(JOIN, "\\" + JOIN) for v in values)


_MISSING = object()


def _get(value: Any, field: str) -> Any:
    return value.get(field, _MISSING) if isinstance(value, dict) else _MISSING


def _scalar(value: Any) -> Optional[str]:
    """A scalar's text: a string as it is, a number or boolean as serde_json
    writes it (17 -> "17", 1.5 -> "1.5", true -> "true"); None otherwise."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    return None


def _float_text(value: float) -> str:
    """`value` as serde_json (zmij) writes an f64: the shortest digits that
    read back as `value` (Python's `repr` finds the same ones), in plain
    notation for decimal exponents -5 to 15 (`0.00001`, `1e15` ->
    `1000000000000000.0`), else `1.5e+16`, `1e-6` (no padding)."""
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if not e:
        return text  # repr's plain range (-4 to 15) is inside zmij's
    exp = int(exponent)
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "")
    if exp == -5:
        return f"{sign}0.0000{digits}"
    return f"{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp)}"


def _rust_int(text: str) -> Any:
    """An integer as serde_json reads it: in i64/u64 range exact, else (and
    `-0`) as an f64."""
    number = int(text)
    if _I64_MIN <= number <= _U64_MAX and text != "-0":
        return number
    return _rust_float(text)


def _rust_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError("number out of range")  # serde_json refuses it too
    return number


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse(data_json: str) -> Any:
    """`data_json` as serde_json would read it, or None when it would not."""
    try:
        return json.loads(data_json, parse_int=_rust_int, parse_float=_rust_float,
                          parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None
