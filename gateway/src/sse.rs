//! `GET /sse/dashboard`: the same stream as Server-Sent Events, for networks
//! whose proxies refuse WebSocket upgrades.
//!
//! The same checks as the WebSocket ([`crate::connect`]; the token as
//! `Authorization: Bearer`, or `?token=` for a plain `EventSource`), then the
//! same session ([`crate::session`]) over an [`Sse`] transport: the
//! greeting, the replay and its `recovery`, live, with each envelope as one
//! record (`id:` its position when it has one, `data:` the envelope) and
//! heartbeats as comment lines. A resume comes as `?since=` or as the
//! standard `Last-Event-ID` header (an `EventSource` reconnecting sends it;
//! it wins over the URL's `?since=`, which is older). When the node ends the
//! stream it says why first, as a WebSocket close would: an `event: close`
//! record whose data is `{"code":N,"reason":"..."}` (4001: fetch a fresh
//! token; 1013: reconnect with `?since=`; 1001: the node is shutting down).
//!
//! How the response joins the fan-out: the body is read from one end of a
//! Unix socket pair, and the client's [`Outbox`] writes to the other, as it
//! does for a TLS connection's relay. So the fan-out writes an SSE client's
//! records exactly as it writes a WebSocket client's frames (one
//! non-blocking write per batch, shared bytes), and a client that does not
//! read fills the pair (its send buffer is capped), then its outbox, and is
//! closed by the same budget (`CLIENT_BUFFER_BYTES`, `WRITE_TIMEOUT_MS`). A
//! client that goes away drops the body, which closes the pair: the session
//! sees its end.
//!
//! Proxies: `X-Accel-Buffering: no` tells nginx not to buffer the response
//! (its default would hold records back until a buffer fills), and
//! `Cache-Control: no-cache` tells every proxy not to keep it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use shared::Position;
use tokio::net::UnixStream;
use tokio::time::timeout;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::connect::{self, Checked, DashboardQuery};
use crate::error::AppError;
use crate::listener::Connection;
use crate::session::{self, ended::Ended};
use crate::state::AppState;
use crate::transport::outbox::Outbox;
use crate::transport::stream::{RELAY_SEND_BUFFER, Stream};
use crate::transport::{Encoding, Heartbeat, Inbound, Transport};

/// A heartbeat: a comment line, which every SSE reader skips.
const HEARTBEAT: Bytes = Bytes::from_static(b": ping\n\n");
/// How long the last record may take to go out before the stream ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// One envelope as an SSE record: `id:` (its position), then the envelope
/// as `data:` lines (one per line of it: JSON a publisher passed through may
/// hold line breaks, which a reader joins back with `\n`), then a blank line.
pub fn record(text: &str, id: Option<Position>) -> Bytes {
    let mut out = BytesMut::with_capacity(text.len() + 48);
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.to_string().as_bytes());
        out.put_u8(b'\n');
    }
    for line in text.split("\r\n").flat_map(|l| l.split(['\n', '\r'])) {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// The record that ends a stream, saying why (a WebSocket close code).
fn close_record(code: u16, reason: &str) -> Bytes {
    let data = serde_json::json!({ "code": code, "reason": reason });
    Bytes::from(format!("event: close\ndata: {data}\n\n"))
}

/// A client reading Server-Sent Events: it writes nothing after its
/// request, so all a session hears of it is its end.
pub struct Sse {
    outbox: Arc<Outbox>,
    /// Drops the client's HTTP connection: once the session is over, a
    /// reader that stalled must not keep it (and hyper's buffers) forever.
    abort: Option<CancellationToken>,
}

impl Transport for Sse {
    fn encoding(&self) -> Encoding {
        Encoding::Sse
    }

    async fn next(&mut self) -> Inbound {
        self.outbox.closed().await;
        Inbound::Ended(Ended::ClientGone)
    }

    fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            bytes: HEARTBEAT,
            answered: false,
        }
    }

    async fn close(&mut self, outbox: &Outbox, ended: Ended) {
        if let Some((code, reason)) = ended.close_code()
            && outbox.push_frame(close_record(code, reason)).is_ok()
        {
            let _ = timeout(CLOSE_TIMEOUT, outbox.drain()).await;
        }
        // The outbox (our end of the pair) is dropped with the session: the
        // body reads its end, and the response completes. A client that
        // does not read it gets that long, then its connection is dropped.
        if let Some(abort) = self.abort.take() {
            tokio::spawn(async move {
                tokio::time::sleep(CLOSE_TIMEOUT).await;
                abort.cancel();
            });
        }
    }
}

