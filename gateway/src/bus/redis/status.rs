//! This node's line in the cluster count: a status key with an expiry,
//! refreshed every second, and the index `/ws/status` reads.

use std::sync::Arc;

use chrono::Utc;
use redis::AsyncCommands;
use shared::keys;
use tokio_util::sync::CancellationToken;

use super::{BusError, HEARTBEAT, NODE_TTL, RedisBus, bounded};
use crate::bus::Bus;
use crate::membership::NodeStatus;

impl RedisBus {
    /// Writes this node's status every second until it stops.
    pub(super) async fn heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        let mut beats: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            beats += 1;
            if let Err(err) = self.beat(beats.is_multiple_of(30)).await {
                tracing::debug!("heartbeat: {err}");
            }
        }
    }

    async fn beat(&self, prune: bool) -> Result<(), BusError> {
        let now = Utc::now();
        let status = NodeStatus {
            node_id: self.node.id.clone(),
            active_connections: self.node.connections(),
            ready: self.is_ready(),
            bus: self.name().to_owned(),
            started_at: shared::envelope::format_timestamp(self.node.started_at),
            updated_at: shared::envelope::format_timestamp(now),
        };
        let json = serde_json::to_string(&status).expect("status serializes");
        let index = keys::nodes_index_key(self.prefix());
        let mut pipe = redis::pipe();
        pipe.set_ex(
            keys::node_key(self.prefix(), &self.node.id),
            json,
            NODE_TTL.as_secs(),
        )
        .ignore()
        .zadd(&index, &self.node.id, now.timestamp_millis())
        .ignore();
        if prune {
            let cutoff = now.timestamp_millis() - 60_000;
            pipe.zrembyscore(&index, "-inf", cutoff).ignore();
        }
        let mut conn = self.conn().await?;
        bounded(pipe.query_async::<()>(&mut conn)).await?;
        Ok(())
    }

    /// Live nodes' statuses: ids seen within `NODE_TTL`, then their entries.
    pub(super) async fn live_nodes(&self) -> Result<Vec<NodeStatus>, BusError> {
        let mut conn = self.conn().await?;
        let cutoff =
            Utc::now().timestamp_millis() - i64::try_from(NODE_TTL.as_millis()).unwrap_or(5000);
        let ids: Vec<String> =
            bounded(conn.zrangebyscore(keys::nodes_index_key(self.prefix()), cutoff, "+inf"))
                .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let node_keys: Vec<String> = ids
            .iter()
            .map(|id| keys::node_key(self.prefix(), id))
            .collect();
        let entries: Vec<Option<String>> = bounded(conn.mget(&node_keys)).await?;
        Ok(entries
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect())
    }

    /// Removes this node's entry at once (drain).
    pub(super) async fn remove_node(&self) {
        let result: Result<(), BusError> = async {
            let mut conn = self.conn().await?;
            let mut pipe = redis::pipe();
            pipe.del(keys::node_key(self.prefix(), &self.node.id))
                .ignore()
                .zrem(keys::nodes_index_key(self.prefix()), &self.node.id)
                .ignore();
            bounded(pipe.query_async::<()>(&mut conn)).await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => tracing::info!("left the cluster count"),
            Err(err) => tracing::warn!("could not remove this node from the cluster count: {err}"),
        }
    }
}
