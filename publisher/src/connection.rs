//! One Redis or a Redis Cluster, behind one connection type, so every
//! command the wire format (and the gateway) sends is written once.

use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// `S` is how a single Redis is reached (a multiplexed connection here, a
/// pooled one in the gateway); a cluster connection routes each command to
/// the shard that owns its keys or channel.
#[derive(Clone)]
pub enum Connection<S> {
    Single(S),
    Cluster(ClusterConnection),
}

impl<S: ConnectionLike + Send> ConnectionLike for Connection<S> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Parses `REDIS_CLUSTER_NODES`-style seed lists: comma-separated URLs.
pub fn cluster_seeds(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
