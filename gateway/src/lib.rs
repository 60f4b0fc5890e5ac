//! The dashboard gateway: a stateless WebSocket node. Browsers connect to
//! `/ws/dashboard`; events published anywhere reach every client of every
//! node through the bus.
//!
//! # Layout
//! - [`config`]: the one typed [`Config`], from flags and environment.
//! - [`hub`]: bus payload → frame, once per event; hands it to the fan-out.
//! - [`fanout`]: the live clients; writes each event to their sockets.
//! - [`bus`]: the [`bus::Bus`] trait; [`bus::local`] (in-process) and
//!   [`bus::redis`] (Redis pub/sub, history stream, cluster counts).
//! - [`admission`]: who may connect, how many, how fast (JWT, limits).
//! - [`ws`]: the `/ws/dashboard` handshake; [`ws::session`] runs one client;
//!   [`ws::outbox`] is its socket's write side, shared with the fan-out.
//! - [`http`]: status, health, readiness, metrics, publish, page assets.
//! - [`state`]: [`AppState`], what handlers share; [`error`]: `AppError`.
//! - [`rate`]: the token bucket behind every rate limit.
//! - [`node`]: this node's id and live connection count.
//! - [`demo`]: the `--demo` generator on the node's own bus.
//! - [`telemetry`]: metric names and the Prometheus recorder.
//!
//! The binary (`src/main.rs`) only reads the config, binds, and calls
//! [`run`]; tests call [`start`] then [`serve`] on a `127.0.0.1:0` listener
//! (so they can reach the node's state), or run the binary itself.

pub mod admission;
pub mod bus;
pub mod config;
pub mod demo;
pub mod error;
pub mod fanout;
pub mod http;
pub mod hub;
pub mod node;
pub mod rate;
pub mod state;
pub mod telemetry;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use publisher::{Topology, WireFormat};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::bus::Bus;
use crate::bus::local::LocalBus;
use crate::bus::redis::{RedisBus, Target};
pub use crate::config::Config;
use crate::hub::{Arrival, Hub};
use crate::node::Node;
pub use crate::state::AppState;

/// The kernel send buffer asked for on each client socket (Linux doubles
/// it). Without a cap, loopback autotuning lets a stalled client park up to
/// 4 MiB in the kernel; with it, a client that stops reading soon blocks its
/// writes and meets `CLIENT_BUFFER` / `WRITE_TIMEOUT_MS` instead.
const SOCKET_SEND_BUFFER: usize = 64 * 1024;
/// Pending connections the kernel queues before `accept`. tokio's
/// `TcpListener::bind` asks for 128, which a reconnect storm (or a burst of
/// new dashboards) overflows: dropped SYNs come back only after a 1 s
/// retransmit. The kernel caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;
/// Addresses with connections accepted but not yet upgraded (or done with
/// their HTTP request): each connection is a file descriptor and a little
/// memory until its head arrives or `HANDSHAKE_TIMEOUT_MS` ends it.
const MAX_PENDING_CONNECTIONS: usize = 4096;
/// Such connections from one address: a flood from one source cannot take
/// the descriptors that health checks and other dashboards need.
const MAX_PENDING_PER_IP: usize = 128;
/// The same for a `TRUSTED_PROXIES` address (a load balancer).
const MAX_PENDING_PER_PROXY: usize = 8192;
/// Replays one node runs at once: each holds one page of the history and
/// a Redis connection while it runs.
const MAX_CONCURRENT_REPLAYS: usize = 16;
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
        .route("/ws/dashboard", get(ws::dashboard))
        .route("/ws/status", get(http::status))
        .route("/metrics", get(http::metrics))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/api/publish", post(http::publish))
        // A body over twice the event limit is refused unread (413); the
        // handler answers anything between with the precise 413.
        .layer(DefaultBodyLimit::max(
            2 * state.config.max_event_bytes + 4096,
        ))
        .with_state(state)
}

/// Binds the node's listening socket with a backlog that absorbs connection
/// bursts (see [`LISTEN_BACKLOG`]).
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A restarted node can take its port back while old connections linger
    // in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
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
    let demo_publish_key = (config.demo && config.publish_api_key.is_none()).then(|| {
        let key: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(24)
            .collect();
        config.publish_api_key = Some(key.clone());
        key
    });
    // First: metric handles taken before the recorder exists go nowhere.
    let metrics = telemetry::metrics_handle();
    let node = Arc::new(Node::new(config.node_id.clone()));
    let arrival = if config.redis_cluster_nodes.is_empty() {
        Arrival::InOrder
    } else {
        Arrival::Unordered
    };
    let hub = Arc::new(
        Hub::new(config.client_buffer, arrival, config.max_event_bytes)
            .with_flush_interval(config.flush_interval()),
    );
    let tracker = TaskTracker::new();
    let redis = match (&config.redis_url, config.redis_cluster_nodes.as_slice()) {
        (None, []) => None,
        (Some(url), _) => Some((Target::Single(url.clone()), Topology::Single)),
        (None, seeds) => Some((Target::Cluster(seeds.to_vec()), Topology::Cluster)),
    };
    let bus: Arc<dyn Bus> = match redis {
        None => Arc::new(LocalBus::new(hub.clone(), config.history())),
        Some((target, topology)) => {
            let wire =
                WireFormat::with_topology(&config.channel_prefix, config.history(), topology)
                    .with_max_event_bytes(config.max_event_bytes);
            RedisBus::start(
                target,
                wire,
                hub.clone(),
                node.clone(),
                shutdown.clone(),
                &tracker,
            )?
        }
    };
    tracker.spawn(metrics_upkeep(metrics.clone(), shutdown.clone()));
    let admission = Arc::new(Admission::new(&config)?);
    if let Some(jwks) = admission.jwks() {
        tracker.spawn(jwks.run(shutdown.clone()));
    }
    if let Some(limits) = admission.ip_limits() {
        tracker.spawn(sweep_ip_limits(limits, shutdown.clone()));
    }
    if config.demo {
        tracker.spawn(demo::run(bus.clone(), config.demo_rate, shutdown.clone()));
    } else if config.redis_url.is_none() && config.redis_cluster_nodes.is_empty() {
        tracing::info!(
            "no REDIS_URL: one node on the in-process bus; add --demo for live demo data"
        );
    }
    Ok(Arc::new(AppState {
        node,
        hub,
        bus,
        metrics,
        admission,
        config,
        shutdown,
        tracker,
        replays: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_REPLAYS)),
        demo_publish_key,
    }))
}

