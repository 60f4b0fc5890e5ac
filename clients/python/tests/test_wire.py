"""The wire contract without I/O: types, envelope bytes, settings. The messages
are the Rust crate's, word for word."""

import json
from datetime import datetime, timezone

import pytest

from dashboard_gateway import (
    ConfigError,
    DataError,
    InvalidTypeError,
    RawJSON,
    Settings,
    encode_envelope,
    validate_type,
)
from dashboard_gateway.wire import epoch_key, node_key, nodes_index_key

AT = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=timezone.utc)


def test_the_envelope_is_byte_for_byte_the_rust_crates():
    assert encode_envelope("alert", {"tutor_id": "t-17"}, AT) == (
        b'{"type":"alert","data":{"tutor_id":"t-17"},"timestamp":"2026-11-25T10:00:00.123Z"}'
    )
    # Key order kept, compact, UTF-8 rather than \u escapes.
    assert encode_envelope("metrics_update", {"z": 1, "a": [1.5, None, True], "n": "é"}, AT) == (
        '{"type":"metrics_update","data":{"z":1,"a":[1.5,null,true],"n":"é"},'
        '"timestamp":"2026-11-25T10:00:00.123Z"}'
    ).encode("utf-8")


def test_raw_json_goes_in_untouched():
    text = '{"b": 1, "a": 1.0e3, "big": 12345678901234567890}'
    for raw in (RawJSON(text), RawJSON(text.encode("utf-8"))):
        envelope = encode_envelope("alert", raw, AT)
        assert envelope == ('{"type":"alert","data":%s,"timestamp":"2026-11-25T10:00:00.123Z"}' % text).encode()


def test_data_that_is_not_json_is_refused():
    for bad in ("{", "NaN", "", "[1,]"):
        with pytest.raises(DataError, match="RawJSON is not valid JSON"):
            RawJSON(bad)
    with pytest.raises(DataError, match="not valid UTF-8"):
        RawJSON(b"\xff")
    with pytest.raises(DataError, match="data does not serialize to JSON"):
        encode_envelope("alert", {"at": object()}, AT)
    with pytest.raises(DataError, match="data does not serialize to JSON"):
        encode_envelope("alert", float("nan"), AT)


@pytest.mark.parametrize(
    "message_type, message",
    [
        ("", "invalid message type: message type is empty"),
        ("x" * 65, "invalid message type: message type is longer than 64 characters"),
        # Rust counts bytes: 33 two-byte characters are 66.
        ("é" * 33, "invalid message type: message type is longer than 64 characters"),
        (
            "a b",
            "invalid message type: message type \"a b\" may only contain letters, digits, '_', '-' and '.'",
        ),
        (
            'a"b\\c\n',
            "invalid message type: message type \"a\\\"b\\\\c\\n\" may only contain letters, digits, '_', '-' and '.'",
        ),
        (
            "a*",
            "invalid message type: message type \"a*\" may only contain letters, digits, '_', '-' and '.'",
        ),
        (
            "recovery",
            'invalid message type: message type "recovery" is reserved for messages the server itself sends',
        ),
        (
            "error",
            'invalid message type: message type "error" is reserved for messages the server itself sends',
        ),
    ],
)
def test_a_bad_type_is_refused_with_the_rust_message(message_type, message):
    with pytest.raises(InvalidTypeError) as caught:
        validate_type(message_type)
    assert str(caught.value) == message
    with pytest.raises(InvalidTypeError):
        encode_envelope(message_type, {}, AT)


def test_known_and_custom_types_are_valid():
    for message_type in ("metrics_update", "alert", "intervention", "analytics_update",
                         "test_message", "a.b-c_9", "x" * 64):
        validate_type(message_type)


def test_settings_come_from_the_clis_variables():
    settings = Settings.from_env({
        "REDIS_URL": "redis://10.0.0.5:6380/2",
        "CHANNEL_PREFIX": "staging",
        "HISTORY_SIZE": "50",
        "HISTORY_TTL_SECS": "0",
        "MAX_EVENT_BYTES": "1024",
        "HISTORY_SIZE_UNRELATED": "x",
    })
    assert settings == Settings("redis://10.0.0.5:6380/2", "staging", 50, 0, 1024)
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"CHANNEL_PREFIX": "  ", "HISTORY_SIZE": ""}) == Settings(), "empty = unset"
    assert Settings.from_env({}, channel_prefix="x").channel_prefix == "x"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"CHANNEL_PREFIX": "a b"},
         "CHANNEL_PREFIX \"a b\" may only contain letters, digits, '_', '-' and '.' (1 to 64 of them)"),
        ({"CHANNEL_PREFIX": "p" * 65}, "CHANNEL_PREFIX"),
        ({"CHANNEL_PREFIX": "a:b"}, "CHANNEL_PREFIX"),
        ({"HISTORY_SIZE": "0"}, "HISTORY_SIZE must be at least 1 (got 0)"),
        ({"HISTORY_SIZE": "ten"}, 'HISTORY_SIZE "ten" is not a whole number'),
        ({"HISTORY_TTL_SECS": "-1"}, "HISTORY_TTL_SECS must be at least 0 (got -1)"),
        ({"MAX_EVENT_BYTES": "255"}, "MAX_EVENT_BYTES must be between 256 and 16777216 (got 255)"),
        ({"MAX_EVENT_BYTES": "16777217"},
         "MAX_EVENT_BYTES must be between 256 and 16777216 (got 16777217)"),
        ({"REDIS_URL": "http://:hunter2@example.com"}, "REDIS_URL is not a valid Redis URL"),
        ({"REDIS_CLUSTER_NODES": "redis://a:1"}, "REDIS_CLUSTER_NODES is set, but the Python package"),
        ({"REDIS_SENTINELS": "a:26379"}, "REDIS_SENTINELS is set"),
    ],
)
def test_bad_settings_are_refused_clearly(env, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)
    assert "hunter2" not in str(caught.value)


def test_settings_bounds_are_inclusive():
    Settings(max_event_bytes=256)
    Settings(max_event_bytes=16777216)
    Settings(history_size=1, history_ttl_secs=0)
    with pytest.raises(ConfigError):
        Settings(history_size=True)


def test_a_password_never_shows_in_a_repr():
    from dashboard_gateway import AsyncPublisher, Publisher

    url = "redis://user:hunter2@127.0.0.1:1/0"
    for shown in (repr(Settings(url)), repr(Publisher(url)), repr(AsyncPublisher(url))):
        assert "hunter2" not in shown
        assert "user:***@127.0.0.1:1" in shown


def test_redis_names_follow_the_gateway():
    assert epoch_key("ws") == "{ws:history}:epoch"
    assert nodes_index_key("ws") == "{ws:nodes}"
    assert node_key("ws", "a") == "{ws:nodes}:a"


def test_timestamps_are_utc_milliseconds():
    envelope = json.loads(encode_envelope("alert", None))
    stamp = envelope["timestamp"]
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert len(stamp) == 24 and stamp.endswith("Z")
    assert abs((datetime.now(timezone.utc) - parsed).total_seconds()) < 5


def test_the_node_ttl_is_the_one_the_gateway_writes_its_status_with():
    """A node counts in get_connection_count() exactly as long as in /ws/status:
    the TTL is the wire contract's (shared/src/status.rs), not a copy that may drift."""
    import re

    from conftest import REPO
    from dashboard_gateway.publisher import NODE_TTL_MS

    source = (REPO / "shared" / "src" / "status.rs").read_text()
    secs = int(re.search(r"pub const NODE_TTL_SECS: u64 = (\d+);", source).group(1))
    assert NODE_TTL_MS == secs * 1000
