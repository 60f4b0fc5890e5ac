//! The WebSocket as a [`Transport`]: tungstenite reads the client's frames
//! and writes the control replies it owes (pongs, the close echo) through
//! the outbox; events and the session's own messages are text frames, plain
//! or compressed ([`Encoding::Deflate`]) when the client negotiated
//! permessage-deflate.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::frame;
use super::upgrade::Socket;
use crate::session::ended::Ended;
use crate::transport::deflate::InflateError;
use crate::transport::outbox::Outbox;
use crate::transport::{Encoding, Heartbeat, Inbound, Transport};

/// How long a close frame may take to go out before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Messages read, at most, while waiting for the client's close reply.
const CLOSE_DRAIN_MESSAGES: usize = 64;

/// A client's WebSocket, with the encoding it negotiated.
pub struct WebSocket {
    pub socket: Socket,
    pub encoding: Encoding,
}

impl Transport for WebSocket {
    fn encoding(&self) -> Encoding {
        self.encoding
    }

    async fn next(&mut self) -> Inbound {
        match self.socket.next().await {
            None => Inbound::Ended(Ended::ClientGone),
            Some(Err(err)) => Inbound::Ended(classify(err)),
            Some(Ok(Message::Close(_))) => Inbound::Ended(Ended::ClientClose),
            // tungstenite answers pings itself (through the outbox).
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Inbound::Control,
            Some(Ok(Message::Text(text))) => Inbound::Text(text.as_str().to_owned()),
            Some(Ok(Message::Binary(_))) => Inbound::Binary,
        }
    }

    fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            bytes: frame::PING,
            answered: true,
        }
    }

    async fn close(&mut self, outbox: &Outbox, ended: Ended) {
        let ours = match ended {
            Ended::ClientClose => None,
            ended => match ended.close_code() {
                Some(code) => Some(code),
                None => return,
            },
        };
        closing_handshake(&mut self.socket, outbox, ours, CLOSE_DRAIN_MESSAGES).await;
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
        // A compressed message the inflater refused (`upgrade::Io`).
        tungstenite::Error::Io(err) => match err.get_ref().and_then(|e| e.downcast_ref()) {
            Some(InflateError::TooLarge) => Ended::MessageTooLarge,
            Some(InflateError::Corrupt) => Ended::Error,
            None => Ended::ClientGone,
        },
        _ => Ended::ClientGone,
    }
}

/// The closing handshake (RFC 6455), boundedly, for a session or a refused
/// auth frame. `None`: the client closed, and its close frame is answered
/// (tungstenite queued the echo of its code, or 1002 for a code that is not
/// allowed; it goes out with this flush). `Some`: our close frame is sent,
/// then input is read (at most `max_messages`) until the client's close
/// arrives, so unread input never turns the close into a TCP reset.
pub(super) async fn closing_handshake(
    socket: &mut Socket,
    outbox: &Outbox,
    ours: Option<(u16, &'static str)>,
    max_messages: usize,
) {
    let handshake = async {
        let Some((code, reason)) = ours else {
            if socket.flush().await.is_ok() {
                let _ = outbox.drain().await;
            }
            return;
        };
        let frame = CloseFrame {
            code: code.into(),
            reason: Utf8Bytes::from_static(reason),
        };
        if socket.send(Message::Close(Some(frame))).await.is_err() || outbox.drain().await.is_err()
        {
            return;
        }
        // A bounded drain: a client still flooding after its close frame
        // gets no more of the node's time (its reset is its own doing).
        for _ in 0..max_messages {
            match socket.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
    };
    let _ = timeout(CLOSE_TIMEOUT, handshake).await;
}
