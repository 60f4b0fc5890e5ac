//! The dashboard gateway: a stateless WebSocket node. Browsers connect to
//! `/ws/dashboard`; events published anywhere reach every client of every
//! node through the bus.
//!
//! # Layout
//! - [`config`]: the one typed [`Config`], from flags and environment.
//! - [`hub`]: bus payload → event (and its encodings, once each); hands it
//!   to the fan-out.
//! - [`fanout`]: the live clients; writes each event to their sockets.
//! - [`bus`]: the [`bus::Bus`] trait; [`bus::local`] (in-process) and
//!   [`bus::redis`] (Redis pub/sub, history stream, cluster counts).
//! - [`admission`]: who may connect, how many, how fast (JWT, limits).
//! - [`transport`]: the seam between the core and the transports: the
//!   encodings, the [`transport::Transport`] trait, the outbox (a client's
//!   write side, shared with the fan-out), permessage-deflate.
//! - [`connect`]: the checks every dashboard connection passes, once.
//! - [`session`]: one client from greeting to close, for every transport.
//! - [`ws`]: the WebSocket transport (`/ws/dashboard`); [`sse`]: Server-Sent
//!   Events (`/sse/dashboard`).
//! - [`http`]: status, health, readiness, metrics, publish, page assets.
//! - [`listener`]: the listening socket and the accept loop.
//! - [`state`]: [`AppState`], what handlers share; [`error`]: `AppError`.
//! - [`rate`]: the token bucket behind every rate limit.
//! - [`secret`]: [`secret::Secret`], a setting whose `Debug` shows `***`.
//! - [`membership`]: who else is in the cluster (`/ws/status`, drain).
//! - [`node`]: this node's id and live connection count.
//! - [`demo`]: the `--demo` generator on the node's own bus.
//! - [`telemetry`]: metric names and the Prometheus recorder.
//! - [`tls`]: `wss://` at the node, with certificates reloaded from disk.
//!
//! The binary (`src/main.rs`) only reads the config, binds, and calls
//! [`run`]; tests call [`start`] then [`serve`] on a `127.0.0.1:0` listener
//! (so they can reach the node's state), or run the binary itself.

// redis-rs's Sentinel lookup and TLS connect futures nest deeply; the
// compiler's default limit is not enough to lay out the bus's futures.
#![recursion_limit = "256"]

// What the binary and the tests use is public; everything else is the
// crate's own (tests go through HTTP and WebSocket, as users do).
pub(crate) mod admission;
pub(crate) mod bus;
pub mod config;
pub(crate) mod connect;
pub(crate) mod demo;
pub(crate) mod error;
pub(crate) mod fanout;
pub(crate) mod http;
pub(crate) mod hub;
pub(crate) mod listener;
pub(crate) mod membership;
pub(crate) mod node;
pub(crate) mod rate;
pub(crate) mod ring;
pub mod secret;
pub(crate) mod session;
pub(crate) mod sse;
pub(crate) mod state;
pub mod telemetry;
pub(crate) mod tls;
pub(crate) mod transport;
pub(crate) mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use publisher::{RedisTarget, Topology};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::bus::Bus;
use crate::bus::local::LocalBus;
use crate::bus::redis::RedisBus;
pub use crate::config::Config;
use crate::hub::{Arrival, Hub};
pub use crate::listener::listen;
use crate::membership::Membership;
use crate::node::Node;
pub use crate::state::AppState;

/// Replays one node runs at once: each holds one page of the history and
/// a Redis connection while it runs.
const MAX_CONCURRENT_REPLAYS: usize = 16;
/// Clients one node writes their keyed state to at once: the rest wait
/// their turn (costing nothing meanwhile), so 1,000 dashboards reconnecting
/// together share the CPU with the live fan-out instead of crowding it out.
const MAX_CONCURRENT_STATE_SENDS: usize = 32;
/// How often histograms are folded into their buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot start the bus: {0}")]
    Bus(#[from] bus::BusError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// The routes, over shared state.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(http::assets::index))
        .route("/dashboard", get(http::assets::index))
        .route("/assets/dashboard.css", get(http::assets::css))
        .route("/assets/ws-client.js", get(http::assets::client_js))
        .route("/assets/dashboard.js", get(http::assets::dashboard_js))
        .route_layer(axum::middleware::map_response(http::assets::no_referrer))
        .route("/ws/dashboard", get(ws::dashboard))
        .route(
            "/sse/dashboard",
            get(sse::dashboard).options(sse::preflight),
        )
        .route("/ws/status", get(http::status))
        .route("/metrics", get(http::metrics))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/api/publish", post(http::publish))
        // No route takes a body through an extractor any more (the publish
        // route reads its own, after the key: `http::publish`); this keeps
        // any future one small.
        .layer(DefaultBodyLimit::max(
            2 * state.config.wire.max_event_bytes + 4096,
        ))
        .with_state(state)
}

