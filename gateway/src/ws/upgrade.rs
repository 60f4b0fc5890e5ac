//! The WebSocket upgrade (RFC 6455 §4.2), done here instead of by axum's
//! `WebSocketUpgrade`, which hides the TCP stream inside its own socket
//! type: the fan-out needs the stream itself to write pre-framed events
//! (see [`crate::transport::outbox`]). Checks and refusals are the same as axum's.

use std::future::Future;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::socket::WebSocket;
use crate::transport::outbox::{Io, Outbox};
use crate::transport::stream::{RELAY_SEND_BUFFER, Stream};
use crate::transport::{Encoding, deflate};

/// A session's WebSocket: tungstenite reads it and writes its control
/// replies (pongs, the close handshake); every byte written goes through the
/// [`Outbox`].
pub type Socket = WebSocketStream<Io>;

/// A checked upgrade request, not yet answered.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    /// Our answer to the client's permessage-deflate offer, if it made one
    /// we accept.
    deflate: Option<HeaderValue>,
}

fn refused(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

fn header_is(headers: &HeaderMap, name: HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        if parts.method != Method::GET {
            return Err(refused(
                StatusCode::METHOD_NOT_ALLOWED,
                "Request method must be `GET`",
            ));
        }
        let connection_upgrade = parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
        if !connection_upgrade {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "Connection header did not include 'upgrade'",
            ));
        }
        if !header_is(&parts.headers, header::UPGRADE, "websocket") {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "`Upgrade` header did not include 'websocket'",
            ));
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Key` header missing",
            ));
        };
        if !header_is(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Version` header did not include '13'",
            ));
        }
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(refused(
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket request couldn't be upgraded since no upgrade state was present",
            ));
        };
        let deflate = deflate::negotiate(&parts.headers);
        Ok(Self {
            key,
            on_upgrade,
            deflate,
        })
    }
}

impl Upgrade {
    /// Answers 101 and, once hyper hands the connection over, runs
    /// `session` on it. `compress`: `Some(min)` when the node compresses
    /// (`COMPRESSION`), events of at least `min` bytes, for a client that
    /// offered permessage-deflate.
    pub fn on_upgrade<F, Fut>(
        self,
        config: WebSocketConfig,
        compress: Option<usize>,
        session: F,
    ) -> Response
    where
        F: FnOnce(WebSocket, Arc<Outbox>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        let deflate = compress.zip(self.deflate);
        let (encoding, inflate) = match deflate {
            Some((min, _)) => (Encoding::Deflate { min }, config.max_message_size),
            None => (Encoding::WebSocket, None),
        };
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            // A plain connection is `TokioIo<TcpStream>`: the outbox writes
            // to it directly. A TLS one (`wss://` at the node) cannot take
            // shared bytes (each connection encrypts its own), so it is
            // relayed through a Unix socket pair: the session and the
            // fan-out see a plain socket; a task encrypts and copies.
            let (stream, early): (Stream, _) = match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => {
                    // Bytes the client sent after its request head (its first
                    // frames), copied out: `read_buf` is a view of hyper's
                    // whole read buffer (kilobytes), which must not live as
                    // long as the session.
                    let early = parts.read_buf.to_vec();
                    (parts.io.into_inner().into(), early)
                }
                Err(upgraded) => match relay(upgraded) {
                    Ok(stream) => (stream.into(), Vec::new()),
                    Err(err) => {
                        tracing::warn!("cannot relay a TLS connection: {err}");
                        return;
                    }
                },
            };
            let outbox = Arc::new(Outbox::new(stream));
            // With deflate, what the client sent after its request head goes
            // through the inflater too, as tungstenite reads it.
            let (io, early) = match inflate {
                Some(max) => (Io::inflating(outbox.clone(), max, early), Vec::new()),
                None => (Io::new(outbox.clone()), early),
            };
            let socket =
                WebSocketStream::from_partially_read(io, early, Role::Server, Some(config)).await;
            // A task of its own: this one's future keeps the upgrade's
            // state (and the closure) for as long as it runs; the session's
            // task holds only the session, for every idle connection.
            tokio::spawn(session(WebSocket { socket, encoding }, outbox));
        });
        let mut response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept);
        if let Some((_, extension)) = deflate {
            response = response.header(header::SEC_WEBSOCKET_EXTENSIONS, extension);
        }
        response
            .body(axum::body::Body::empty())
            .expect("valid response")
    }
}

/// A socket pair relaying `upgraded` (a TLS stream): returns the end the
/// session and the fan-out write to; a task copies between the other end
/// and `upgraded` until either side closes. Costs a socket pair and a copy
/// per TLS connection, which is why TLS at scale belongs to the load
/// balancer.
///
/// A Unix `socketpair`, not a loopback TCP pair: it is born connected, so
/// there is no listening port another local process could connect to first
/// (and read a TLS client's plaintext); and its send buffer is capped like a
/// client socket's ([`RELAY_SEND_BUFFER`]), so a stalled `wss://` client
/// blocks the outbox soon and is dropped as slow, as a `ws://` one is,
/// instead of parking megabytes in the kernel.
fn relay(upgraded: hyper::upgrade::Upgraded) -> std::io::Result<UnixStream> {
    let (near, far) = UnixStream::pair()?;
    for end in [&near, &far] {
        socket2::SockRef::from(end).set_send_buffer_size(RELAY_SEND_BUFFER)?;
    }
    tokio::spawn(async move {
        let mut tls = TokioIo::new(upgraded);
        let mut far = far;
        let _ = tokio::io::copy_bidirectional(&mut tls, &mut far).await;
    });
    Ok(near)
}
