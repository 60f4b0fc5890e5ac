"""Keyed state without I/O: how an event's key and removal are derived
(STATE_KEYS, STATE_TOMBSTONES), checked and encoded, and the settings that
configure them. The rules and messages are the Rust `shared::state`'s."""

import decimal
import json
import re
from datetime import datetime, timezone

import pytest

from conftest import REPO
from dashboard_gateway import (
    DEFAULT_STATE_KEYS,
    DEFAULT_STATE_MAX_KEYS,
    DEFAULT_STATE_TOMBSTONES,
    DEFAULT_STATE_TTL_SECS,
    ConfigError,
    InvalidKeyError,
    InvalidTypeError,
    Keyed,
    Keying,
    RawJSON,
    Settings,
    encode_envelope,
    validate_key,
)
from dashboard_gateway.wire import Encoder

AT = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=timezone.utc)
DEFAULTS = Keying.default()


def key_of(message_type, data, keying=DEFAULTS, **explicit):
    """The key and removal a publisher gives `data`, from the envelope it writes."""
    envelope = json.loads(encode_envelope(message_type, data, AT, keying=keying, **explicit))
    if "key" not in envelope:
        return None
    return Keyed(envelope["key"], envelope.get("removed", False))


def test_tutormax_types_are_keyed_the_way_its_dashboard_merges_them():
    assert key_of("metrics_update", {"tutor_id": "t-1", "window": "7day", "x": 1}) == Keyed(
        "t-1|7day", False
    )
    assert key_of("alert", {"id": 17, "severity": "critical"}) == Keyed("17", False)
    assert key_of("intervention", {"id": "i-1", "status": "pending"}) == Keyed("i-1", False)
    assert key_of("analytics_update", {"id": "x"}) is None, "not a keyed type"
    assert key_of("test_message", {"id": "x"}) is None, "not a keyed type"


def test_values_holding_the_separator_cannot_collide():
    a = key_of("metrics_update", {"tutor_id": "a|b", "window": "c"})
    b = key_of("metrics_update", {"tutor_id": "a", "window": "b|c"})
    assert (a.key, b.key) == (r"a\|b|c", r"a|b\|c")
    assert key_of("metrics_update", {"tutor_id": "a\\", "window": "c"}).key == r"a\\|c"
    assert key_of("metrics_update", {"tutor_id": "a", "window": "\\|c"}).key == r"a|\\\|c"
    # One field: the value as it is, nothing escaped.
    assert key_of("alert", {"id": r"a|b\c"}).key == r"a|b\c"


def test_numbers_and_booleans_key_by_their_json_text():
    assert key_of("alert", {"id": 17}).key == "17"
    assert key_of("alert", {"id": -3}).key == "-3"
    assert key_of("alert", {"id": 1.5}).key == "1.5"
    assert key_of("alert", {"id": 2.0}).key == "2.0"
    assert key_of("alert", {"id": True}).key == "true"
    assert key_of("metrics_update", {"tutor_id": 7, "window": False}).key == "7|false"
    # As serde_json writes an f64 (plain from 1e-5 up to 1e15, then exponents).
    assert key_of("alert", {"id": 1e15}).key == "1000000000000000.0"
    assert key_of("alert", {"id": 1e16}).key == "1e+16"
    assert key_of("alert", {"id": 0.00001}).key == "0.00001"
    assert key_of("alert", {"id": 1.5e-7}).key == "1.5e-7"
    # RawJSON is read as the Rust crate reads it: 1.50 is the f64 1.5, an
    # integer past u64 an f64, -0 the f64 -0.0.
    assert key_of("alert", RawJSON('{"id": 1.50}')).key == "1.5"
    assert key_of("alert", RawJSON('{"id": 18446744073709551615}')).key == "18446744073709551615"
    assert key_of("alert", RawJSON('{"id": 18446744073709551616}')).key == "1.8446744073709552e+19"
    assert key_of("alert", RawJSON('{"id": -0}')).key == "-0.0"
    # What json_default makes of a value is what is keyed: the published text.
    envelope = Encoder(str, AT).envelope("alert", {"id": decimal.Decimal("9.10")}, keying=DEFAULTS)
    assert json.loads(envelope)["key"] == "9.10"


