//! The plain HTTP routes: status, health, readiness, metrics, publish
//! ([`publish`]: the key before the body, batches), and the dashboard page's
//! embedded assets.
//!
//! Errors leave through [`crate::error::AppError`]: a status and a small
//! JSON body `{"error":{"code","message"}}`, never internals.

mod publish;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::membership::NodeStatus;
use crate::state::AppState;

pub use publish::{PublishKeyError, check_publish_key, publish};

/// The token of an `Authorization: Bearer <token>` header, if any: the
/// publish key on `/api/publish`, a JWT on the dashboard routes.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

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
