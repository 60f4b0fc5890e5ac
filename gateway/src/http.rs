//! The plain HTTP routes: status, health, readiness, metrics, publish, and
//! the dashboard page's embedded assets.
//!
//! Errors leave through [`crate::error::AppError`]: a status and a small
//! JSON body `{"error":{"code","message"}}`, never internals.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::counter;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::bus::BusError;
use crate::error::AppError;
use crate::membership::NodeStatus;
use crate::state::AppState;
use crate::telemetry::PUBLISH_REQUESTS;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let (status, why) = if state.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if !state.bus.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "bus not connected")
    } else {
        (StatusCode::OK, "ready")
    };
    (
        status,
        Json(json!({"status": why, "bus": state.bus.name()})),
    )
        .into_response()
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Cluster-wide connection counts. This node's own line is always live; the
/// others come from the bus. Without Redis the answer is this node alone,
/// flagged `cluster_unavailable` so a reader knows the sum is partial.
pub async fn status(State(state): State<Arc<AppState>>) -> Response {
    let node = &state.node;
    let local = NodeStatus {
        node_id: node.id.clone(),
        active_connections: node.connections(),
        ready: state.bus.is_ready() && !state.is_draining(),
        bus: state.bus.name().to_owned(),
        started_at: shared::envelope::format_timestamp(node.started_at),
        updated_at: shared::envelope::format_timestamp(chrono::Utc::now()),
    };
    let (mut nodes, cluster_ok) = match state.membership.nodes().await {
        Ok(nodes) => (nodes, true),
        Err(err) => {
            tracing::warn!("cluster status unavailable: {err}");
            (Vec::new(), false)
        }
    };
    nodes.retain(|n| n.node_id != node.id);
    nodes.push(local);
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    let total: u64 = nodes.iter().map(|n| n.active_connections).sum();
    // What the FastAPI `/ws/status` this replaces answered, and scripts read.
    let health = if state.bus.is_ready() {
        "operational"
    } else {
        "degraded"
    };
    Json(json!({
        "active_connections": total,
        "status": health,
        "node_id": node.id,
        "local_connections": node.connections(),
        "nodes": nodes,
        "bus": state.bus.name(),
        "cluster_unavailable": !cluster_ok,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct PublishBody {
    #[serde(rename = "type")]
    kind: String,
    /// Optional: an event may carry no data (`null`).
    data: Option<Box<RawValue>>,
}

/// `POST /api/publish`: 202 once the event is on the bus.
pub async fn publish(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = publish_inner(&state, &headers, &body).await;
    let label = match &result {
        Ok(_) => "accepted",
        Err(e) if e.status == StatusCode::NOT_FOUND => "disabled",
        Err(e) if e.status == StatusCode::UNAUTHORIZED => "unauthorized",
        Err(e) if e.status == StatusCode::BAD_REQUEST => "bad_request",
        Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        Err(_) => "unavailable",
    };
    counter!(PUBLISH_REQUESTS, "result" => label).increment(1);
    match result {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({"id": id.to_string()}))).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn publish_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<shared::Position, AppError> {
    let Some(key) = state.config.publish_api_key.as_ref().map(|k| k.expose()) else {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "publishing over HTTP is disabled (set PUBLISH_API_KEY)",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(presented.trim().as_bytes(), key.as_bytes()) {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer key",
        ));
    }
    let body: PublishBody = serde_json::from_slice(body).map_err(|e| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            &format!("expected {{\"type\": \"...\", \"data\": ...}}: {e}"),
        )
    })?;
    shared::validate_kind(&body.kind)
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, "bad_type", &e.to_string()))?;
    let data = body.data.unwrap_or_else(|| RawValue::NULL.to_owned());
    state.bus.publish(&body.kind, &data).await.map_err(|err| {
        if let BusError::Publish(err @ publisher::PublishError::TooLarge { .. }) = &err {
            return AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", &err.to_string());
        }
        tracing::warn!("publish failed: {err}");
        let message = match err {
            BusError::Unavailable | BusError::Timeout => "the bus is unavailable; retry",
            _ => "the bus refused the event; retry",
        };
        AppError::new(StatusCode::SERVICE_UNAVAILABLE, "bus_unavailable", message)
    })
}

/// Compares secrets without leaking, through timing, how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// The dashboard page and its assets, built into the binary.
pub mod assets {
    use axum::http::header;
    use axum::response::IntoResponse;

    const INDEX: &str = include_str!("../assets/index.html");
    const CSS: &str = include_str!("../assets/dashboard.css");
    const CLIENT_JS: &str = include_str!("../assets/ws-client.js");
    const DASHBOARD_JS: &str = include_str!("../assets/dashboard.js");

    const NO_CACHE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-cache");

    pub async fn index() -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8"), NO_CACHE],
            INDEX,
        )
    }

    pub async fn css() -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/css; charset=utf-8"), NO_CACHE],
            CSS,
        )
    }

    pub async fn client_js() -> impl IntoResponse {
        (
            [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                NO_CACHE,
            ],
            CLIENT_JS,
        )
    }

    pub async fn dashboard_js() -> impl IntoResponse {
        (
            [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                NO_CACHE,
            ],
            DASHBOARD_JS,
        )
    }

    /// `Referrer-Policy: no-referrer` on the page and its assets: the page's
    /// URL may carry `?token=`, and a `Referer` would copy it into every
    /// asset request (and its access-log line).
    pub async fn no_referrer(mut response: axum::response::Response) -> axum::response::Response {
        response.headers_mut().insert(
            header::REFERRER_POLICY,
            header::HeaderValue::from_static("no-referrer"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn keys_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
