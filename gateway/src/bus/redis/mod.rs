//! The Redis bus: N stateless nodes behave as one gateway, on one Redis
//! (`REDIS_URL`), the master behind Redis Sentinels (`REDIS_SENTINELS`), or
//! a Redis Cluster (`REDIS_CLUSTER_NODES`); over TLS and as an ACL user
//! when configured (see [`publisher::config`]).
//!
//! - Live: `single` `PSUBSCRIBE`s to `{prefix}:events:*`; `cluster`
//!   `SSUBSCRIBE`s to each type's sharded channel. Each payload goes to the
//!   hub once.
//! - History (`history`): the stream `{prefix}:history`, written by
//!   [`publisher::WireFormat`], read for `?since=` and for this node's own
//!   catch-up after it lost Redis (on a cluster, also every second).
//! - Cluster count (`status`): every second each node writes its status to
//!   `{{prefix}:nodes}:{id}` with a 5 s expiry and scores its id in the sorted
//!   set `{{prefix}:nodes}`; a node killed outright drops out within 5 s, a
//!   draining node deletes its entry at once.
//!
//! Every command goes through one connection type ([`publisher::Connection`]:
//! pooled single Redis, or the cluster connection), so all of the above is
//! written once for both.
//!
//! With Sentinels, every new connection (the subscriber's, and each one the
//! pool opens) asks the Sentinels for the master first
//! ([`publisher::Connector`]). A failover is therefore followed by the same
//! path as a restart: the subscription breaks, `/readyz` turns 503, the
//! subscriber reconnects to the new master, resubscribes and catches up from
//! the history (which the replica holds), then reports ready; pooled
//! connections to the old master fail their check and are replaced.
//!
//! Losing Redis never touches local clients: the subscriber task reconnects
//! with capped, jittered backoff, resubscribes, replays what it missed from
//! the history (the hub drops the overlap), and only then reports ready.
//!
//! No unbounded buffer grows on the path: redis-rs hands single-Redis pub/sub
//! messages over an internal channel that this task drains without ever
//! waiting on a client (the hub's broadcast never blocks); cluster messages
//! go straight from redis-rs to the hub.

mod cluster;
mod history;
mod single;
mod status;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool::managed::{Metrics, Pool, PoolConfig, RecycleResult, Timeouts};
use metrics::{counter, gauge};
use publisher::{Connector, Item, RedisTarget, WireFormat};
use redis::AsyncCommands;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use serde_json::value::RawValue;
use shared::{EventId, Position, keys};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Bus, BusError, HistoryPage};
use crate::hub::Hub;
use crate::membership::{Membership, NodeStatus};
use crate::node::Node;
use crate::telemetry::{BUS_CONNECTED, BUS_RECONNECTS};

/// Any one Redis round trip (or a group of them) may take this long.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);
/// How often this node refreshes its status entry.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a node's entry outlives its last heartbeat.
const NODE_TTL: Duration = Duration::from_secs(shared::status::NODE_TTL_SECS);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Connections used to send commands stay in the pool up to this many.
const POOL_SIZE: usize = 16;

// One per node: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Backend {
    /// One Redis or the Sentinels' master: a pool for commands; each
    /// subscription gets its own connection.
    Single {
        connector: Connector,
        pool: Pool<Manager>,
    },
    /// One multiplexed cluster connection for commands and sharded
    /// subscriptions alike, made by the subscriber task.
    Cluster {
        client: ClusterClient,
        conn: RwLock<Option<ClusterConnection>>,
    },
}

/// A command connection to either backend.
type Conn = publisher::Connection<Pooled>;

/// Makes the pool's connections through the [`Connector`] (so, with
/// Sentinels, to whichever server is master when it is made) and checks a
/// connection with `PING` before handing it out again.
struct Manager(Connector);

impl deadpool::managed::Manager for Manager {
    type Type = MultiplexedConnection;
    type Error = BusError;