def test_an_event_without_its_key_fields_is_published_unkeyed():
    for message_type, data in [
        ("metrics_update", {"tutor_id": "t-1"}),  # a field missing
        ("alert", {"id": {"nested": 1}}),
        ("alert", {"id": [1]}),
        ("alert", {"id": None}),
        ("alert", [1, 2]),  # not an object
        ("alert", "a-1"),
        ("alert", {"id": ""}),  # an empty key
        ("alert", {"id": "a\nb"}),  # a control character
        ("alert", {"id": "k" * 257}),  # too long
        ("alert", {"status": "resolved"}),  # a resolved alert with no id removes nothing
        ("alert", RawJSON('{"id": 1e400}')),  # not a number serde_json reads
    ]:
        assert key_of(message_type, data) is None, data
    assert key_of("alert", {"id": "k" * 256}).key == "k" * 256, "256 bytes is a key"


def test_tombstones_match_strings_and_scalars():
    assert key_of("alert", {"id": "a", "status": "resolved"}) == Keyed("a", True)
    assert key_of("alert", {"id": "a", "status": "open"}) == Keyed("a", False)
    assert key_of("intervention", {"id": "i", "status": "completed"}) == Keyed("i", True)
    assert key_of("metrics_update", {"tutor_id": "t", "window": "w", "status": "resolved"}) == (
        Keyed("t|w", False)
    ), "no tombstone rule for metrics_update"
    keying = Keying.parse("alert=id", "alert=resolved:true, alert=level:3")
    assert key_of("alert", {"id": "a", "resolved": True}, keying).removed
    assert not key_of("alert", {"id": "a", "resolved": "yes"}, keying).removed
    assert key_of("alert", {"id": "a", "resolved": "true"}, keying).removed
    assert key_of("alert", {"id": "a", "level": 3}, keying).removed, "any rule of the type"
    assert not key_of("alert", {"id": "a", "level": 3.0}, keying).removed, "3.0 is not 3"


def test_an_explicit_key_wins_and_is_checked():
    assert key_of("alert", {"id": "a"}, key="mine") == Keyed("mine", False)
    assert key_of("custom", {"x": 1}, key="k", removed=True) == Keyed("k", True)
    assert key_of("alert", {"id": "a", "status": "resolved"}, key="k") == Keyed("k", True), (
        "a tombstone rule still applies to an explicit key"
    )
    assert key_of("alert", {"status": "resolved"}, key="k", keying=Keying.none()) == Keyed("k", False)
    assert key_of("alert", {"id": "a"}, removed=True) == Keyed("a", True), "removes the derived key"
    for bad, message in [
        ("", "a state key is empty"),
        ("a\nb", "a state key may not contain control characters"),
        ("\x00", "a state key may not contain control characters"),
        ("\x1f", "a state key may not contain control characters"),
        ("k" * 257, "a state key is longer than 256 bytes"),
        ("é" * 129, "a state key is longer than 256 bytes"),  # 258 bytes of UTF-8
    ]:
        for keying in (DEFAULTS, None):
            with pytest.raises(InvalidKeyError) as caught:
                encode_envelope("alert", {"id": "a"}, AT, key=bad, keying=keying)
            assert str(caught.value) == message
    validate_key("é" * 128)
    validate_key("a b\x7f/\u2028")
    with pytest.raises(InvalidKeyError) as caught:
        encode_envelope("custom", {}, AT, removed=True, keying=DEFAULTS)
    assert str(caught.value) == "a removal needs a key (none given, and none derived from the data)"
    with pytest.raises(InvalidKeyError):
        encode_envelope("alert", {"status": "open"}, AT, removed=True, keying=DEFAULTS)
    with pytest.raises(TypeError):
        encode_envelope("alert", {}, AT, key=17)
    with pytest.raises(TypeError):
        encode_envelope("alert", {}, AT, key="k", removed="yes")


