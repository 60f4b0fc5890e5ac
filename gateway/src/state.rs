//! What every handler and session shares: one node's state.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::bus::Bus;
use crate::config::Config;
use crate::hub::Hub;
use crate::membership::Membership;
use crate::node::Node;

/// What every handler shares.
pub struct AppState {
    pub(crate) config: Config,
    pub(crate) node: Arc<Node>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) bus: Arc<dyn Bus>,
    /// Who else is in the cluster (`/ws/status`, leaving on a drain).
    pub(crate) membership: Arc<dyn Membership>,
    pub(crate) metrics: PrometheusHandle,
    pub(crate) admission: Arc<Admission>,
    /// Cancelled on SIGTERM: the node drains.
    pub(crate) shutdown: CancellationToken,
    /// Every client session and background task, so a drain can wait.
    pub(crate) tracker: TaskTracker,
    /// Replays (`?since=`) running at once; a resume waits for a permit.
    pub(crate) replays: Arc<tokio::sync::Semaphore>,
    /// Clients being written their keyed state at once (`?state=1`).
    pub(crate) state_sends: Arc<tokio::sync::Semaphore>,
    /// The `PUBLISH_API_KEY` a `--demo` node made for itself (none given).
    pub(crate) demo_publish_key: Option<String>,
    /// `TLS_CERT_FILE`: the accept loop speaks TLS first (`wss://`).
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

impl AppState {
    /// Where the node listens (`BIND_ADDR`).
    pub fn bind_addr(&self) -> std::net::SocketAddr {
        self.config.bind_addr
    }

    pub fn is_draining(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}
