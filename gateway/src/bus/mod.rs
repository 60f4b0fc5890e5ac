//! The bus: how an event published anywhere reaches the hub of every node,
//! and where the history for resume lives.
//!
//! One trait, two real implementations:
//! - [`local::LocalBus`]: in-process, one node (development, demos). History
//!   is kept in memory with the same semantics as Redis.
//! - [`redis::RedisBus`]: Redis pub/sub between nodes, history in a Redis
//!   stream, per-node connection counts with an expiry.

pub mod local;
pub mod redis;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use shared::EventId;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BusError {
    #[error("the bus is not connected")]
    Unavailable,
    #[error("bus command timed out")]
    Timeout,
    #[error("Redis error: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("Redis pool error: {0}")]
    Pool(String),
    #[error(transparent)]
    Publish(#[from] publisher::PublishError),
}

/// Events after a client's last id, from the history.
#[derive(Debug, Default)]
pub struct Replay {
    /// In publish order; each `text` is the frame as it went out live.
    pub events: Vec<ReplayEvent>,
    /// False when the id is unknown or older than the history: some events
    /// may be missing, and the client should refetch its state.
    pub recovered: bool,
}

#[derive(Debug)]
pub struct ReplayEvent {
    pub id: EventId,
    pub kind: String,
    pub text: String,
}

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
pub trait Bus: Send + Sync + 'static {
    /// `"in-process"` or `"redis"`, for `/ws/status`.
    fn name(&self) -> &'static str;

    /// True while events published anywhere reach this node.
    fn is_ready(&self) -> bool;

    /// Appends an event to the history and delivers it to every node; the
    /// returned id is its place in the history.
    async fn publish(&self, kind: &str, data: &RawValue) -> Result<EventId, BusError>;

    /// Retained events after `since`, in order. `since` = [`EventId::ZERO`]
    /// asks for everything, which is complete only if nothing was ever
    /// trimmed.
    async fn replay(&self, since: EventId) -> Result<Replay, BusError>;

    /// The other nodes' latest status (this node's own entry included when
    /// the bus stores one; the caller replaces it with live numbers).
    async fn nodes(&self) -> Result<Vec<NodeStatus>, BusError>;

    /// Removes this node from the cluster count at once (drain).
    async fn leave(&self);
}