/// Serves `state` on `listener` until its shutdown token is cancelled, then
/// drains.
pub async fn serve(listener: TcpListener, state: Arc<AppState>) -> Result<(), GatewayError> {
    tracing::info!(
        node_id = %state.node.id,
        addr = %listener.local_addr()?,
        bus = state.bus.name(),
        "gateway listening"
    );
    if let Some(key) = &state.demo_publish_key {
        let port = listener.local_addr()?.port();
        tracing::info!(
            "demo: publish your own event with\n  cargo run -p publisher -- send --url http://localhost:{port} --key {key} --type alert --data '{{\"tutor_id\":\"t-17\",\"severity\":\"critical\",\"message\":\"hello\"}}'"
        );
    }
    let tracker = state.tracker.clone();
    let drain_timeout = state.config.drain_timeout();
    let bus = state.bus.clone();
    accept(listener, state).await;

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
    bus.leave().await;
    tracing::info!("drained");
    Ok(())
}

/// The accept loop. Each connection is served by hyper's HTTP/1 with a
/// header-read timer: one that has not sent a whole request head within
/// `HANDSHAKE_TIMEOUT_MS` (a silent socket, half a head, a byte a second, an
/// idle keep-alive) is closed. Connections not yet upgraded are bounded per
/// address ([`MAX_PENDING_PER_IP`]) and in addresses
/// ([`MAX_PENDING_CONNECTIONS`]): past that new ones are closed at once, so
/// a flood of them cannot take the file descriptors that health checks and
/// dashboards need. Upgraded sessions count against `MAX_CONNECTIONS`.
async fn accept(listener: TcpListener, state: Arc<AppState>) {
    let shutdown = state.shutdown.clone();
    let pending = Arc::new(Pending::default());
    let router = app(state.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(state.config.handshake_timeout());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, mostly: wait instead of spinning.
                    tracing::warn!("accept: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        // A trusted proxy carries many clients' handshakes at once.
        let per_ip = if state
            .config
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer.ip()))
        {
            MAX_PENDING_PER_PROXY
        } else {
            MAX_PENDING_PER_IP
        };
        let Some(permit) = pending.admit(peer.ip(), per_ip) else {
            metrics::counter!(telemetry::HANDSHAKES_REJECTED, "reason" => "too_many_pending")
                .increment(1);
            continue;
        };
        tune(&tcp);
        let router = hyper_util::service::TowerToHyperService::new(router.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            // One span per request: method, path (never the query: it may
            // hold a token) and peer on every line logged while serving it.
            let span = tracing::debug_span!(
                "request",
                method = %request.method(),
                path = %request.uri().path(),
                %peer
            );
            tracing::Instrument::instrument(hyper::service::Service::call(&router, request), span)
        });
        let connection = http
            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
            .with_upgrades();
        let shutdown = shutdown.clone();
        state.tracker.spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            // Served, closed, or handed over to a WebSocket session.
            drop(permit);
        });
    }
}

/// Connections not yet upgraded, in all and per address.
#[derive(Debug, Default)]
struct Pending {
    by_ip: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// A pending connection's place, given back when dropped.
struct PendingPlace {
    pending: Arc<Pending>,
    ip: std::net::IpAddr,
}

impl Pending {
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr, per_ip: usize) -> Option<PendingPlace> {
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = by_ip.len(); // distinct addresses, bounded below
        let count = by_ip.get(&ip).copied().unwrap_or(0);
        if count >= per_ip || (count == 0 && total >= MAX_PENDING_CONNECTIONS) {
            return None;
        }
        *by_ip.entry(ip).or_insert(0) += 1;
        Some(PendingPlace {
            pending: self.clone(),
            ip,
        })
    }
}

impl Drop for PendingPlace {
    fn drop(&mut self) {
        let mut by_ip = self.pending.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = by_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// Frames are small and latency matters: no Nagle delay; and a capped
/// kernel send buffer (see [`SOCKET_SEND_BUFFER`]).
fn tune(tcp: &tokio::net::TcpStream) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {err}");
    }
    if let Err(err) = socket2::SockRef::from(tcp).set_send_buffer_size(SOCKET_SEND_BUFFER) {
        tracing::debug!("SO_SNDBUF: {err}");
    }
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
