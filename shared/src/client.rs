//! What a browser may send, and the frames addressed to one client alone.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::envelope::encode;
use crate::kind::{ANALYTICS_UPDATE, ERROR, RECOVERY};

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn only_ping_is_a_command() {
        assert_eq!(parse_command("ping"), Some(ClientCommand::Ping));
        assert_eq!(parse_command(" ping\n"), Some(ClientCommand::Ping));
        assert_eq!(parse_command("PING"), None);
        assert_eq!(parse_command("{\"type\":\"ping\"}"), None);
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
