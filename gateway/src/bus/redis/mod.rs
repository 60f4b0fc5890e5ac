//! The Redis bus: N stateless nodes behave as one gateway.
//!
//! - Live: one pub/sub subscription per node to the pattern
//!   `{prefix}:events:*` (every type's channel: types are open-ended, so a
//!   node cannot list them up front). Each payload goes to the hub once.
//! - History: the stream `{prefix}:history`, written atomically with the live
//!   publication by [`publisher::WireFormat`], read for `?since=` and for
//!   this node's own catch-up after it lost Redis.
//! - Cluster count: every second each node writes its status to
//!   `{prefix}:nodes:{id}` with a 5 s expiry and scores its id in the sorted
//!   set `{prefix}:nodes`; a node killed outright drops out within 5 s, a
//!   draining node deletes its entry at once.
//!
//! Losing Redis never touches local clients: the subscriber task reconnects
//! with capped, jittered backoff, resubscribes, replays what it missed from
//! the history (the hub drops the overlap), and only then reports ready.
//!
//! No unbounded buffer grows on the path: redis-rs hands pub/sub messages
//! over an internal channel that this task drains without ever waiting on a
//! client (the hub's broadcast never blocks).

mod cluster;
mod single;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use metrics::{counter, gauge};
use publisher::WireFormat;
use redis::AsyncCommands;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use serde_json::value::RawValue;
use shared::{EventId, keys};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Bus, BusError, NodeStatus, Replay, ReplayEvent};
use crate::hub::{Dispatched, Hub};
use crate::node::Node;
use crate::telemetry::{BUS_CATCHUP_GAPS, BUS_CONNECTED, BUS_RECONNECTS};

/// Any one Redis round trip (or a group of them) may take this long.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);
/// How often this node refreshes its status entry.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a node's entry outlives its last heartbeat.
const NODE_TTL: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// History is read in pages of this many entries.
const PAGE: usize = 1000;

/// Where the bus lives.
#[derive(Debug, Clone)]
pub enum Target {
    /// `REDIS_URL`.
    Single(String),
    /// `REDIS_CLUSTER_NODES`: seed URLs.
    Cluster(Vec<String>),
}

// One per node: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Backend {
    /// A pool for commands; each subscription gets its own connection.
    Single { client: redis::Client, pool: Pool },
    /// One multiplexed cluster connection for commands and sharded
    /// subscriptions alike, made by the subscriber task.
    Cluster {
        client: ClusterClient,
        conn: RwLock<Option<ClusterConnection>>,
    },
}

/// A command connection to either backend.
type Conn = publisher::Connection<deadpool_redis::Connection>;

pub struct RedisBus {
    backend: Backend,
    wire: WireFormat,
    hub: Arc<Hub>,
    node: Arc<Node>,
    ready: AtomicBool,
}