pub async fn dashboard(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    connection: Option<Extension<Connection>>,
    headers: HeaderMap,
    query: Result<Query<DashboardQuery>, QueryRejection>,
) -> Response {
    let mut query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return connect::bad_query(&rejection),
    };
    if let Some(last) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        query.since = Some(last.to_owned());
    }
    let (params, admitted, ip) = match connect::check(&state, peer, &headers, query, false).await {
        Ok(Checked::Ready {
            params,
            admitted,
            ip,
        }) => (params, admitted, ip),
        // Not offered here (`frame_auth: false` refuses `?auth=frame`).
        Ok(Checked::AwaitingToken(_)) => {
            return AppError::new(StatusCode::BAD_REQUEST, "bad_auth", "no ?auth= here")
                .into_response();
        }
        Err(mut refused) => {
            // Readable by the page that asked (a 401 must reach the client
            // to fetch a fresh token), unless its origin was the refusal.
            if connect::origin_ok(&state, peer, &headers) {
                allow_origin(&headers, refused.headers_mut());
            }
            return refused;
        }
    };
    // A stream, not a pending request: it no longer counts toward the
    // listener's limits on connections that have not been answered (those
    // would cap a NAT's dashboards at 128), but toward the session's own.
    if let Some(Extension(connection)) = &connection {
        connection.release_pending();
    }
    let (near, far) = match socket_pair() {
        Ok(pair) => pair,
        Err(err) => {
            tracing::warn!("cannot open an SSE stream: {err}");
            return AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "cannot open a stream; retry",
            )
            .into_response();
        }
    };
    let outbox = Arc::new(Outbox::new(Stream::Unix(near)));
    let token = state.tracker.token();
    tracing::debug!(%peer, %ip, "server-sent events stream");
    let span = tracing::info_span!("session", %peer, %ip, node = %state.node.id, transport = "sse");
    let ctx = session::SessionContext::of(&state);
    let transport = Sse {
        outbox: outbox.clone(),
        abort: connection.map(|Extension(c)| c.abort),
    };
    tokio::spawn(
        session::run(transport, outbox, ctx, params)
            .map(move |()| drop((admitted, token)))
            .instrument(span),
    );
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(ReaderStream::new(far)))
        .expect("valid response");
    allow_origin(&headers, response.headers_mut());
    response
}

/// The answer to a browser's CORS preflight for the stream: a page on
/// another origin (the check itself is the GET's, against `CORS_ORIGINS`)
/// reads it with `fetch` and an `Authorization` header, which needs one.
pub async fn preflight(headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    allow_origin(&headers, out);
    out.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, last-event-id"),
    );
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET"),
    );
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Lets the requesting page read the response: its `Origin` echoed (the
/// GET is refused with 403 before this when the origin is not allowed).
fn allow_origin(request: &HeaderMap, response: &mut HeaderMap) {
    if let Some(origin) = request.get(header::ORIGIN) {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        response.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The pair a stream's bytes cross: the outbox writes `near`, the response
/// body reads `far`. Send buffers capped as for a relay, so a stalled reader
/// is seen by the outbox's budget, not hidden in the kernel.
fn socket_pair() -> std::io::Result<(UnixStream, UnixStream)> {
    let (near, far) = UnixStream::pair()?;
    for end in [&near, &far] {
        socket2::SockRef::from(end).set_send_buffer_size(RELAY_SEND_BUFFER)?;
    }
    Ok((near, far))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Epoch, EventId};

    #[test]
    fn a_record_names_its_position_and_keeps_every_line_of_the_envelope() {
        let id = Position::new(Epoch(0x0a0b0c0d), EventId { ms: 7, seq: 1 });
        let got = record("{\"type\":\"alert\",\n\"data\":1}", Some(id));
        let expected = format!("id: {id}\ndata: {{\"type\":\"alert\",\ndata: \"data\":1}}\n\n");
        assert_eq!(got, expected.as_bytes());
        assert_eq!(record("{}", None), &b"data: {}\n\n"[..]);
        // A CRLF is one line break, as an SSE reader counts it.
        assert_eq!(
            record("{\"a\":\r\n1}", None),
            &b"data: {\"a\":\ndata: 1}\n\n"[..]
        );
    }

    #[test]
    fn a_closing_record_is_a_named_event_with_the_close_code() {
        assert_eq!(
            close_record(4001, "token expired"),
            &b"event: close\ndata: {\"code\":4001,\"reason\":\"token expired\"}\n\n"[..]
        );
    }
}
