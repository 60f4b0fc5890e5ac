//! The input of `publisher send --stdin`: newline-delimited JSON, one
//! `{"type": "...", "data": ...}` object per line (the body `/api/publish`
//! takes), `data` kept byte for byte. No I/O: the CLI reads the lines.

use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

/// One event read from a line: its type (not yet validated) and its data as
/// written.
#[derive(Debug)]
pub struct Line {
    pub kind: String,
    pub data: Box<RawValue>,
    /// Its state key, when the line gives one (else the rules derive it).
    pub key: Option<String>,
    /// A removal of its key (a tombstone).
    pub removed: bool,
}

impl Line {
    /// The event to publish, with the line's key and removal.
    pub fn item(&self) -> crate::Item<'_, RawValue> {
        crate::Item {
            kind: &self.kind,
            data: &self.data,
            key: self.key.as_deref(),
            removed: self.removed,
        }
    }
}

#[derive(Debug, Error)]
pub enum LineError {
    #[error("not UTF-8")]
    NotUtf8,
    #[error(r#"not a {{"type": "...", "data": ...}} object: {0}"#)]
    NotAnEvent(serde_json::Error),
    #[error("longer than {max} bytes (MAX_EVENT_BYTES allows no event that long)")]
    TooLong { max: usize },
}

#[derive(Deserialize)]
struct Object {
    #[serde(rename = "type")]
    kind: String,
    /// Optional, as for `/api/publish`: no `data` is `null`.
    data: Option<Box<RawValue>>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    removed: bool,
}

/// The longest line worth reading for events of at most `max_event_bytes`
/// encoded: the same room `/api/publish` gives a body.
pub fn max_line_bytes(max_event_bytes: usize) -> usize {
    2 * max_event_bytes + 4096
}

/// Parses one line (its end of line included or not). A blank line is no
/// event (`None`): a trailing newline or a spacer is harmless.
pub fn parse(line: &[u8]) -> Result<Option<Line>, LineError> {
    let text = std::str::from_utf8(line).map_err(|_| LineError::NotUtf8)?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() {
        return Ok(None);
    }
    let object: Object = serde_json::from_str(text).map_err(LineError::NotAnEvent)?;
    Ok(Some(Line {
        kind: object.kind,
        data: object.data.unwrap_or_else(|| RawValue::NULL.to_owned()),
        key: object.key,
        removed: object.removed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_gives_its_type_and_its_data_as_written() {
        let line = parse(b"{\"type\":\"alert\",\"data\":{\"z\": 1.50, \"a\":[1e3]}}\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(line.kind, "alert");
        assert_eq!(line.data.get(), r#"{"z": 1.50, "a":[1e3]}"#);
        let bare = parse(br#"{"type":"ping_me"}"#).unwrap().unwrap();
        assert_eq!(bare.data.get(), "null");
        assert_eq!((bare.key, bare.removed), (None, false));
        let keyed = parse(br#"{"type":"a","key":"k","removed":true,"data":1}"#)
            .unwrap()
            .unwrap();
        assert_eq!((keyed.key.as_deref(), keyed.removed), (Some("k"), true));
    }

    #[test]
    fn blank_lines_are_no_events_and_bad_ones_say_why() {
        assert!(parse(b"\n").unwrap().is_none());
        assert!(parse(b"   \r\n").unwrap().is_none());
        let err = parse(br#"{"type":"alert","data":{"a":1,}}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"not a {"type": "...", "data": ...} object: "#),
            "{err}"
        );
        assert!(matches!(
            parse(br#"["alert"]"#),
            Err(LineError::NotAnEvent(_))
        ));
        assert!(matches!(
            parse(br#"{"data":1}"#),
            Err(LineError::NotAnEvent(_))
        ));
        assert!(matches!(parse(b"\xff\n"), Err(LineError::NotUtf8)));
    }
}
