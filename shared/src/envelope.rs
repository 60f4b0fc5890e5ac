//! The envelope: `{"id"?, "type", "data", "timestamp"}`, one JSON object per
//! WebSocket text frame and per Redis payload.
//!
//! Publishers build envelopes with [`encode`]; the history path then puts the
//! `id` in front with [`insert_id`] (the Lua script in `publisher` does the
//! same splice inside Redis). The gateway runs every payload it receives from
//! its bus through [`decode`] exactly once per event, on one node, and sends
//! the resulting text to every client untouched.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::event_id::Position;
use crate::kind::{KindError, validate_kind};
use crate::state::Keyed;

/// `MAX_EVENT_BYTES` unless configured: the largest encoded envelope (without
/// the `id` the history adds) a publisher may send. Dashboard events are a
/// few hundred bytes; 64 KiB leaves room for a large analytics snapshot while
/// keeping every per-client buffer small.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 64 * 1024;
/// The range `MAX_EVENT_BYTES` may be configured in.
pub const MAX_EVENT_BYTES_RANGE: std::ops::RangeInclusive<usize> = 256..=16 * 1024 * 1024;
/// Bytes a payload may grow by on its way to clients: the `"id":"…",` the
/// history splices in (at most 62 bytes) or the `"timestamp":"…",` a node
/// adds to a raw payload (39 bytes).
pub const ENVELOPE_GROWTH: usize = 64;
/// What a keyed event may grow by besides: the `,"evicted":[…]` the publish
/// script adds (at most [`crate::state::MAX_EVICTED_BYTES`] of keys, plus
/// its name and brackets). Allowed only to an event that carries one.
pub const EVICTED_GROWTH: usize = crate::state::MAX_EVICTED_BYTES + 16;

/// RFC 3339, UTC, milliseconds: `2026-11-25T10:00:00.123Z`.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Serialize)]
struct Outgoing<'a, D: Serialize + ?Sized> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
    data: &'a D,
    timestamp: String,
}

/// Encodes an envelope without an id (live-only, or before the history path
/// assigns one).
pub fn encode<D: Serialize + ?Sized>(kind: &str, data: &D, at: DateTime<Utc>) -> String {
    encode_inner(None, kind, None, data, at)
}

/// Encodes an envelope without an id that carries its state key (see
/// [`crate::state`]): `{"type","key","removed"?,"data","timestamp"}`, in that
/// order, which the publish script reads the key from.
pub fn encode_keyed<D: Serialize + ?Sized>(
    kind: &str,
    keyed: Option<&Keyed>,
    data: &D,
    at: DateTime<Utc>,
) -> String {
    encode_inner(None, kind, keyed, data, at)
}

/// Encodes an envelope that carries `id`.
pub fn encode_with_id<D: Serialize + ?Sized>(
    id: Position,
    kind: &str,
    data: &D,
    at: DateTime<Utc>,
) -> String {
    encode_inner(Some(id), kind, None, data, at)
}

fn encode_inner<D: Serialize + ?Sized>(
    id: Option<Position>,
    kind: &str,
    keyed: Option<&Keyed>,
    data: &D,
    at: DateTime<Utc>,
) -> String {
    let envelope = Outgoing {
        id: id.map(|id| id.to_string()),
        kind,
        key: keyed.map(|k| k.key.as_str()),
        removed: keyed.is_some_and(|k| k.removed),
        data,
        timestamp: format_timestamp(at),
    };
    // Serializing a struct of strings and an already-valid JSON value to a
    // String cannot fail; a `D` whose Serialize impl fails is a caller bug.
    serde_json::to_string(&envelope).expect("envelope serializes")
}

/// Puts `"id":"<id>"` first in an encoded envelope, without re-serializing
/// it. `None` if `payload` is not a non-empty JSON object text.
pub fn insert_id(payload: &str, id: Position) -> Option<String> {
    insert_field(payload, "id", &format!("\"{id}\""))
}

fn insert_field(payload: &str, key: &str, json_value: &str) -> Option<String> {
    let rest = payload.trim_start().strip_prefix('{')?;
    if rest.trim_start().starts_with('}') {
        return None;
    }
    Some(format!("{{\"{key}\":{json_value},{rest}"))
}

