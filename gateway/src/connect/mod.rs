//! What a dashboard connection asks for, checked once for every transport
//! (`/ws/dashboard` and `/sse/dashboard`).
//!
//! Everything that can refuse a client does so here, with an HTTP status,
//! before anything is streamed: a foreign `Origin` (403), a draining node
//! (503), a missing or bad token (401), an invalid `?types=` (400), a type
//! the token's `types` claim does not allow (403), and the limits of
//! [`crate::admission`] (503 node full, 429 per-IP or per-user limit or
//! rate). A malformed `?since=` is not refused: the spec answers it in the
//! stream with `recovered: false`.
//!
//! `?auth=frame` (WebSocket only) moves the token out of the URL: the checks
//! that need it are made after the upgrade, on the client's first frame
//! (`ws::auth_frame`), and refused with close codes instead of statuses.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::SystemTime;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::counter;
use serde::Deserialize;
use shared::{Position, TypeFilter};

use crate::admission::{Admitted, Refusal};
use crate::error::AppError;
use crate::state::AppState;
use crate::telemetry::HANDSHAKES_REJECTED;

#[derive(Debug, Default, Deserialize)]
pub struct DashboardQuery {
    types: Option<String>,
    pub since: Option<String>,
    token: Option<String>,
    /// `frame`: the token comes as the first frame (WebSocket only: `ws::auth_frame`).
    auth: Option<String>,
    /// `1`: the current keyed state after the greeting.
    state: Option<String>,
}

