//! What a browser may send, and the frames addressed to one client alone.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::Position;
use crate::envelope::encode;
use crate::kind::{ANALYTICS_UPDATE, ERROR, RECOVERY, STATE};

/// `code` values of `error` frames.
pub mod codes {
    /// A text frame the server does not understand.
    pub const UNKNOWN_MESSAGE: &str = "unknown_message";
    /// Binary frames carry nothing in this protocol.
    pub const BINARY_NOT_SUPPORTED: &str = "binary_not_supported";
    /// The client sends faster than its per-connection limit.
    pub const RATE_LIMITED: &str = "rate_limited";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCommand {
    /// The text `ping` (surrounding whitespace ignored).
    Ping,
}

/// Parses one text frame; `None` when it is not a command we know.
pub fn parse_command(text: &str) -> Option<ClientCommand> {
    (text.trim() == "ping").then_some(ClientCommand::Ping)
}

/// The token of `{"type":"auth","token":"<JWT>"}`, the first frame of a
/// client that opened `/ws/dashboard?auth=frame` (other fields ignored);
/// `None` when `text` is no auth frame (not a JSON object, another `type`,
/// no string `token`). An empty token is returned as it is: it is the
/// server's to refuse, as an empty `?token=` is.
pub fn parse_auth(text: &str) -> Option<String> {
    let mut frame: Map<String, Value> = serde_json::from_str(text).ok()?;
    if frame.get("type")? != "auth" {
        return None;
    }
    match frame.remove("token")? {
        Value::String(token) => Some(token),
        _ => None,
    }
}

/// The reply to `ping`: an `analytics_update` whose data is `{"pong":true}`.
pub fn pong(at: DateTime<Utc>) -> String {
    encode(ANALYTICS_UPDATE, &json!({"pong": true}), at)
}

pub fn error(code: &str, message: &str, at: DateTime<Utc>) -> String {
    encode(ERROR, &json!({"code": code, "message": message}), at)
}

/// Ends a replay: `recovered` says whether every missed event was in it.
pub fn recovery(recovered: bool, replayed: usize, at: DateTime<Utc>) -> String {
    encode(
        RECOVERY,
        &json!({"recovered": recovered, "replayed": replayed}),
        at,
    )
}

/// `{"id":"<position>","type":"state","data":{"complete":true,"count":N},…}`:
/// the end of a client's current state (`?state=1`), `count` keyed events
/// after its greeting; what follows is live from `position` on.
pub fn state_complete(count: usize, position: Option<Position>, at: DateTime<Utc>) -> String {
    let data = json!({"complete": true, "count": count});
    match position {
        Some(position) => crate::encode_with_id(position, STATE, &data, at),
        None => encode(STATE, &data, at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_marker_carries_its_position_first() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .unwrap()
            .to_utc();
        let p: Position = "0000000a:5-1".parse().unwrap();
        assert_eq!(
            state_complete(3, Some(p), at),
            r#"{"id":"0000000a:5-1","type":"state","data":{"complete":true,"count":3},"timestamp":"2026-12-02T10:00:00.000Z"}"#
        );
    }

    #[test]
    fn only_ping_is_a_command() {
        assert_eq!(parse_command("ping"), Some(ClientCommand::Ping));
        assert_eq!(parse_command(" ping\n"), Some(ClientCommand::Ping));
        assert_eq!(parse_command("PING"), None);
        assert_eq!(parse_command("{\"type\":\"ping\"}"), None);
    }

    #[test]
    fn an_auth_frame_carries_a_string_token() {
        assert_eq!(
            parse_auth(r#"{"type":"auth","token":"a.b.c"}"#).as_deref(),
            Some("a.b.c")
        );
        assert_eq!(
            parse_auth(r#"{"token":"a.b.c","type":"auth","v":1}"#).as_deref(),
            Some("a.b.c")
        );
        for other in [
            "ping",
            r#"{"type":"auth"}"#,
            r#"{"type":"auth","token":42}"#,
            r#"{"type":"Auth","token":"a.b.c"}"#,
            r#"{"type":"ping","token":"a.b.c"}"#,
            r#"["auth","a.b.c"]"#,
        ] {
            assert_eq!(parse_auth(other), None, "{other}");
        }
    }

    #[test]
    fn server_frames_have_the_spec_shape() {
        let now = Utc::now();
        let pong: Value = serde_json::from_str(&pong(now)).unwrap();
        assert_eq!(pong["type"], "analytics_update");
        assert_eq!(pong["data"], json!({"pong": true}));
        let err: Value =
            serde_json::from_str(&error(codes::UNKNOWN_MESSAGE, "what?", now)).unwrap();
        assert_eq!(err["data"]["code"], "unknown_message");
        let rec: Value = serde_json::from_str(&recovery(false, 0, now)).unwrap();
        assert_eq!(rec["data"], json!({"recovered": false, "replayed": 0}));
    }
}