def test_a_keyed_envelope_names_type_key_removed_data_timestamp_in_that_order():
    assert encode_envelope("alert", {"id": "a-17", "status": "resolved"}, AT, keying=DEFAULTS) == (
        b'{"type":"alert","key":"a-17","removed":true,"data":{"id":"a-17","status":"resolved"},'
        b'"timestamp":"2026-11-25T10:00:00.123Z"}'
    )
    assert encode_envelope("metrics_update", {"tutor_id": "t-1", "window": "7day"}, AT,
                           keying=DEFAULTS) == (
        b'{"type":"metrics_update","key":"t-1|7day","data":{"tutor_id":"t-1","window":"7day"},'
        b'"timestamp":"2026-11-25T10:00:00.123Z"}'
    )
    # The key is JSON-escaped as json.dumps(key, ensure_ascii=False) does:
    # quotes and backslashes escaped, everything else (UTF-8, DEL) as it is.
    assert encode_envelope("x", 1, AT, key='é"\\\x7f').startswith(
        '{"type":"x","key":"é\\"\\\\\x7f","data":1,'.encode("utf-8")
    )
    # Unkeyed: the envelope is the one it always was.
    assert encode_envelope("alert", {"tutor_id": "t-17"}, AT, keying=DEFAULTS) == (
        b'{"type":"alert","data":{"tutor_id":"t-17"},"timestamp":"2026-11-25T10:00:00.123Z"}'
    )
    assert encode_envelope("alert", {"id": "a"}, AT) == (
        b'{"type":"alert","data":{"id":"a"},"timestamp":"2026-11-25T10:00:00.123Z"}'
    ), "no keying given: only an explicit key keys"


def test_state_is_a_reserved_type():
    with pytest.raises(InvalidTypeError) as caught:
        encode_envelope("state", {}, AT)
    assert str(caught.value) == (
        'invalid message type: message type "state" is reserved for messages the server itself sends'
    )


def test_rules_parse_or_say_why_not():
    assert Keying.parse("none", "").is_empty()
    assert Keying.parse("", "NONE").is_empty()
    assert Keying.parse(" , ", " ").is_empty()
    keying = Keying.parse(" a = x + y , b=z ", " a = s : done ")
    assert key_of("a", {"x": 1, "y": 2, "s": "done"}, keying) == Keyed("1|2", True)
    assert key_of("b", {"z": "q"}, keying) == Keyed("q", False)
    for bad, message in [
        ("a", 'STATE_KEYS: "a" is not type=field[+field...]'),
        ("a=", 'STATE_KEYS: "a=" names an empty field'),
        ("a=x+", 'STATE_KEYS: "a=x+" names an empty field'),
        ("a=x,a=y", 'STATE_KEYS: "a" is keyed twice'),
        ("bad type=x",
         "STATE_KEYS: message type \"bad type\" may only contain letters, digits, '_', '-' and '.'"),
        ("recovery=x",
         'STATE_KEYS: message type "recovery" is reserved for messages the server itself sends'),
        ("=x", "STATE_KEYS: message type is empty"),
    ]:
        with pytest.raises(ConfigError) as caught:
            Keying.parse(bad, "")
        assert str(caught.value) == message, bad
    for bad, message in [
        ("a", 'STATE_TOMBSTONES: "a" is not type=field:value'),
        ("a=x", 'STATE_TOMBSTONES: "a=x" is not type=field:value'),
        ("a=:v", 'STATE_TOMBSTONES: "a=:v" is not type=field:value'),
        ("a b=x:v",
         "STATE_TOMBSTONES: message type \"a b\" may only contain letters, digits, '_', '-' and '.'"),
    ]:
        with pytest.raises(ConfigError) as caught:
            Keying.parse("", bad)
        assert str(caught.value) == message, bad
    assert key_of("a", {"k": "1", "x": ""}, Keying.parse("a=k", "a=x:")).removed, "empty value"