/// What the client asked for, checked.
#[derive(Debug, Clone)]
pub struct ClientParams {
    pub filter: TypeFilter,
    pub resume: Resume,
    /// When the client's token stops being good: the session closes it
    /// then with 4001 (`None`: no token, no end).
    pub good_until: Option<SystemTime>,
    /// Whether the token lets the client see analytics: if not, its
    /// greeting carries `data: {}` (and still its position).
    pub sees_analytics: bool,
    /// `?state=1`: the current keyed state after the greeting (or after a
    /// resume that could not recover).
    pub state: bool,
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

pub(crate) fn reject(reason: &'static str, err: AppError) -> Response {
    counter!(HANDSHAKES_REJECTED, "reason" => reason).increment(1);
    err.into_response()
}

/// A connection the checks let through.
pub enum Checked {
    /// The token (if any) was judged: the session can start.
    Ready {
        params: ClientParams,
        /// The node's, the address's and the user's places.
        admitted: Admitted,
        ip: IpAddr,
    },
    /// `?auth=frame`: the token comes in the first frame.
    AwaitingToken(Awaiting),
}

/// What the handshake checked, waiting for the token (`?auth=frame`).
pub struct Awaiting {
    /// `?types=`, parsed; bounded by the token's claim once it comes.
    pub asked: TypeFilter,
    pub resume: Resume,
    /// `?state=1`.
    pub state: bool,
    /// The node's and the address's places, taken at the handshake.
    pub admitted: Admitted,
    pub ip: IpAddr,
}

/// Runs every check a dashboard connection passes before anything is sent
/// to it, whatever its transport. `frame_auth`: whether `?auth=frame` is
/// possible on this transport (a stream the client cannot write to has no
/// first frame).
/// Whether the request's `Origin` may connect (see [`origin_allowed`]).
pub fn origin_ok(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> bool {
    // The page's own origin is https:// when this node serves TLS itself,
    // or when a trusted proxy says it terminated TLS.
    let behind_tls = state.tls.is_some()
        || (state.admission.is_trusted(peer.ip().to_canonical())
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")));
    origin_allowed(&state.config.cors_origins, headers, behind_tls)
}

pub async fn check(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    query: DashboardQuery,
    frame_auth: bool,
) -> Result<Checked, Response> {
    if !origin_ok(state, peer, headers) {
        log_refused_origin(headers);
        return Err(reject(
            "origin",
            AppError::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                "this Origin may not connect",
            ),
        ));
    }
    if state.is_draining() {
        return Err(reject(
            "draining",
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "this node is shutting down; connect to another",
            ),
        ));
    }
    let bearer = crate::http::bearer(headers);
    // An empty `?token=` is no token: the header still counts.
    let token = query.token.as_deref().filter(|t| !t.is_empty()).or(bearer);
    let by_frame = match query.auth.as_deref().filter(|a| !a.is_empty()) {
        None => false,
        Some("frame") if frame_auth && token.is_none() => true,
        Some(auth) => {
            let why = if !frame_auth {
                "?auth=frame is for /ws/dashboard; send the token as Authorization: Bearer"
            } else if auth == "frame" {
                "?auth=frame: the token comes in the first frame, not in ?token= or a header"
            } else {
                "?auth= takes only \"frame\""
            };
            return Err(reject(
                "bad_request",
                AppError::new(StatusCode::BAD_REQUEST, "bad_auth", why),
            ));
        }
    };
    // With `?auth=frame` the token is judged after the upgrade.
    let identity = if by_frame {
        None
    } else {
        match state.admission.authenticate(token).await {
            Ok(identity) => Some(identity),
            Err(refusal) => return Err(refuse(refusal)),
        }
    };
    let asked = match TypeFilter::parse(query.types.as_deref().unwrap_or("")) {
        Ok(filter) => filter,
        Err(err) => {
            return Err(reject(
                "bad_request",
                AppError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_types",
                    &format!("?types=: {err}"),
                ),
            ));
        }
    };
    let resume = match query.since.as_deref() {
        None => Resume::Fresh,
        Some(since) => since.parse().map_or(Resume::Malformed, Resume::Since),
    };
    let wants_state = match query.state.as_deref() {
        None | Some("0" | "false" | "") => false,
        Some("1" | "true") => true,
        Some(_) => {
            return Err(reject(
                "bad_request",
                AppError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_state",
                    "?state= is 1 (send the current state) or 0",
                ),
            ));
        }
    };
    let ip = state.admission.client_ip(peer, headers);
    let Some(identity) = identity else {
        let admitted = state
            .admission
            .admit(ip, None, &state.node)
            .map_err(refuse)?;
        return Ok(Checked::AwaitingToken(Awaiting {
            asked,
            resume,
            state: wants_state,
            admitted,
            ip,
        }));
    };
    let filter = within_claim(asked, identity.types.as_deref()).map_err(refuse)?;
    let params = ClientParams {
        filter,
        resume,
        good_until: identity.good_until,
        sees_analytics: sees_analytics(identity.types.as_deref()),
        state: wants_state,
    };
    let admitted = state
        .admission
        .admit(ip, identity.sub.as_deref(), &state.node)
        .map_err(refuse)?;
    Ok(Checked::Ready {
        params,
        admitted,
        ip,
    })
}

/// A repeated or malformed query parameter: the JSON error shape, counted,
/// like every other refusal (axum's own answer would be plain text).
pub fn bad_query(rejection: &axum::extract::rejection::QueryRejection) -> Response {
    reject(
        "bad_request",
        AppError::new(StatusCode::BAD_REQUEST, "bad_query", &rejection.body_text()),
    )
}

/// Whether a token's `types` claim lets the client see analytics: if not,
/// its greeting carries `data: {}` (and still its position).
pub(crate) fn sees_analytics(claim: Option<&[String]>) -> bool {
    claim.is_none_or(|types| types.iter().any(|t| t == shared::kind::ANALYTICS_UPDATE))
}

/// What a client may receive: what it asked for, within its token's
/// `types` claim. No `?types=` under a claim: exactly the claim's types.
pub(crate) fn within_claim(
    asked: TypeFilter,
    allowed: Option<&[String]>,
) -> Result<TypeFilter, Refusal> {
    let Some(allowed) = allowed else {
        return Ok(asked);
    };
    match asked.types() {
        None => Ok(TypeFilter::exactly(allowed)),
        Some(types) => match types.iter().find(|t| !allowed.contains(t)) {
            Some(forbidden) => Err(Refusal::ForbiddenType(forbidden.clone())),
            None => Ok(asked),
        },
    }
}

