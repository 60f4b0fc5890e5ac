//! `POST /api/publish`: events from a backend job that has no Redis (or may
//! not use it), onto the node's bus, so they reach every node.
//!
//! The body is `{"type": "...", "data": ...}`, answered 202 `{"id": "..."}`,
//! or a JSON array of such objects (a batch: published in order, in one bus
//! round trip, atomically into the history), answered 202 `{"ids": [...]}`
//! in the same order.
//!
//! Each check comes before anything the next one costs:
//! 1. the route is on (`PUBLISH_API_KEY` set), else 404, and the bearer key
//!    is right, else 401: both before one byte of the body is read (hyper
//!    sends no `100 Continue` until the body is asked for), so a caller
//!    without the key cannot make the node wait for or hold a body;
//! 2. a `Content-Length` over [`body_limit`]: 413, unread;
//! 3. the body, which must arrive whole within `HANDSHAKE_TIMEOUT_MS` (else
//!    408) and is cut off at once by a drain (503), so a stalled body holds
//!    neither a connection nor a SIGTERM; either way the connection closes;
//! 4. its shape: an object, or an array of at most [`MAX_BATCH_EVENTS`]
//!    (else 413) objects; every event's type and size (400 / 413, naming the
//!    event's index in an array) before any of them is published;
//! 5. the bus.

use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use metrics::counter;
use publisher::batch::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS};
use publisher::{Item, PublishError};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use shared::Position;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::bus::BusError;
use crate::error::AppError;
use crate::secret::Secret;
use crate::state::AppState;
use crate::telemetry::PUBLISH_REQUESTS;

/// The shortest `PUBLISH_API_KEY` a node starts with: the key is all that
/// stands between the network and every dashboard, and it is compared as
/// sent (no rate limit on wrong guesses). 16 characters of `openssl rand
/// -hex 16` are 64 bits.
pub const MIN_PUBLISH_KEY_CHARS: usize = 16;

/// Room in a body beyond the events' own bytes (the array, keys, spaces).
const BODY_SLACK: usize = 64 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "PUBLISH_API_KEY is {chars} characters long; it must be at least {MIN_PUBLISH_KEY_CHARS} \
     (anyone who guesses it can publish to every dashboard): make one with `openssl rand -hex 16`"
)]
pub struct PublishKeyError {
    chars: usize,
}

/// Checks a configured publish key (blank counts as unset, and is allowed:
/// the route is then off). The key itself is never shown.
pub fn check_publish_key(key: Option<&str>) -> Result<(), PublishKeyError> {
    match key.map(str::trim).filter(|key| !key.is_empty()) {
        Some(key) if key.chars().count() < MIN_PUBLISH_KEY_CHARS => Err(PublishKeyError {
            chars: key.chars().count(),
        }),
        _ => Ok(()),
    }
}

/// The largest body read: twice `MAX_EVENT_BYTES` (one event, escaped as
/// its author liked) or a whole batch's [`MAX_BATCH_BYTES`], whichever is
/// larger, plus room for the JSON around the events.
pub fn body_limit(max_event_bytes: usize) -> usize {
    (2 * max_event_bytes).max(MAX_BATCH_BYTES) + BODY_SLACK
}

#[derive(Deserialize)]
struct EventBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    /// Optional: an event may carry no data (`null`).
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    /// Its state key (else `STATE_KEYS` derives one from `data`).
    #[serde(default)]
    key: Option<String>,
    /// Removes its key from the state.
    #[serde(default)]
    removed: bool,
}

impl<'a> EventBody<'a> {
    fn item(&self) -> Item<'_, RawValue> {
        Item {
            kind: &self.kind,
            data: self.data.unwrap_or(RawValue::NULL),
            key: self.key.as_deref(),
            removed: self.removed,
        }
    }
}

/// What was published: one event or a batch.
enum Published {
    One(Position),
    Many(Vec<Position>),
}

/// A refusal, and whether the connection must close after it (the body was
/// not read to its end, so the next request could not be found in it).
struct Refusal {
    error: AppError,
    close: bool,
}

impl From<AppError> for Refusal {
    fn from(error: AppError) -> Self {
        Self {
            error,
            close: false,
        }
    }
}

impl Refusal {
    fn unread(error: AppError) -> Self {
        Self { error, close: true }
    }
}

