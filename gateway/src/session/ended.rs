//! How a session ends, whatever its transport: the reason (the `reason`
//! label of `gateway_connections_closed_total`), and the code and reason the
//! client is told, if it can still read them. The codes are WebSocket close
//! codes (RFC 6455 §7.4) for every transport: a WebSocket sends them in its
//! close frame, an SSE stream in its last event (`event: close`), so a
//! client treats both alike (4001: fetch a fresh token; 1013: come back with
//! `?since=`).

/// Close codes (RFC 6455 §7.4.1).
mod close_code {
    pub const AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const SIZE: u16 = 1009;
    pub const RESTART: u16 = 1012;
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
    /// The client was sent `state`, and the node found the history created
    /// anew or missing events it could not catch up on: what the client
    /// holds may no longer be the state. It reconnects and gets it again.
    StateReset,
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
            Ended::StateReset => "state_reset",
            Ended::Error => "error",
        }
    }

    /// The close code and reason the client is told, if it can still read
    /// them.
    pub fn close_code(self) -> Option<(u16, &'static str)> {
        match self {
            Ended::Shutdown => Some((close_code::AWAY, "server shutting down; reconnect")),
            Ended::SlowClient => Some((close_code::AGAIN, "too slow; reconnect with ?since=")),
            Ended::ReplayBusy => Some((close_code::AGAIN, "busy; reconnect with ?since= shortly")),
            Ended::MessageTooLarge => Some((close_code::SIZE, "message too large")),
            Ended::RateLimited => Some((close_code::POLICY, "message rate limit exceeded")),
            Ended::PingTimeout => Some((close_code::POLICY, "no pong")),
            Ended::InvalidData => Some((close_code::INVALID, "invalid UTF-8")),
            Ended::TokenExpired => Some((TOKEN_EXPIRED, "token expired")),
            Ended::StateReset => Some((
                close_code::RESTART,
                "the state changed under this connection; reconnect with ?since= and state=1",
            )),
            Ended::Error => Some((close_code::PROTOCOL, "protocol error")),
            Ended::ClientClose | Ended::ClientGone | Ended::WriteTimeout => None,
        }
    }
}