    async fn create(&self) -> Result<MultiplexedConnection, BusError> {
        Ok(self.0.connect().await?)
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<BusError> {
        redis::cmd("PING")
            .query_async::<()>(conn)
            .await
            .map_err(|e| deadpool::managed::RecycleError::Backend(e.into()))
    }
}

/// A connection borrowed from the pool (given back on drop).
pub struct Pooled(deadpool::managed::Object<Manager>);

impl ConnectionLike for Pooled {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

pub struct RedisBus {
    backend: Backend,
    wire: WireFormat,
    hub: Arc<Hub>,
    node: Arc<Node>,
    ready: AtomicBool,
}

/// The subscriber's memory across subscriptions: how long to wait before
/// the next attempt, and whether it was ever subscribed (re-established
/// subscriptions are counted, attempts are not).
#[derive(Debug)]
pub(super) struct Reconnect {
    backoff: Duration,
    subscribed_before: bool,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            backoff: BACKOFF_MIN,
            subscribed_before: false,
        }
    }
}

impl Reconnect {
    /// A subscription is up: the next loss starts from the shortest wait.
    fn succeeded(&mut self) {
        self.backoff = BACKOFF_MIN;
        if std::mem::replace(&mut self.subscribed_before, true) {
            counter!(BUS_RECONNECTS).increment(1);
        }
    }

    /// Waits a jittered half-to-full backoff, then doubles it (capped).
    /// False when the node stops meanwhile.
    async fn pause(&mut self, shutdown: &CancellationToken) -> bool {
        let pause = self.backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        tokio::select! {
            _ = tokio::time::sleep(pause) => true,
            _ = shutdown.cancelled() => false,
        }
    }
}

impl RedisBus {
    /// Creates the bus and starts its background tasks (subscriber,
    /// heartbeat) on `tracker`. Returns at once: a Redis that is down at
    /// start-up is retried like one that goes down later.
    pub fn start(
        target: RedisTarget,
        wire: WireFormat,
        hub: Arc<Hub>,
        node: Arc<Node>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Arc<Self>, BusError> {
        let connector = Connector::new(target)?.with_timeout(REDIS_TIMEOUT);
        let backend = match connector.cluster_builder() {
            None => {
                let pool = Pool::builder(Manager(connector.clone()))
                    .config(PoolConfig {
                        max_size: POOL_SIZE,
                        timeouts: Timeouts {
                            wait: Some(REDIS_TIMEOUT),
                            create: Some(REDIS_TIMEOUT),
                            recycle: Some(REDIS_TIMEOUT),
                        },
                        ..PoolConfig::default()
                    })
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| BusError::Pool(e.to_string()))?;
                Backend::Single { connector, pool }
            }
            Some(builder) => Backend::Cluster {
                client: cluster::client(builder, hub.clone())?,
                conn: RwLock::new(None),
            },
        };
        gauge!(BUS_CONNECTED).set(0.0);
        let bus = Arc::new(Self {
            backend,
            wire,
            hub,
            node,
            ready: AtomicBool::new(false),
        });
        tracker.spawn(bus.clone().subscriber(shutdown.clone()));
        tracker.spawn(bus.clone().heartbeat(shutdown));
        Ok(bus)
    }

    fn prefix(&self) -> &str {
        self.wire.prefix()
    }

    fn set_ready(&self, ready: bool) {
        if self.ready.swap(ready, Ordering::SeqCst) != ready {
            gauge!(BUS_CONNECTED).set(if ready { 1.0 } else { 0.0 });
            if ready {
                tracing::info!("bus connected");
            } else {
                tracing::warn!("bus lost: serving local clients, reconnecting");
            }
        }
    }

    async fn conn(&self) -> Result<Conn, BusError> {
        match &self.backend {
            Backend::Single { pool, .. } => pool
                .get()
                .await
                .map(|conn| Conn::Single(Pooled(conn)))
                .map_err(|e| match e {
                    deadpool::managed::PoolError::Backend(e) => e,
                    deadpool::managed::PoolError::Timeout(_) => BusError::Timeout,
                    other => BusError::Pool(other.to_string()),
                }),
            Backend::Cluster { conn, .. } => conn
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .map(Conn::Cluster)
                .ok_or(BusError::Unavailable),
        }
    }