/// Why a payload from the bus was dropped instead of sent to clients.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("payload is not valid UTF-8 JSON: {0}")]
    NotJson(String),
    #[error("payload is not a JSON object")]
    NotAnObject,
    #[error("payload has no string \"type\" field")]
    MissingType,
    #[error("payload has an invalid \"type\": {0}")]
    BadType(KindError),
    #[error("payload \"timestamp\" {0:?} is not RFC 3339")]
    BadTimestamp(String),
}

/// What a payload's `"id"` field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdField {
    /// No `id`: a raw `PUBLISH`, live-only.
    Absent,
    /// A well-formed position. Whether the history really assigned it is
    /// the gateway's call (its epoch must be the current history's).
    Position(Position),
    /// Something that is not a position: never trusted, never passed on.
    Malformed,
}

/// A payload the gateway accepted, ready to fan out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub kind: String,
    pub id: IdField,
    pub published_at: DateTime<Utc>,
    /// The frame to send: the payload as published, or with a `timestamp`
    /// put in front when the publisher left it out.
    pub text: String,
    /// Its place in the keyed state, if it names one (whether to trust it
    /// is the gateway's call, as for the id).
    pub state: Option<StateChange>,
}

/// What an event does to the keyed state: sets (or, `removed`, deletes)
/// `key` of its type, and deletes the `evicted` keys the publish script
/// dropped to stay within its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub key: String,
    pub removed: bool,
    pub evicted: Vec<String>,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    // Raw: a member of another shape (a raw publish's own `key`) makes the
    // event unkeyed, never undeliverable.
    #[serde(default, borrow)]
    key: Option<&'a RawValue>,
    #[serde(default, borrow)]
    removed: Option<&'a RawValue>,
    #[serde(default, borrow)]
    evicted: Option<&'a RawValue>,
}

impl Head<'_> {
    /// The state change, if the members sit where the publish script reads
    /// and writes them (see [`script_order`]): a key elsewhere is none the
    /// script kept, and nodes must keep exactly what it kept.
    fn state(&self, text: &str, kind: &str) -> Option<StateChange> {
        let key: String = serde_json::from_str(self.key?.get()).ok()?;
        let (removed, evicted_here) = script_order(text, kind)?;
        let removed = removed && self.removed.is_some_and(|r| r.get() == "true");
        let evicted = self
            .evicted
            .filter(|_| evicted_here)
            .and_then(|e| serde_json::from_str(e.get()).ok())
            .unwrap_or_default();
        Some(StateChange {
            key,
            removed,
            evicted,
        })
    }
}

/// Validates one payload from the bus. `received_at` stamps payloads that
/// came without a `timestamp` (a hand-written `PUBLISH`): they are delivered,
/// not dropped.
pub fn decode(payload: &[u8], received_at: DateTime<Utc>) -> Result<Decoded, DecodeError> {
    let text = std::str::from_utf8(payload).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    if !text.trim_start().starts_with('{') {
        // Checked first: serde would read a JSON array as a struct too.
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => DecodeError::NotAnObject,
            Err(e) => DecodeError::NotJson(e.to_string()),
        });
    }
    let head: Head<'_> =
        serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let kind = head.kind.as_deref().ok_or(DecodeError::MissingType)?;
    let state = head.state(text, kind);
    let kind = head.kind.ok_or(DecodeError::MissingType)?;
    validate_kind(&kind).map_err(DecodeError::BadType)?;
    let id = match head.id {
        None => IdField::Absent,
        Some(raw) => serde_json::from_str::<Cow<'_, str>>(raw.get())
            .ok()
            .and_then(|id| id.parse().ok())
            .map_or(IdField::Malformed, IdField::Position),
    };
    let (published_at, text) = match head.timestamp {
        Some(ts) => {
            let at = DateTime::parse_from_rfc3339(&ts)
                .map_err(|_| DecodeError::BadTimestamp(ts.chars().take(64).collect()))?;
            (at.with_timezone(&Utc), text.to_owned())
        }
        None => {
            let stamp = format!("\"{}\"", format_timestamp(received_at));
            let text = insert_field(text, "timestamp", &stamp).ok_or(DecodeError::MissingType)?;
            (received_at, text)
        }
    };
    Ok(Decoded {
        kind: kind.into_owned(),
        id,
        published_at,
        text,
        state,
    })
}