/// Runs one node on `listener` until `shutdown` is cancelled, then drains:
/// stops accepting, closes every client with 1001, leaves the cluster count
/// and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let state = start(config, shutdown)?;
    serve(listener, state).await
}

/// Builds a node's state and starts its background tasks (bus, metrics
/// upkeep, demo). Tests use it to reach the node's bus directly.
pub fn start(config: Config, shutdown: CancellationToken) -> Result<Arc<AppState>, GatewayError> {
    let mut config = config.validate()?;
    // `--demo` with no key: make one, so a newcomer can publish to the demo
    // over HTTP at once (printed when the node listens).
    let demo_publish_key = if config.demo && config.publish_api_key.is_none() {
        let key = demo::publish_key()?;
        config.publish_api_key = Some(key.clone().into());
        Some(key)
    } else {
        None
    };
    // First: metric handles taken before the recorder exists go nowhere.
    let metrics = telemetry::metrics_handle();
    // Everything that reads a file or parses a setting, before anything
    // starts: a bad value stops `start` with nothing left running.
    let admission = Arc::new(Admission::new(&config)?);
    let tls = match config.tls()? {
        Some((cert, key)) => Some(tls::acceptor(cert, key).map_err(config::ConfigError::Tls)?),
        None => None,
    };
    let node = Arc::new(Node::new(config.node_id.clone()));
    let redis = config.redis_target()?;
    let arrival = match redis.as_ref().map(RedisTarget::topology) {
        Some(Topology::Cluster) => Arrival::Unordered,
        _ => Arrival::InOrder,
    };
    let hub = Arc::new(
        Hub::new(config.ring_bytes, arrival, config.wire.max_event_bytes)
            .with_client_budget(config.client_budget())
            .with_state_ttl(config.wire.state().ttl),
    );
    let tracker = TaskTracker::new();
    let (bus, membership): (Arc<dyn Bus>, Arc<dyn Membership>) = match redis {
        None => (
            Arc::new(LocalBus::with_state(
                hub.clone(),
                config.history(),
                config.wire.state(),
            )),
            Arc::new(membership::Alone),
        ),
        Some(target) => {
            // Never the password: `describe` redacts it.
            tracing::info!(redis = target.describe(), "bus: Redis");
            let wire = config.wire.wire_format(target.topology());
            let redis = RedisBus::start(
                target,
                wire,
                hub.clone(),
                node.clone(),
                shutdown.clone(),
                &tracker,
            )?;
            (redis.clone(), redis)
        }
    };
    hub.attach_history(bus.clone());
    tracker.spawn(metrics_upkeep(metrics.clone(), shutdown.clone()));
    if let Some(jwks) = admission.jwks() {
        tracker.spawn(jwks.run(shutdown.clone()));
    }
    if let Some(limits) = admission.ip_limits() {
        tracker.spawn(sweep_ip_limits(limits, shutdown.clone()));
    }
    if config.demo {
        tracker.spawn(demo::run(bus.clone(), config.demo_rate, shutdown.clone()));
    } else if !config.redis.is_set() {
        tracing::info!(
            "no REDIS_URL: one node on the in-process bus; add --demo for live demo data"
        );
    }
    Ok(Arc::new(AppState {
        node,
        hub,
        bus,
        membership,
        metrics,
        admission,
        config,
        shutdown,
        tracker,
        replays: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_REPLAYS)),
        state_sends: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_STATE_SENDS)),
        demo_publish_key,
        tls,
    }))
}

/// Serves `state` on `listener` until its shutdown token is cancelled, then
/// drains.
pub async fn serve(listener: TcpListener, state: Arc<AppState>) -> Result<(), GatewayError> {
    tracing::info!(
        node_id = %state.node.id,
        addr = %listener.local_addr()?,
        bus = state.bus.name(),
        tls = state.tls.is_some(),
        "gateway listening"
    );
    if state.config.demo {
        // Plainly, on stderr: whoever started a demo reads this whatever
        // `RUST_LOG` lets through.
        let text = demo::announce(
            listener.local_addr()?,
            state.demo_publish_key.as_deref(),
            state.tls.is_some(),
        );
        eprintln!("{text}");
    }
    let tracker = state.tracker.clone();
    let drain_timeout = state.config.drain_timeout();
    let membership = state.membership.clone();
    listener::accept(listener, state).await;

    // Accepting has stopped. Upgraded sockets are outside axum's graceful
    // shutdown (tokio-rs/axum#3003): each session watches `shutdown` itself
    // and closes with 1001; wait for them, boundedly.
    tracker.close();
    if tokio::time::timeout(drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out after {drain_timeout:?}; exiting anyway");
    }
    membership.leave().await;
    tracing::info!("drained");
    Ok(())
}

/// Forgets idle per-IP entries, off the handshake path.
async fn sweep_ip_limits(limits: Arc<admission::IpLimits>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(admission::SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => limits.sweep(),
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn metrics_upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(METRICS_UPKEEP);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            _ = shutdown.cancelled() => return,
        }
    }
}