/// `POST /api/publish`: 202 once the events are on the bus.
pub async fn publish(State(state): State<std::sync::Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let result = publish_inner(&state, &parts.headers, body).await;
    let label = match &result {
        Ok(_) => "accepted",
        Err(r) => match r.error.status {
            StatusCode::NOT_FOUND => "disabled",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::REQUEST_TIMEOUT => "timeout",
            _ if state.is_draining() => "draining",
            _ => "unavailable",
        },
    };
    counter!(PUBLISH_REQUESTS, "result" => label).increment(1);
    match result {
        Ok(Published::One(id)) => {
            (StatusCode::ACCEPTED, Json(json!({"id": id.to_string()}))).into_response()
        }
        Ok(Published::Many(ids)) => {
            let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
            (StatusCode::ACCEPTED, Json(json!({"ids": ids}))).into_response()
        }
        Err(Refusal { error, close }) => {
            let mut response = error.into_response();
            if close {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    }
}

async fn publish_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Published, Refusal> {
    // 1. Who asks, from the head alone.
    authorize(
        state.config.publish_api_key.as_ref().map(Secret::expose),
        headers,
    )
    .map_err(Refusal::unread)?;
    // 2–3. The body, bounded in size and time.
    let max_event_bytes = state.config.wire.max_event_bytes;
    let body = read_body(
        headers,
        body,
        body_limit(max_event_bytes),
        state.config.handshake_timeout(),
        &state.shutdown,
    )
    .await?;
    // 4. Its shape; 5. the bus.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let events: Vec<&RawValue> = serde_json::from_slice(&body).map_err(|e| {
            bad_body(&format!(
                "expected an array of {{\"type\": \"...\", \"data\": ...}} objects: {e}"
            ))
        })?;
        if events.len() > MAX_BATCH_EVENTS {
            return Err(AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_events",
                &format!(
                    "a batch holds at most {MAX_BATCH_EVENTS} events (this one {}): send several",
                    events.len()
                ),
            )
            .into());
        }
        let events = events
            .iter()
            .enumerate()
            .map(|(index, raw)| event(raw.get().as_bytes()).map_err(|e| in_batch(index, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let items: Vec<Item<'_, RawValue>> = events.iter().map(EventBody::item).collect();
        let ids = state.bus.publish_many(&items).await.map_err(bus_refusal)?;
        Ok(Published::Many(ids))
    } else {
        let event = event(&body)?;
        // A batch of one, so a key travels; refused as the event itself
        // (no `events[0]:` for a body that was no array).
        let ids = state
            .bus
            .publish_many(&[event.item()])
            .await
            .map_err(|err| match err {
                BusError::Publish(PublishError::InBatch { source, .. }) => {
                    BusError::Publish(*source)
                }
                other => other,
            })
            .map_err(bus_refusal)?;
        let id = ids.into_iter().next().ok_or_else(|| {
            Refusal::from(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "bus_unavailable",
                "the bus returned no position; retry",
            ))
        })?;
        Ok(Published::One(id))
    }
}

/// 404 when the route is off, 401 unless the bearer key is the node's.
fn authorize(key: Option<&str>, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(key) = key else {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "publishing over HTTP is disabled (set PUBLISH_API_KEY)",
        ));
    };
    let presented = super::bearer(headers).unwrap_or("");
    if !constant_time_eq(presented.trim().as_bytes(), key.as_bytes()) {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer key",
        ));
    }
    Ok(())
}

/// Reads the whole body: at most `limit` bytes (a larger `Content-Length`
/// is refused unread), all of it within `within`, and not past the start
/// of a drain.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    within: Duration,
    shutdown: &CancellationToken,
) -> Result<Bytes, Refusal> {
    let too_large = || {
        Refusal::unread(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!("the body is over {limit} bytes"),
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(within, http_body_util::Limited::new(body, limit).collect());
    tokio::select! {
        read = read => match read {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(err)) if err.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                Err(too_large())
            }
            Ok(Err(_)) => Err(Refusal::unread(bad_body("the body ended before it was whole"))),
            Err(_) => Err(Refusal::unread(AppError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                &format!(
                    "the body did not arrive within {} ms (HANDSHAKE_TIMEOUT_MS)",
                    within.as_millis()
                ),
            ))),
        },
        // A drain does not wait for a body that may never come.
        () = shutdown.cancelled() => Err(Refusal::unread(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the node is shutting down; publish through another node",
        ))),
    }
}

/// One `{"type", "data", "key"?, "removed"?}` object, its type checked (its
/// size and key are the bus's to check, against the envelope it encodes).
fn event(bytes: &[u8]) -> Result<EventBody<'_>, AppError> {
    let body: EventBody<'_> = serde_json::from_slice(bytes).map_err(|e| {
        bad_body(&format!(
            "expected {{\"type\": \"...\", \"data\": ...}}: {e}"
        ))
    })?;
    shared::validate_kind(&body.kind)
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, "bad_type", &e.to_string()))?;
    Ok(body)
}

fn bad_body(message: &str) -> AppError {
    AppError::new(StatusCode::BAD_REQUEST, "bad_body", message)
}

/// An event's refusal, as the refusal of the batch it is in.
fn in_batch(index: usize, err: AppError) -> AppError {
    err.in_event(index)
}

fn bus_refusal(err: BusError) -> Refusal {
    if let BusError::Publish(err) = &err {
        let status = match err.event_error() {
            PublishError::TooLarge { .. }
            | PublishError::BatchTooLarge { .. }
            | PublishError::BatchTooLong { .. } => {
                Some((StatusCode::PAYLOAD_TOO_LARGE, "too_large"))
            }
            PublishError::Kind(_) => Some((StatusCode::BAD_REQUEST, "bad_type")),
            PublishError::Key(_) => Some((StatusCode::BAD_REQUEST, "bad_key")),
            _ => None,
        };
        if let Some((status, code)) = status {
            return AppError::new(status, code, &err.to_string()).into();
        }
    }
    tracing::warn!("publish failed: {err}");
    let message = match err {
        BusError::Unavailable | BusError::Timeout => "the bus is unavailable; retry",
        _ => "the bus refused the event; retry",
    };
    AppError::new(StatusCode::SERVICE_UNAVAILABLE, "bus_unavailable", message).into()
}

/// Compares secrets without leaking, through timing, how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
    }

    #[test]
    fn a_short_publish_key_is_refused_without_being_shown() {
        let err = check_publish_key(Some("change-me")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("PUBLISH_API_KEY is 9 characters long; it must be at least 16"),
            "{message}"
        );
        assert!(!message.contains("change-me"), "{message}");
        assert_eq!(check_publish_key(Some("0123456789abcdef")), Ok(()));
        assert_eq!(check_publish_key(None), Ok(()));
        assert_eq!(check_publish_key(Some("  ")), Ok(()), "blank is unset");
    }

    #[test]
    fn a_body_may_hold_a_whole_batch_or_one_event_of_any_allowed_size() {
        assert_eq!(body_limit(64 * 1024), MAX_BATCH_BYTES + BODY_SLACK);
        assert_eq!(body_limit(16 * 1024 * 1024), 32 * 1024 * 1024 + BODY_SLACK);
    }
}
