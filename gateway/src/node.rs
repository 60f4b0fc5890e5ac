//! This node's identity and its live connection count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use metrics::{Gauge, gauge};

use crate::telemetry::CONNECTIONS_ACTIVE;

#[derive(Debug)]
pub struct Node {
    pub id: String,
    pub started_at: DateTime<Utc>,
    connections: AtomicU64,
    active: Gauge,
}

impl Node {
    pub fn new(id: Option<String>) -> Self {
        let id = id.unwrap_or_else(|| format!("node-{:08x}", fastrand::u32(..)));
        Self {
            id,
            started_at: Utc::now(),
            connections: AtomicU64::new(0),
            active: gauge!(CONNECTIONS_ACTIVE),
        }
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Counts a client in for as long as the returned guard lives; `None`
    /// when `max` (0: no limit) clients are already here.
    pub fn try_connection(self: &Arc<Self>, max: u64) -> Option<ConnectionGuard> {
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .ok()?;
        self.active.increment(1.0);
        Some(ConnectionGuard(self.clone()))
    }
}

#[derive(Debug)]
pub struct ConnectionGuard(Arc<Node>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
        self.0.active.decrement(1.0);
    }
}
