//! Redis channel and key names, all under one `CHANNEL_PREFIX` so several
//! deployments can share a Redis.

/// `{prefix}:events:{type}`: one pub/sub channel per message type.
pub fn events_channel(prefix: &str, kind: &str) -> String {
    format!("{prefix}:events:{kind}")
}

/// The pattern that matches every type's channel. Types are open-ended
/// (publishers pick them), so a node subscribes to the pattern.
pub fn events_pattern(prefix: &str) -> String {
    format!("{prefix}:events:*")
}

/// `{prefix}:analytics:latest`: the latest `analytics_update` payload.
pub fn analytics_key(prefix: &str) -> String {
    format!("{prefix}:analytics:latest")
}

/// `{prefix}:history`: the Redis stream holding the bounded event history.
pub fn history_key(prefix: &str) -> String {
    format!("{prefix}:history")
}

/// `{{prefix}:history}:epoch`: the history's [`crate::Epoch`]. The hash tag
/// is the history key itself, so on a Redis Cluster both live in one slot
/// and one script can read and write them together.
pub fn epoch_key(prefix: &str) -> String {
    format!("{{{prefix}:history}}:epoch")
}

/// `{{prefix}:history}`: the hash tag the keyed state shares with the
/// history (one cluster slot: the publish script writes them together).
fn history_tag(prefix: &str) -> String {
    format!("{{{prefix}:history}}")
}

/// `{{prefix}:history}:keyed`: the set of types that have keyed state.
pub fn keyed_types_key(prefix: &str) -> String {
    format!("{}:keyed", history_tag(prefix))
}

/// `{{prefix}:history}:state:{type}`: hash of key → the latest event of
/// that key (the envelope with its id).
pub fn state_key(prefix: &str, kind: &str) -> String {
    format!("{}:state:{kind}", history_tag(prefix))
}

/// `{{prefix}:history}:state-age:{type}`: sorted set of key → ms of its
/// latest event, for the bounds.
pub fn state_age_key(prefix: &str, kind: &str) -> String {
    format!("{}:state-age:{kind}", history_tag(prefix))
}

/// `{prefix}:types`: the set of custom types published so far. On a Redis
/// Cluster, where sharded pub/sub has no patterns, nodes subscribe to the
/// channels of the known types plus these.
pub fn types_key(prefix: &str) -> String {
    format!("{prefix}:types")
}

/// `{{prefix}:nodes}:{node_id}`: one node's status, with an expiry. The hash
/// tag keeps every status key and the index in one Redis Cluster slot, so
/// they can be read together.
pub fn node_key(prefix: &str, node_id: &str) -> String {
    format!("{{{prefix}:nodes}}:{node_id}")
}

/// `{{prefix}:nodes}`: sorted set of node ids scored by last heartbeat (ms),
/// so `/ws/status` finds live nodes without `KEYS`/`SCAN`.
pub fn nodes_index_key(prefix: &str) -> String {
    format!("{{{prefix}:nodes}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec() {
        assert_eq!(events_channel("ws", "alert"), "ws:events:alert");
        assert_eq!(events_pattern("ws"), "ws:events:*");
        assert_eq!(analytics_key("ws"), "ws:analytics:latest");
        assert_eq!(node_key("ws", "a"), "{ws:nodes}:a");
        assert_eq!(epoch_key("ws"), "{ws:history}:epoch");
        assert_eq!(nodes_index_key("ws"), "{ws:nodes}");
        assert_eq!(keyed_types_key("ws"), "{ws:history}:keyed");
        assert_eq!(state_key("ws", "alert"), "{ws:history}:state:alert");
        assert_eq!(state_age_key("ws", "alert"), "{ws:history}:state-age:alert");
    }
}
