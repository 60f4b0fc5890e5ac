//! Cluster membership: which nodes are live and how many clients each
//! holds (`/ws/status`), and leaving the count at once on a drain. Apart from
//! the bus (events and history): a node alone has no cluster, and a Redis
//! node keeps its line there with a heartbeat (`bus::redis::status`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::bus::BusError;

/// One node's line in `/ws/status`, as stored in Redis.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: String,
    pub active_connections: u64,
    pub ready: bool,
    pub bus: String,
    pub started_at: String,
    pub updated_at: String,
}

#[async_trait]
pub trait Membership: Send + Sync + 'static {
    /// The other nodes' latest status (this node's own entry included when
    /// it is stored; the caller replaces it with live numbers).
    async fn nodes(&self) -> Result<Vec<NodeStatus>, BusError>;

    /// Removes this node from the cluster count at once (drain).
    async fn leave(&self);
}

/// A node on its own (the in-process bus): no one else to count.
#[derive(Debug, Default)]
pub struct Alone;

#[async_trait]
impl Membership for Alone {
    async fn nodes(&self) -> Result<Vec<NodeStatus>, BusError> {
        Ok(Vec::new())
    }

    async fn leave(&self) {}
}
