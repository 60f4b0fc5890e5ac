//! Cluster membership: which nodes are live and how many clients each
//! holds (`/ws/status`), and leaving the count at once on a drain. Apart from
//! the bus (events and history): a node alone has no cluster, and a Redis
//! node keeps its line there with a heartbeat (`bus::redis::status`).

use async_trait::async_trait;

use crate::bus::BusError;

pub use shared::status::NodeStatus;

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