impl RedisBus {
    /// Creates the bus and starts its background tasks (subscriber,
    /// heartbeat) on `tracker`. Returns at once: a Redis that is down at
    /// start-up is retried like one that goes down later.
    pub fn start(
        target: Target,
        wire: WireFormat,
        hub: Arc<Hub>,
        node: Arc<Node>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Arc<Self>, BusError> {
        let backend = match target {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let mut pool_config = PoolConfig::new(16);
                pool_config.timeouts = Timeouts {
                    wait: Some(REDIS_TIMEOUT),
                    create: Some(REDIS_TIMEOUT),
                    recycle: Some(REDIS_TIMEOUT),
                };
                let mut config = deadpool_redis::Config::from_url(url);
                config.pool = Some(pool_config);
                let pool = config
                    .create_pool(Some(Runtime::Tokio1))
                    .map_err(|e| BusError::Pool(e.to_string()))?;
                Backend::Single { client, pool }
            }
            Target::Cluster(seeds) => Backend::Cluster {
                client: cluster::client(&seeds, hub.clone())?,
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
            Backend::Single { pool, .. } => {
                pool.get().await.map(Conn::Single).map_err(|e| match e {
                    deadpool_redis::PoolError::Backend(e) => BusError::Redis(e),
                    deadpool_redis::PoolError::Timeout(_) => BusError::Timeout,
                    other => BusError::Pool(other.to_string()),
                })
            }
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
        let mut backoff = BACKOFF_MIN;
        let mut subscribed_before = false;
        while !shutdown.is_cancelled() {
            match self
                .follow(&shutdown, &mut backoff, &mut subscribed_before)
                .await
            {
                Ok(()) => break,
                Err(err) => {
                    self.set_ready(false);
                    tracing::warn!("bus subscription: {err}; retrying in {backoff:?}");
                }
            }
            let pause = backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => break,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
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
        backoff: &mut Duration,
        subscribed_before: &mut bool,
    ) -> Result<(), BusError> {
        match &self.backend {
            Backend::Single { client, .. } => {
                single::follow(self, client, shutdown, backoff, subscribed_before).await
            }
            Backend::Cluster { client, conn } => {
                cluster::follow(self, client, conn, shutdown, backoff, subscribed_before).await
            }
        }
    }

    /// Where the shared history stands, for a node that has sent nothing
    /// yet: clients joining now resume from here. Read before subscribing;
    /// the catch-up after it covers anything published in between.
    async fn init_position(&self) -> Result<(), BusError> {
        if self.hub.head().is_none()
            && let Some(top) = self.top().await?
        {
            self.hub.init_head(top);
        }
        Ok(())
    }

    /// After (re)subscribing: load the snapshot, send this node's clients
    /// what it missed, and report ready.
    async fn subscribed(
        &self,
        backoff: &mut Duration,
        subscribed_before: &mut bool,
    ) -> Result<(), BusError> {
        self.load_snapshot().await?;
        if let Some(head) = self.hub.head() {
            self.catch_up(head).await?;
        }
        self.set_ready(true);
        *backoff = BACKOFF_MIN;
        if std::mem::replace(subscribed_before, true) {
            // Counts re-established subscriptions, not attempts.
            counter!(BUS_RECONNECTS).increment(1);
        }
        Ok(())
    }

    /// The newest id in the history, if any.
    async fn top(&self) -> Result<Option<EventId>, BusError> {
        let mut conn = self.conn().await?;
        let key = keys::history_key(self.prefix());
        let entries: Vec<(String, Vec<String>)> = bounded(
            redis::cmd("XREVRANGE")
                .arg(&key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn),
        )
        .await?;
        Ok(entries.first().and_then(|(id, _)| id.parse().ok()))
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

    /// Sends this node's clients what the history holds after `from` and
    /// they have not had (the hub drops what went out already). Returns the
    /// last id read.
    async fn catch_up(&self, from: EventId) -> Result<EventId, BusError> {
        let head = from;
        let replay = self.range_after(head, true).await?;
        if !replay.recovered {
            counter!(BUS_CATCHUP_GAPS).increment(1);
            tracing::warn!(%head, "history no longer holds this node's last event: clients may have missed events");
        }
        let mut sent = 0;
        for event in &replay.events {
            if matches!(
                self.hub.dispatch(event.text.as_bytes()),
                Ok(Dispatched::Sent(_))
            ) {
                sent += 1;
            }
        }
        if sent > 0 {
            tracing::info!(sent, "caught up on events the live stream did not bring");
        }
        Ok(replay.events.last().map_or(from, |e| e.id))
    }

    /// Retained entries after `since`. `recovered` says whether `since` is
    /// still in the stream (or, for ZERO, whether nothing was ever trimmed),
    /// i.e. whether nothing between it and the first returned entry is lost.
    async fn range_after(&self, since: EventId, everything: bool) -> Result<Replay, BusError> {
        let mut conn = self.conn().await?;
        let key = keys::history_key(self.prefix());
        let recovered = if since == EventId::ZERO {
            // XINFO fails on a stream that does not exist yet: nothing trimmed.
            let info = timeout(
                REDIS_TIMEOUT,
                redis::cmd("XINFO")
                    .arg("STREAM")
                    .arg(&key)
                    .query_async::<redis::Value>(&mut conn),
            )
            .await
            .map_err(|_| BusError::Timeout)?
            .unwrap_or(redis::Value::Nil);
            never_trimmed(&info)
        } else {
            let own: Vec<(String, Vec<String>)> = bounded(
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(since.to_string())
                    .arg(since.to_string())
                    .query_async(&mut conn),
            )
            .await?;
            !own.is_empty()
        };
        if !recovered && !everything {
            return Ok(Replay::default());
        }
        let limit = self.wire.history().max_len + PAGE;
        let mut events = Vec::new();
        let mut cursor = since;
        loop {
            let page: Vec<(String, Vec<String>)> = bounded(
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(format!("({cursor}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(&mut conn),
            )
            .await?;
            let full = page.len() == PAGE;
            for (id, fields) in page {
                let Ok(id) = id.parse::<EventId>() else {
                    continue;
                };
                cursor = id;
                if let Some(event) = history_event(id, &fields) {
                    events.push(event);
                }
            }
            if !full || events.len() >= limit {
                break;
            }
        }
        Ok(Replay { events, recovered })
    }

    /// Writes this node's status every second until it stops.
    async fn heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
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
}

/// For `XINFO STREAM`: true when every entry ever added is still there (or
/// the stream does not exist yet).
fn never_trimmed(info: &redis::Value) -> bool {
    let pairs: Vec<(String, redis::Value)> = match info {
        redis::Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| match pair {
                [k, v] => redis::from_redis_value_ref::<String>(k)
                    .ok()
                    .map(|k| (k, v.clone())),
                _ => None,
            })
            .collect(),
        redis::Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| {
                redis::from_redis_value_ref::<String>(k)
                    .ok()
                    .map(|k| (k, v.clone()))
            })
            .collect(),
        _ => return true,
    };
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| redis::from_redis_value_ref::<u64>(v).ok())
    };
    match (field("length"), field("entries-added")) {
        (Some(length), Some(added)) => length == added,
        _ => false,
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

fn history_event(id: EventId, fields: &[String]) -> Option<ReplayEvent> {
    let envelope = fields
        .chunks(2)
        .find(|pair| pair[0] == publisher::wire::HISTORY_FIELD)
        .and_then(|pair| pair.get(1))?;
    let text = shared::insert_id(envelope, id)?;
    let decoded = shared::envelope::decode(text.as_bytes(), Utc::now()).ok()?;
    Some(ReplayEvent {
        id,
        kind: decoded.kind,
        text,
    })
}

#[async_trait]
impl Bus for RedisBus {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    async fn publish(&self, kind: &str, data: &RawValue) -> Result<EventId, BusError> {
        shared::validate_kind(kind).map_err(publisher::PublishError::from)?;
        let mut conn = self.conn().await?;
        let id = bounded(self.wire.publish(&mut conn, kind, data)).await?;
        Ok(id)
    }

    async fn replay(&self, since: EventId) -> Result<Replay, BusError> {
        self.range_after(since, false).await
    }

    async fn nodes(&self) -> Result<Vec<NodeStatus>, BusError> {
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

    async fn leave(&self) {
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
