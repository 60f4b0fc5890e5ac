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
    pub config: Config,
    pub node: Arc<Node>,
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn Bus>,
    /// Who else is in the cluster (`/ws/status`, leaving on a drain).
    pub membership: Arc<dyn Membership>,
    pub metrics: PrometheusHandle,
    pub admission: Arc<Admission>,
    /// Cancelled on SIGTERM: the node drains.
    pub shutdown: CancellationToken,
    /// Every client session and background task, so a drain can wait.
    pub tracker: TaskTracker,
    /// Replays (`?since=`) running at once; a resume waits for a permit.
    pub replays: Arc<tokio::sync::Semaphore>,
    /// The `PUBLISH_API_KEY` a `--demo` node made for itself (none given).
    pub demo_publish_key: Option<String>,
    /// `TLS_CERT_FILE`: the accept loop speaks TLS first (`wss://`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}
