//! `GET /ws/dashboard`: the handshake checks, then the upgrade.
//!
//! Everything that can refuse a client does so here, with an HTTP status,
//! before the upgrade: a foreign `Origin` (403), a draining node (503), a
//! missing or bad token (401), an invalid `?types=` (400), and the limits of
//! [`crate::admission`] (503 node full, 429 per-IP limit or rate). A malformed `?since=` is not refused: the spec
//! answers it after the upgrade with `recovered: false`.

pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::counter;
use serde::Deserialize;
use shared::{Position, TypeFilter};

use crate::AppState;
use crate::admission::Refusal;
use crate::http::AppError;
use crate::telemetry::HANDSHAKES_REJECTED;

/// Bytes tungstenite reads from the socket at a time, allocated for every
/// connection: its default (128 KiB) would dominate an idle connection's
/// memory. Clients send tiny frames; the buffer grows for a larger one.
const READ_BUFFER: usize = 1024;
/// Outgoing bytes gathered before a write; a batch is flushed anyway.
const WRITE_BUFFER: usize = 16 * 1024;

/// A client whose unsent bytes exceed this is dropped. Sized from
/// `MAX_EVENT_BYTES` so that an event within the limit can never be what
/// disconnects a client: the buffer is written out once it passes
/// `WRITE_BUFFER`, so it holds at most that plus one frame (a frame being an
/// event, its id, and the frame header); twice that is margin.
pub fn max_write_buffer(max_event_bytes: usize) -> usize {
    const FRAME_HEADER: usize = 14;
    WRITE_BUFFER + 2 * (max_event_bytes + shared::envelope::ENVELOPE_GROWTH + FRAME_HEADER)
}

#[derive(Debug, Default, Deserialize)]
pub struct DashboardQuery {
    types: Option<String>,
    since: Option<String>,
    token: Option<String>,
}

/// What the client asked for, checked.
#[derive(Debug, Clone)]
pub struct ClientParams {
    pub filter: TypeFilter,
    pub resume: Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// No `?since=`: live from now.
    Fresh,
    /// `?since=<position>`: replay what came after it.
    Since(Position),
    /// `?since=` that is no event id: answered with `recovered: false`.
    Malformed,
}

fn reject(reason: &'static str, err: AppError) -> Response {
    counter!(HANDSHAKES_REJECTED, "reason" => reason).increment(1);
    err.into_response()
}

pub async fn dashboard(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<DashboardQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&state.config.cors_origins, &headers) {
        return reject(
            "origin",
            AppError::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                "this Origin may not connect",
            ),
        );
    }
    if state.is_draining() {
        return reject(
            "draining",
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "this node is shutting down; connect to another",
            ),
        );
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Err(refusal) = state
        .admission
        .authenticate(query.token.as_deref().or(bearer))
    {
        return refuse(refusal);
    }
    let filter = match TypeFilter::parse(query.types.as_deref().unwrap_or("")) {
        Ok(filter) => filter,
        Err(err) => {
            return reject(
                "bad_request",
                AppError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_types",
                    &format!("?types=: {err}"),
                ),
            );
        }
    };
    let resume = match query.since.as_deref() {
        None => Resume::Fresh,
        Some(since) => since.parse().map_or(Resume::Malformed, Resume::Since),
    };
    let params = ClientParams { filter, resume };
    let ip = state.admission.client_ip(peer, &headers);
    let admitted = match state.admission.admit(ip, &state.node) {
        Ok(admitted) => admitted,
        Err(refusal) => return refuse(refusal),
    };
    let max = state.config.max_message_bytes;
    let token = state.tracker.token();
    tracing::debug!(%peer, %ip, "websocket upgrade");
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(max_write_buffer(state.config.wire.max_event_bytes))
        .on_upgrade(move |socket| async move {
            session::run(socket, state, params).await;
            drop((admitted, token));
        })
}

fn refuse(refusal: Refusal) -> Response {
    let label = refusal.label();
    let mut response = match refusal {
        Refusal::Unauthorized(why) => AppError::new(StatusCode::UNAUTHORIZED, "unauthorized", &why),
        Refusal::NodeFull => AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_full",
            "this node is at its connection limit; retry",
        ),
        Refusal::IpFull => AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "too many connections from your address",
        ),
        Refusal::RateLimited => AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many connection attempts; slow down",
        ),
    }
    .into_response();
    if response.status() != StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    counter!(HANDSHAKES_REJECTED, "reason" => label).increment(1);
    response
}

/// No `CORS_ORIGINS`: any origin. Otherwise a browser's `Origin` must be in
/// the list. A request without `Origin` is not from a browser page (CLI
/// tools, backend services) and is let through, as CORS only guards pages.
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    origin
        .to_str()
        .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
        .is_ok_and(|o| allowed.contains(&o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        headers
    }

    #[test]
    fn origins_are_checked_only_when_configured() {
        let allowed = vec!["https://ops.example.com".to_owned()];
        assert!(origin_allowed(&[], &headers(Some("https://evil.example"))));
        assert!(origin_allowed(
            &allowed,
            &headers(Some("https://OPS.example.com"))
        ));
        assert!(!origin_allowed(
            &allowed,
            &headers(Some("https://evil.example"))
        ));
        assert!(!origin_allowed(&allowed, &headers(Some("null"))));
        assert!(origin_allowed(&allowed, &headers(None)));
    }
}
