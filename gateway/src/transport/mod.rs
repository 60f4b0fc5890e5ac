//! The seam between the node's core and the ways a browser reads the stream.
//!
//! The core — the hub (events, positions, filters), the fan-out (who gets
//! what) and the session (greeting, replay, seam, live, end) — knows events
//! as JSON envelopes and clients as an [`Outbox`] (bytes to a socket) plus
//! an [`Encoding`]. A transport is what differs: how an envelope looks on the
//! wire ([`Encoding::encode`]), what the client may send and how it says it
//! is alive ([`Transport::next`], [`Transport::heartbeat`]), and how a
//! connection ends ([`Transport::close`]: a close frame, or a last event
//! and the end of the response).
//!
//! Encode once: each event is encoded at most once per node per encoding,
//! lazily (the first shard that has a subscriber of that encoding pays), and
//! the same bytes go to every subscriber of that encoding
//! ([`crate::hub::Event::wire`]). The fan-out groups subscribers by
//! (filter, encoding), so a batch costs one buffer per group whatever the
//! number of clients.
//!
//! Transports today: WebSocket ([`crate::ws`], plain or compressed with
//! permessage-deflate, [`deflate`]) and Server-Sent Events ([`crate::sse`]).
//! Adding one is a module with its route, its [`Transport`], and its
//! variant of [`Encoding`].

pub mod deflate;
pub mod outbox;
pub mod stream;

use std::future::Future;

use bytes::Bytes;
use shared::Position;

pub use self::outbox::Outbox;
use crate::session::ended::Ended;

/// How an envelope is written for one kind of subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A WebSocket text frame (RFC 6455), unmasked.
    WebSocket,
    /// A WebSocket text frame compressed with permessage-deflate (RFC 7692,
    /// no context takeover, so the bytes are the same for every client);
    /// envelopes under `min` bytes go uncompressed (`COMPRESSION_MIN_BYTES`:
    /// below it, deflate saves too little to pay for itself).
    Deflate { min: usize },
    /// A Server-Sent Events record: `id:` (the envelope's id, when it has
    /// one) and `data:` lines.
    Sse,
}

impl Encoding {
    /// How many encodings there are (the size of an event's cache).
    pub const COUNT: usize = 3;

    /// The `transport` label of `gateway_connections_opened_total`.
    pub fn label(self) -> &'static str {
        match self {
            Encoding::WebSocket => "websocket",
            Encoding::Deflate { .. } => "websocket_deflate",
            Encoding::Sse => "sse",
        }
    }

    /// The encoding for what one client gets alone (a replay page): a
    /// compressed frame would be made per client there, which a resume of
    /// thousands of events must not cost the node; a plain frame is valid
    /// on a compressed connection.
    pub fn per_client(self) -> Encoding {
        match self {
            Encoding::Deflate { .. } => Encoding::WebSocket,
            other => other,
        }
    }

    /// This encoding's place in an event's cache.
    pub fn slot(self) -> usize {
        match self {
            Encoding::WebSocket => 0,
            Encoding::Deflate { .. } => 1,
            Encoding::Sse => 2,
        }
    }

    /// The envelope `text` as this encoding writes it; `id`: its position,
    /// when it has one (an SSE record names it).
    pub fn encode(self, text: &str, id: Option<Position>) -> Bytes {
        match self {
            Encoding::WebSocket => crate::ws::frame::text(text),
            Encoding::Deflate { min } if text.len() >= min => deflate::text_frame(text.as_bytes()),
            Encoding::Deflate { .. } => crate::ws::frame::text(text),
            Encoding::Sse => crate::sse::record(text, id),
        }
    }
}

/// What a client did, as the session sees it.
#[derive(Debug)]
pub enum Inbound {
    /// A text message (a command: `ping`).
    Text(String),
    /// A binary message (not supported: answered with an error).
    Binary,
    /// A control message (a ping or pong): the client is alive; it counts
    /// toward its message rate.
    Control,
    /// The connection ended on the client's side, for this reason.
    Ended(Ended),
}

/// What a live session sends when its client has been quiet for the ping
/// interval.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub bytes: Bytes,
    /// Whether the client answers it (a WebSocket pong). If not (an SSE
    /// comment), a dead client is found by its socket failing or by the
    /// write budget's age instead.
    pub answered: bool,
}

/// The transport-specific half of a session; the rest is
/// [`crate::session`].
pub trait Transport: Send + 'static {
    /// How the session's own messages and the fan-out's events are written
    /// for this client.
    fn encoding(&self) -> Encoding;

    /// The next thing the client did. A transport the client cannot write
    /// to resolves only when the connection ends.
    fn next(&mut self) -> impl Future<Output = Inbound> + Send;

    /// What to send when the ping interval passes.
    fn heartbeat(&self) -> Heartbeat;

    /// Ends the connection for `ended`, boundedly, once the session has
    /// left the fan-out (nothing else writes to `outbox` any more).
    fn close(&mut self, outbox: &Outbox, ended: Ended) -> impl Future<Output = ()> + Send;
}
