//! [`Client`]: a dashboard's WebSocket connection, reading envelopes as
//! JSON, and how its connection ended as the client saw it.

use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::PATIENCE;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A dashboard client.
pub struct Client {
    ws: Ws,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Code(u16),
    /// The TCP connection ended without a close frame.
    Dropped,
}

impl Client {
    pub async fn connect(url: &str) -> Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("connect {url}"))?;
        Ok(Self { ws })
    }

    /// Connects to a `wss://` URL trusting `config` (e.g.
    /// [`tls::TestCa::client_config`]).
    pub async fn connect_tls(
        url: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(config)),
        )
        .await
        .with_context(|| format!("connect {url}"))?;
        Ok(Self { ws })
    }

    /// The certificate the server presented (DER), on a `wss://` connection.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self.ws.get_ref() {
            MaybeTlsStream::Rustls(stream) => stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.to_vec()),
            _ => None,
        }
    }

    pub async fn connect_with_origin(
        url: &str,
        origin: &str,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        Self::connect_with_headers(url, &[("Origin", origin)]).await
    }

    /// Connects with extra handshake headers; the error keeps the HTTP
    /// response of a refused handshake (its status).
    pub async fn connect_with_headers(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::HeaderName;
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            let name: HeaderName = name.parse().expect("header name");
            request
                .headers_mut()
                .append(name, value.parse().expect("header value"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self { ws })
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn send(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next text frame as JSON; fails the test after `PATIENCE`.
    pub async fn next_json(&mut self) -> Value {
        self.try_next_json(PATIENCE)
            .await
            .expect("a message within the patience window")
    }

    /// The next text frame as JSON, or `None` if none comes within `wait`
    /// (or the connection ends).
    pub async fn try_next_json(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
                .ok()?;
            match message {
                Message::Text(text) => {
                    return Some(
                        serde_json::from_str(&text)
                            .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}")),
                    );
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads until a message of `kind`, returning it (others are skipped).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let message = self.next_json().await;
            if message["type"] == kind {
                return message;
            }
        }
    }

    /// Reads until the connection ends; how it ended.
    pub async fn closed(&mut self) -> Closed {
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the connection should end")
            {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map_or(Closed::Code(1005), |f| Closed::Code(u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Closed::Dropped,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

/// The HTTP status a refused handshake got (`None` if it was accepted or
/// failed otherwise).
pub fn refused_status(
    result: &Result<Client, tokio_tungstenite::tungstenite::Error>,
) -> Option<u16> {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Some(response.status().as_u16())
        }
        _ => None,
    }
}
