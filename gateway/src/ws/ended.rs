//! How a session ends: the reason (the `reason` label of
//! `gateway_connections_closed_total`), and the close frame (RFC 6455 §7.4)
//! the client is sent for it, if it can still read one.

use tokio_tungstenite::tungstenite;

/// Close codes (RFC 6455 §7.4.1).
mod close_code {
    pub const AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const SIZE: u16 = 1009;
    pub const AGAIN: u16 = 1013;
}

/// The close code of a connection whose token expired (4000-4999: for
/// applications, RFC 6455 §7.4.2).
pub const TOKEN_EXPIRED: u16 = 4001;

/// Why a connection ended: the `reason` label of the closed counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    ClientClose,
    ClientGone,
    SlowClient,
    PingTimeout,
    WriteTimeout,
    MessageTooLarge,
    RateLimited,
    Shutdown,
    /// Too many replays running on this node: retry shortly.
    ReplayBusy,
    /// A text frame (or close reason) that is not UTF-8.
    InvalidData,
    /// The client's token passed its `exp` (plus the leeway).
    TokenExpired,
    Error,
}

impl Ended {
    pub fn label(self) -> &'static str {
        match self {
            Ended::ClientClose => "client_close",
            Ended::ClientGone => "client_gone",
            Ended::SlowClient => "slow_client",
            Ended::PingTimeout => "ping_timeout",
            Ended::WriteTimeout => "write_timeout",
            Ended::MessageTooLarge => "message_too_large",
            Ended::RateLimited => "rate_limited",
            Ended::Shutdown => "shutdown",
            Ended::ReplayBusy => "replay_busy",
            Ended::InvalidData => "invalid_data",
            Ended::TokenExpired => "token_expired",
            Ended::Error => "error",
        }
    }

    /// The close frame we send, if the peer can still read one.
    pub fn close_frame(self) -> Option<(u16, &'static str)> {
        match self {
            Ended::Shutdown => Some((close_code::AWAY, "server shutting down; reconnect")),
            Ended::SlowClient => Some((close_code::AGAIN, "too slow; reconnect with ?since=")),
            Ended::ReplayBusy => Some((close_code::AGAIN, "busy; reconnect with ?since= shortly")),
            Ended::MessageTooLarge => Some((close_code::SIZE, "message too large")),
            Ended::RateLimited => Some((close_code::POLICY, "message rate limit exceeded")),
            Ended::PingTimeout => Some((close_code::POLICY, "no pong")),
            Ended::InvalidData => Some((close_code::INVALID, "invalid UTF-8")),
            Ended::TokenExpired => Some((TOKEN_EXPIRED, "token expired")),
            Ended::Error => Some((close_code::PROTOCOL, "protocol error")),
            Ended::ClientClose | Ended::ClientGone | Ended::WriteTimeout => None,
        }
    }
}

/// Sorts a read error: an oversized message (close 1009), or a peer that
/// broke the protocol or vanished.
pub fn classify(err: tungstenite::Error) -> Ended {
    match err {
        tungstenite::Error::Capacity(_) => Ended::MessageTooLarge,
        // tungstenite reports a text frame and a close reason that are not
        // UTF-8 alike; both close with 1007 (inconsistent data).
        tungstenite::Error::Utf8(_) => Ended::InvalidData,
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => Ended::ClientGone,
        tungstenite::Error::Protocol(_) => Ended::Error,
        _ => Ended::ClientGone,
    }
}
