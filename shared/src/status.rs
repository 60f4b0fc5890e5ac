//! A node's line in the cluster count, as every node writes it to Redis and
//! anything that sums the cluster reads it (`/ws/status`, the Python
//! package's `get_connection_count()`).

use serde::{Deserialize, Serialize};

/// How long a node's status key lives without a refresh (it is refreshed
/// every second): a crashed node leaves `/ws/status` within this.
pub const NODE_TTL_SECS: u64 = 5;

/// One node's line in `/ws/status`, stored as JSON at
/// [`crate::keys::node_key`] and scored by its last heartbeat (ms) in
/// [`crate::keys::nodes_index_key`]: a node counts while its score is
/// within [`NODE_TTL_SECS`] of now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: String,
    pub active_connections: u64,
    pub ready: bool,
    /// `"in-process"` or `"redis"`.
    pub bus: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_has_the_fields_readers_rely_on() {
        let status = NodeStatus {
            node_id: "gw-1".into(),
            active_connections: 3,
            ready: true,
            bus: "redis".into(),
            started_at: "2026-12-02T10:00:00.000Z".into(),
            updated_at: "2026-12-02T10:00:01.000Z".into(),
        };
        let json: serde_json::Value = serde_json::to_value(&status).unwrap();
        assert_eq!(json["node_id"], "gw-1");
        assert_eq!(json["active_connections"], 3);
        assert_eq!(json["ready"], true);
        let back: NodeStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }
}