    /// Keeps this node subscribed for as long as it runs.
    async fn subscriber(self: Arc<Self>, shutdown: CancellationToken) {
        let mut reconnect = Reconnect::default();
        while !shutdown.is_cancelled() {
            match self.follow(&shutdown, &mut reconnect).await {
                Ok(()) => break,
                Err(err) => {
                    self.set_ready(false);
                    tracing::warn!(
                        "bus subscription: {err}; retrying in up to {:?}",
                        reconnect.backoff
                    );
                }
            }
            if !reconnect.pause(&shutdown).await {
                break;
            }
        }
        // Stopping, not lost: no warning.
        self.ready.store(false, Ordering::SeqCst);
        gauge!(BUS_CONNECTED).set(0.0);
    }

    /// One subscription's life: subscribe, catch up, then follow the live
    /// stream until Redis goes away (`Err`) or the node stops (`Ok`).
    async fn follow(
        &self,
        shutdown: &CancellationToken,
        reconnect: &mut Reconnect,
    ) -> Result<(), BusError> {
        match &self.backend {
            Backend::Single { connector, .. } => {
                single::follow(self, connector, shutdown, reconnect).await
            }
            Backend::Cluster { client, conn } => {
                cluster::follow(self, client, conn, shutdown, reconnect).await
            }
        }
    }

    /// Where the shared history stands, for a node that knows none yet:
    /// clients joining now resume from here. Read before subscribing; the
    /// catch-up after it covers anything published in between. (A node that
    /// knew a history catches up from its own position instead, and finds
    /// out there if the history was created anew.)
    async fn init_position(&self) -> Result<(), BusError> {
        let position = self.ensure_history().await?;
        self.hub.init(position);
        Ok(())
    }

    /// After (re)subscribing: load the snapshot, send this node's clients
    /// what it missed, and report ready. Returns where the history was read
    /// through: on a Cluster, where the node's head may run ahead of events
    /// still to come (or lost), the re-read goes on from there.
    async fn subscribed(&self, reconnect: &mut Reconnect) -> Result<Option<Position>, BusError> {
        self.load_snapshot().await?;
        let mut read = self.hub.position();
        if let Some(position) = read {
            read = Some(self.catch_up_only(position).await?.0);
        }
        // After the catch-up (once, whether or not it adopted a new
        // history): whatever it could not bring the state read now has.
        self.load_state().await?;
        self.set_ready(true);
        reconnect.succeeded();
        Ok(read)
    }

    async fn load_snapshot(&self) -> Result<(), BusError> {
        let mut conn = self.conn().await?;
        let snapshot: Option<String> =
            bounded(conn.get(keys::analytics_key(self.prefix()))).await?;
        if let Some(payload) = snapshot {
            self.hub.set_snapshot(&payload);
        }
        Ok(())
    }
}

/// Runs one Redis call (or group of calls) with the bus's time limit, so a
/// Redis that stops answering fails the call instead of hanging the node.
async fn bounded<T, E>(call: impl std::future::Future<Output = Result<T, E>>) -> Result<T, BusError>
where
    BusError: From<E>,
{
    Ok(timeout(REDIS_TIMEOUT, call)
        .await
        .map_err(|_| BusError::Timeout)??)
}

#[async_trait]
impl Bus for RedisBus {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    async fn publish(&self, kind: &str, data: &RawValue) -> Result<Position, BusError> {
        shared::validate_kind(kind).map_err(publisher::PublishError::from)?;
        let mut conn = self.conn().await?;
        let id = bounded(self.wire.publish(&mut conn, kind, data)).await?;
        Ok(id)
    }

    /// One call of the publisher's script for the whole batch (its wire
    /// format: the Rust crate's and the Python package's `publish_many`
    /// write the same), checked before a connection is taken.
    async fn publish_many(&self, events: &[Item<'_, RawValue>]) -> Result<Vec<Position>, BusError> {
        let batch = self.wire.batch_items(events.iter().copied())?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let ids = bounded(self.wire.publish_batch(&mut conn, &batch)).await?;
        Ok(ids)
    }

    async fn read_history(
        &self,
        after: Position,
        until: Option<EventId>,
        limit: usize,
    ) -> Result<HistoryPage, BusError> {
        self.read_page(after, until, limit).await
    }
}

#[async_trait]
impl Membership for RedisBus {
    async fn nodes(&self) -> Result<Vec<NodeStatus>, BusError> {
        self.live_nodes().await
    }

    async fn leave(&self) {
        self.remove_node().await;
    }
}