def test_state_settings_come_from_the_environment():
    settings = Settings.from_env({
        "STATE_KEYS": "alert=tutor_id+id",
        "STATE_TOMBSTONES": "alert=state:closed",
        "STATE_MAX_KEYS": "50",
        "STATE_TTL_SECS": "0",
    })
    assert (settings.state_max_keys, settings.state_ttl_secs) == (50, 0)
    assert settings.keying == Keying.parse("alert=tutor_id+id", "alert=state:closed")
    assert settings == Settings(state_keys="alert=tutor_id+id", state_tombstones="alert=state:closed",
                                state_max_keys=50, state_ttl_secs=0)
    defaults = Settings.from_env({})
    assert defaults.keying == Keying.default()
    assert (defaults.state_keys, defaults.state_tombstones) == (
        DEFAULT_STATE_KEYS, DEFAULT_STATE_TOMBSTONES)
    assert (defaults.state_max_keys, defaults.state_ttl_secs) == (100_000, 604_800)
    assert Settings.from_env({"STATE_MAX_KEYS": "", "STATE_TTL_SECS": " "}) == Settings(), (
        "empty numbers count as unset"
    )
    # The rules: `none` or empty (set, but empty) mean none.
    assert Settings.from_env({"STATE_KEYS": "none", "STATE_TOMBSTONES": ""}).keying.is_empty()
    assert Settings.from_env({"STATE_KEYS": ""}).keying == Keying.parse("", DEFAULT_STATE_TOMBSTONES)
    assert Settings.from_env({}, state_max_keys=7).state_max_keys == 7, "arguments win"
    assert "state_max_keys=7" in repr(Settings(state_max_keys=7))


@pytest.mark.parametrize(
    "env, message",
    [
        ({"STATE_MAX_KEYS": "0"}, "STATE_MAX_KEYS must be between 1 and 100000000 (got 0)"),
        ({"STATE_MAX_KEYS": "many"}, 'STATE_MAX_KEYS "many" is not a whole number'),
        ({"STATE_MAX_KEYS": "1.5"}, 'STATE_MAX_KEYS "1.5" is not a whole number'),
        ({"STATE_MAX_KEYS": "100000001"},
         "STATE_MAX_KEYS must be between 1 and 100000000 (got 100000001)"),
        ({"STATE_TTL_SECS": "-1"}, "STATE_TTL_SECS must be between 0 and 31622400 (got -1)"),
        ({"STATE_TTL_SECS": "31622401"},
         "STATE_TTL_SECS must be between 0 and 31622400 (got 31622401)"),
        ({"STATE_TTL_SECS": "7d"}, 'STATE_TTL_SECS "7d" is not a whole number'),
        ({"STATE_KEYS": "alert"}, 'STATE_KEYS: "alert" is not type=field[+field...]'),
        ({"STATE_KEYS": "state=id"},
         'STATE_KEYS: message type "state" is reserved for messages the server itself sends'),
        ({"STATE_TOMBSTONES": "alert=resolved"},
         'STATE_TOMBSTONES: "alert=resolved" is not type=field:value'),
    ],
)
def test_bad_state_settings_are_refused_clearly(env, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message


def test_state_settings_in_code_are_checked_too():
    Settings(state_max_keys=1, state_ttl_secs=0)
    Settings(state_max_keys=100_000_000, state_ttl_secs=366 * 24 * 3600)
    for bad in ({"state_max_keys": 0}, {"state_max_keys": True}, {"state_ttl_secs": -5},
                {"state_ttl_secs": 1.5}, {"state_keys": None}, {"state_tombstones": ["a"]}):
        with pytest.raises(ConfigError):
            Settings(**bad)


def test_the_state_defaults_are_the_rust_crates():
    """One set of defaults for every publisher: the Rust crate's
    (shared/src/state.rs), read from its source, not a copy that may drift."""
    source = (REPO / "shared" / "src" / "state.rs").read_text(encoding="utf-8")

    def const(name, kind):
        found = re.search(r"pub const %s: %s = (.+?);" % (name, kind), source)
        assert found, f"{name} not found in shared/src/state.rs"
        return found.group(1)

    assert json.loads(const("DEFAULT_STATE_KEYS", "&str")) == DEFAULT_STATE_KEYS
    assert json.loads(const("DEFAULT_STATE_TOMBSTONES", "&str")) == DEFAULT_STATE_TOMBSTONES
    # Constant expressions such as 100_000 or 7 * 24 * 3600.
    def number(text):
        assert re.fullmatch(r"[0-9_ *]+", text), text
        return eval(text.replace("_", ""), {"__builtins__": {}})  # noqa: S307

    assert number(const("DEFAULT_STATE_MAX_KEYS", "usize")) == DEFAULT_STATE_MAX_KEYS
    assert number(const("DEFAULT_STATE_TTL_SECS", "u64")) == DEFAULT_STATE_TTL_SECS
    assert int(const("MAX_KEY_BYTES", "usize")) == 256