/// Where publish.lua reads a keyed event's members, in a payload as it
/// publishes it: `{"id":"…","type":"<kind>","key":"…"` then, optionally,
/// `,"removed":true` and `,"evicted":[`. `None` unless the key is there;
/// else whether the removal and the evictions are.
fn script_order(text: &str, kind: &str) -> Option<(bool, bool)> {
    let rest = text.strip_prefix("{\"id\":\"")?;
    let rest = &rest[rest.find('"')?..];
    let rest = rest
        .strip_prefix("\",\"type\":\"")?
        .strip_prefix(kind)?
        .strip_prefix("\",\"key\":\"")?;
    // The key's closing quote: the first one not escaped.
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() && bytes[i] != b'"' {
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    let mut after = rest.get(i + 1..)?;
    let removed = match after.strip_prefix(",\"removed\":true") {
        Some(more) => {
            after = more;
            true
        }
        None => false,
    };
    Some((removed, after.starts_with(",\"evicted\":[")))
}

/// The envelope without its `"id"` member (other members, and their bytes,
/// kept in order): how an id the history did not assign is taken out
/// before the event goes live. `None` if `payload` is not a JSON object.
pub fn strip_id(payload: &str) -> Option<String> {
    struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);
    impl<'de> Deserialize<'de> for Members<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Members<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Self::Value, A::Error> {
                    let mut members = Vec::new();
                    while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                        members.push(entry);
                    }
                    Ok(Members(members))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    let Members(members) = serde_json::from_str(payload).ok()?;
    let mut out = String::with_capacity(payload.len());
    out.push('{');
    for (key, value) in members.iter().filter(|(key, _)| key != "id") {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).ok()?);
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    Some(out)
}

/// The `data` and `timestamp` of an accepted envelope, for re-issuing it
/// with another id (the initial `analytics_update`).
#[derive(Debug, Deserialize)]
pub struct Parts<'a> {
    #[serde(borrow)]
    pub data: Option<&'a RawValue>,
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
}