/// Counts a refusal in `gateway_handshakes_rejected_total`: its reason,
/// and for a bad token the cause.
pub(crate) fn count_refusal(refusal: &Refusal) {
    let label = refusal.label();
    match refusal {
        Refusal::Unauthorized(failure) => {
            counter!(HANDSHAKES_REJECTED, "reason" => label, "cause" => failure.label())
                .increment(1);
        }
        _ => counter!(HANDSHAKES_REJECTED, "reason" => label).increment(1),
    }
}

fn refuse(refusal: Refusal) -> Response {
    count_refusal(&refusal);
    let mut response = match refusal {
        Refusal::Unauthorized(failure) => {
            AppError::new(StatusCode::UNAUTHORIZED, "unauthorized", failure.message())
        }
        Refusal::ForbiddenType(kind) => AppError::new(
            StatusCode::FORBIDDEN,
            "forbidden_type",
            &format!("your token does not allow type {kind:?}"),
        ),
        Refusal::UserFull => AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "too many connections for your user",
        ),
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
    if !matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// No `CORS_ORIGINS`: any origin. Otherwise a browser's `Origin` must be in
/// the list, or be the node's own page (`/`): the request's own scheme and
/// `Host`, when that host is an IP address or `localhost`
/// ([`names_the_node_itself`]). The scheme is `http` unless the node serves
/// TLS or a trusted proxy says `X-Forwarded-Proto: https` (`behind_tls`). A
/// request without `Origin` is not from a browser page (CLI tools, backend
/// services) and is let through, as CORS only guards pages.
fn origin_allowed(allowed: &[String], headers: &HeaderMap, behind_tls: bool) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin
        .to_str()
        .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
    else {
        return false;
    };
    if allowed.contains(&origin) {
        return true;
    }
    let scheme = if behind_tls { "https" } else { "http" };
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase)
        .is_some_and(|host| names_the_node_itself(&host) && origin == format!("{scheme}://{host}"))
}

/// Whether a `Host` (`name[:port]`, `[v6][:port]`) can only be this node as
/// the browser reached it: an IP address or `localhost`. A name proves
/// nothing: a page on `http://evil.example:8000` whose name the attacker
/// re-points at the node (DNS rebinding) sends `evil.example:8000` as both
/// `Host` and `Origin`, so "origin equals host" would let any site in. A
/// node reached by name (`https://dashboards.example.com` through a load
/// balancer) has that origin listed in `CORS_ORIGINS` (as Django's
/// `ALLOWED_HOSTS` names the site's hosts).
fn names_the_node_itself(host: &str) -> bool {
    let (is_address, port) = match host.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((v6, port)) => (v6.parse::<std::net::Ipv6Addr>().is_ok(), port),
            None => return false,
        },
        None => {
            let (name, port) = host.split_at(host.find(':').unwrap_or(host.len()));
            (
                name == "localhost" || name.parse::<std::net::Ipv4Addr>().is_ok(),
                port,
            )
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    is_address && port_ok
}

/// Refused origins already logged; past this many, no more are.
const LOGGED_ORIGINS: usize = 64;
static REFUSED_ORIGINS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Logs a refused `Origin` once (per process, for the first
/// [`LOGGED_ORIGINS`]), naming the setting that would admit it: a page
/// that cannot connect is otherwise a silent 403 in the browser.
fn log_refused_origin(headers: &HeaderMap) {
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| {
            String::from_utf8_lossy(o.as_bytes())
                .chars()
                .take(120)
                .collect::<String>()
        })
        .unwrap_or_default();
    let mut logged = REFUSED_ORIGINS.lock().unwrap_or_else(|p| p.into_inner());
    if logged.len() < LOGGED_ORIGINS && logged.insert(origin.clone()) {
        tracing::warn!(
            origin = ?origin,
            "a dashboard connection from an origin not in CORS_ORIGINS refused (403); add it to CORS_ORIGINS to allow it"
        );
    }
}

#[cfg(test)]
mod tests;