pub fn parts(text: &str) -> Result<Parts<'_>, DecodeError> {
    serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_id::{Epoch, EventId};
    use serde_json::{Value, json};

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T10:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn encode_writes_the_spec_envelope() {
        let text = encode("alert", &json!({"tutor_id": "t-17"}), at());
        assert_eq!(
            text,
            r#"{"type":"alert","data":{"tutor_id":"t-17"},"timestamp":"2026-11-25T10:00:00.123Z"}"#
        );
    }

    fn pos(ms: u64, seq: u64) -> Position {
        Position::new(Epoch(0xabcdef01), EventId::new(ms, seq))
    }

    #[test]
    fn a_keyed_envelope_names_its_key_after_the_type_and_decodes_back() {
        let keyed = Keyed {
            key: "t-1|7day".into(),
            removed: true,
        };
        let text = encode_keyed("alert", Some(&keyed), &serde_json::json!({"a": 1}), at());
        assert!(
            text.starts_with(r#"{"type":"alert","key":"t-1|7day","removed":true,"data":{"a":1}"#),
            "{text}"
        );
        let plain = encode_keyed("alert", None, &serde_json::json!({"a": 1}), at());
        assert_eq!(plain, encode("alert", &serde_json::json!({"a": 1}), at()));
        // As the history publishes it: its position first.
        let placed = insert_id(&text, pos(5, 1)).unwrap();
        let decoded = decode(placed.as_bytes(), at()).unwrap();
        assert_eq!(
            decoded.state,
            Some(StateChange {
                key: "t-1|7day".into(),
                removed: true,
                evicted: vec![]
            })
        );
        let evicting = r#"{"id":"abcdef01:5-1","type":"a","key":"k\"q","evicted":["x","y"],"data":1,"timestamp":"2026-12-02T10:00:00Z"}"#;
        let state = decode(evicting.as_bytes(), at()).unwrap().state.unwrap();
        assert_eq!(state.key, "k\"q");
        assert_eq!(state.evicted, ["x", "y"]);
        assert!(!state.removed);
        // Members elsewhere than where the publish script reads and writes
        // them are none it kept: nodes keep nothing either.
        let elsewhere = [
            r#"{"id":"abcdef01:5-1","type":"a","data":1,"key":"k"}"#,
            r#"{"id":"abcdef01:5-1","key":"k","type":"a","data":1}"#,
        ];
        for text in elsewhere {
            assert_eq!(decode(text.as_bytes(), at()).unwrap().state, None, "{text}");
        }
        let late =
            r#"{"id":"abcdef01:5-1","type":"a","key":"k","data":1,"removed":true,"evicted":["x"]}"#;
        let state = decode(late.as_bytes(), at()).unwrap().state.unwrap();
        assert!(!state.removed && state.evicted.is_empty(), "{state:?}");
        // Another shape of `key` (a raw publish's own) is no state, and
        // still delivered.
        let odd = r#"{"type":"a","key":{"k":1},"removed":"yes","data":1}"#;
        assert_eq!(decode(odd.as_bytes(), at()).unwrap().state, None);
    }

    #[test]
    fn insert_id_puts_the_id_first_and_keeps_the_rest_byte_for_byte() {
        let text = encode("alert", &json!({"b": 1, "a": [2]}), at());
        let with_id = insert_id(&text, pos(5, 1)).unwrap();
        assert_eq!(with_id, format!("{{\"id\":\"abcdef01:5-1\",{}", &text[1..]));
        let value: Value = serde_json::from_str(&with_id).unwrap();
        assert_eq!(value["id"], "abcdef01:5-1");
        assert_eq!(insert_id("{}", pos(0, 0)), None);
        assert_eq!(insert_id("[1]", pos(0, 0)), None);
    }

    #[test]
    fn an_id_that_is_no_position_is_flagged_and_can_be_stripped() {
        for (payload, expected) in [
            (r#"{"id":"5-1","type":"alert"}"#, IdField::Malformed),
            (r#"{"id":42,"type":"alert"}"#, IdField::Malformed),
            (
                r#"{"id":"abcdef01:5-1","type":"alert"}"#,
                IdField::Position(pos(5, 1)),
            ),
            (r#"{"type":"alert"}"#, IdField::Absent),
        ] {
            assert_eq!(
                decode(payload.as_bytes(), at()).unwrap().id,
                expected,
                "{payload}"
            );
        }
        let stripped =
            strip_id(r#"{"type":"alert","id":"99999999999999-0","data":{"id":1, "x":1.50}}"#)
                .unwrap();
        assert_eq!(stripped, r#"{"type":"alert","data":{"id":1, "x":1.50}}"#);
        assert_eq!(strip_id("[1]"), None);
    }

    #[test]
    fn decode_accepts_a_published_envelope_untouched() {
        let text = insert_id(&encode("alert", &json!({"z": 1, "a": 2}), at()), pos(9, 0)).unwrap();
        let decoded = decode(text.as_bytes(), Utc::now()).unwrap();
        assert_eq!(decoded.kind, "alert");
        assert_eq!(decoded.id, IdField::Position(pos(9, 0)));
        assert_eq!(decoded.published_at, at());
        assert_eq!(decoded.text, text, "data must pass through untouched");
    }

    #[test]
    fn decode_stamps_a_raw_publish_that_has_no_timestamp() {
        let decoded = decode(br#"{"type":"test_message","data":[1,2]}"#, at()).unwrap();
        let value: Value = serde_json::from_str(&decoded.text).unwrap();
        assert_eq!(value["timestamp"], "2026-11-25T10:00:00.123Z");
        assert_eq!(value["data"], json!([1, 2]));
        assert_eq!(decoded.id, IdField::Absent);
    }

    #[test]
    fn decode_refuses_what_would_reach_clients_as_garbage() {
        type Expect = fn(&DecodeError) -> bool;
        let cases: [(&[u8], Expect); 7] = [
            (b"not json", |e| matches!(e, DecodeError::NotJson(_))),
            (b"{\"type\":\"alert\"", |e| {
                matches!(e, DecodeError::NotJson(_))
            }),
            (b"[\"alert\"]", |e| matches!(e, DecodeError::NotAnObject)),
            (b"{\"data\":1}", |e| matches!(e, DecodeError::MissingType)),
            (b"{\"type\":\"a b\"}", |e| {
                matches!(e, DecodeError::BadType(_))
            }),
            (b"{\"type\":\"alert\",\"timestamp\":\"yesterday\"}", |e| {
                matches!(e, DecodeError::BadTimestamp(_))
            }),
            (&[0xff, 0xfe], |e| matches!(e, DecodeError::NotJson(_))),
        ];
        for (payload, expected) in cases {
            let err = decode(payload, at()).unwrap_err();
            assert!(
                expected(&err),
                "{:?} gave {err:?}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn parts_gives_back_data_and_timestamp() {
        let text = encode("analytics_update", &json!({"total_tutors": 3}), at());
        let parts = parts(&text).unwrap();
        assert_eq!(parts.data.unwrap().get(), r#"{"total_tutors":3}"#);
        assert_eq!(parts.timestamp, "2026-11-25T10:00:00.123Z");
    }
}
