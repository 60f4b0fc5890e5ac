//! Publish dashboard events onto the gateway's Redis wire format.
//!
//! Backend jobs link this crate (or run its `publisher` CLI) to push
//! `metrics_update`, `alert`, `intervention`, `analytics_update` or any other
//! type to every dashboard on every gateway node.
//!
//! ```no_run
//! # async fn job() -> Result<(), publisher::PublishError> {
//! let publisher = publisher::Publisher::connect("redis://127.0.0.1:6379", "ws").await?;
//! let id = publisher
//!     .alert(&serde_json::json!({"tutor_id": "t-17", "severity": "critical"}))
//!     .await?;
//! println!("published {id}");
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`wire`]: [`WireFormat`], the one atomic Redis script that appends an
//!   event to the bounded history, keeps the analytics snapshot and publishes
//!   it live (on a Redis Cluster: the history script, then a sharded
//!   publish). The gateway's `/api/publish` uses it too.
//!   Events are keyed by [`StatePolicy`] (`STATE_KEYS`, `STATE_TOMBSTONES`):
//!   the script keeps the latest event per key beside the history
//!   ([`Publisher::publish_keyed`], [`Publisher::remove`] for explicit ones).
//! - [`batch`]: [`batch::Batch`], events encoded and checked for one round
//!   trip of that script ([`Publisher::publish_many`], `send --stdin`), and
//!   the bounds of a batch.
//! - [`config`]: [`config::RedisConfig`] and [`config::WireConfig`], the
//!   settings (`REDIS_URL`, `REDIS_SENTINELS`, `REDIS_TLS_*`, `CHANNEL_PREFIX`
//!   ...) that the gateway, this CLI and the load tool all flatten into
//!   their own flags; checked once into a [`config::RedisTarget`].
//! - [`connector`]: [`connector::Connector`], connections to a target: one
//!   Redis (TLS, ACL user), the master the Sentinels name, or a Cluster's
//!   client builder.
//! - [`connection`]: [`connection::Connection`], one Redis or a cluster.
//! - [`lines`]: the input of `send --stdin` (one `{"type","data"}` object
//!   per line), parsed.
//! - [`simulate`]: [`simulate::Generator`], a realistic stream of tutor
//!   metrics, alerts, interventions and analytics (the CLI's `simulate`, the
//!   gateway's `--demo`).
//! - [`http`]: [`http::HttpPublisher`], events through a node's
//!   `POST /api/publish`, for when Redis is out of reach (`gateway --demo`).
//! - `src/bin/publisher.rs`: the CLI, a thin layer over these.
//!
//! Why the gateway depends on this crate: everything that *writes* the wire
//! format lives here, and a gateway node writes it too (`/api/publish`, the
//! `--demo` generator, a node's connections to the same Redis target). The
//! gateway's own reading of the bus (subscriptions, history pages, catch-up)
//! stays in `gateway::bus`; what a byte means stays in `shared`.

pub mod batch;
pub mod config;
pub mod connection;
pub mod connector;
pub mod http;
pub mod lines;
pub mod simulate;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

pub use batch::{Batch, Encoded, Item};
pub use config::{ConfigError, RedisConfig, RedisTarget, WireConfig, redact_url};
pub use connection::Connection;
pub use connector::Connector;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use serde::Serialize;
use shared::kind;
pub use shared::{EventId, Position};
use thiserror::Error;
pub use wire::{HistoryPolicy, StatePolicy, Topology, WireFormat};

/// How long connecting to Redis, or one command, may take before it fails.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum PublishError {
    #[error("invalid message type: {0}")]
    Kind(#[from] shared::KindError),
    #[error("invalid Redis URL: {0}")]
    Url(redis::RedisError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot reach Redis at {addr}: {source}")]
    Connect {
        addr: String,
        source: redis::RedisError,
    },
    #[error("Redis command failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis returned an event position that is not one: {0:?}")]
    BadId(String),
    #[error("event is {size} bytes encoded, over MAX_EVENT_BYTES ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("invalid state key: {0}")]
    Key(#[from] shared::state::KeyError),
    #[error("data does not serialize to JSON: {0}")]
    Data(#[from] serde_json::Error),
    /// One event of a batch is bad; nothing of the batch was sent.
    #[error("events[{index}]: {source}")]
    InBatch {
        index: usize,
        source: Box<PublishError>,
    },
    #[error(
        "a batch holds at most {max} events (this one {events}): split it into several batches"
    )]
    BatchTooLong { events: usize, max: usize },
    #[error(
        "a batch of several events holds at most {max} bytes encoded (this one {bytes}): split it into several batches"
    )]
    BatchTooLarge { bytes: usize, max: usize },
}

impl PublishError {
    /// The error itself, for an error about one event of a batch.
    pub fn event_error(&self) -> &PublishError {
        match self {
            PublishError::InBatch { source, .. } => source.event_error(),
            other => other,
        }
    }
}

/// A connection to Redis plus the wire format: what a backend job holds.
/// Cheap to clone; clones share the connection.
///
/// On one Redis or through Sentinels, a publish that finds the connection
/// broken (Redis restarted, the master failed over) makes the next publish
/// reconnect, asking the Sentinels for the master anew. The failed publish
/// is returned as an error, not retried (it may have run), except when the
/// server refused it as a replica (`READONLY`: it did not run), which is
/// retried once on the new master.
#[derive(Clone)]
pub struct Publisher {
    link: Link,
    wire: WireFormat,
}

#[derive(Clone)]
enum Link {
    Single(Arc<Reconnecting>),
    Cluster(ClusterConnection),
}

/// A multiplexed connection that is replaced when it breaks.
struct Reconnecting {
    connector: Connector,
    /// The connection and its generation (how many times it was replaced).
    current: std::sync::RwLock<(u64, MultiplexedConnection)>,
    /// One reconnect at a time; the others wait for it and use its result.
    reconnecting: tokio::sync::Mutex<()>,
}

impl Reconnecting {
    fn current(&self) -> (u64, MultiplexedConnection) {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces connection `generation` (unless another caller already did).
    async fn replace(&self, generation: u64) -> Result<MultiplexedConnection, PublishError> {
        let _one = self.reconnecting.lock().await;
        let (now, conn) = self.current();
        if now != generation {
            return Ok(conn);
        }
        let fresh = self.connector.connect().await?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (now + 1, fresh.clone());
        Ok(fresh)
    }
}

/// Whether an error means the connection (or the server behind it) is no
/// longer the master to publish to.
fn broken(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || read_only(err)
}

/// The server is a replica now (a failover demoted it): nothing ran.
fn read_only(err: &redis::RedisError) -> bool {
    err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        || err.to_string().contains("READONLY")
}

impl Publisher {
    /// Connects with the default history policy. `prefix` is the
    /// deployment's `CHANNEL_PREFIX` (`ws` unless configured).
    pub async fn connect(redis_url: &str, prefix: &str) -> Result<Self, PublishError> {
        Self::connect_with(redis_url, WireFormat::new(prefix, HistoryPolicy::default())).await
    }

    /// Connects to the Redis at `redis_url` (`redis://`, or `rediss://` with
    /// the system's CA roots; `user:password@` for an ACL user).
    pub async fn connect_with(redis_url: &str, wire: WireFormat) -> Result<Self, PublishError> {
        Self::connect_config(&RedisConfig::url(redis_url), wire).await
    }

    /// Connects to whatever `config` names: one Redis, a Cluster, or the
    /// master behind Sentinels, with its TLS settings. The wire format's
    /// topology follows the target.
    pub async fn connect_config(
        config: &RedisConfig,
        wire: WireFormat,
    ) -> Result<Self, PublishError> {
        let target = config.target()?.ok_or(ConfigError::NoTarget)?;
        Self::connect_target(target, wire).await
    }

    /// Connects to a checked target.
    pub async fn connect_target(
        target: RedisTarget,
        wire: WireFormat,
    ) -> Result<Self, PublishError> {
        let topology = target.topology();
        let connector = Connector::new(target)?;
        let link = match connector.cluster_builder() {
            Some(builder) => {
                let client = builder.build().map_err(PublishError::Url)?;
                let conn = client.get_async_connection().await.map_err(|source| {
                    PublishError::Connect {
                        addr: connector.target().address(),
                        source,
                    }
                })?;
                Link::Cluster(conn)
            }
            None => {
                let conn = connector.connect().await?;
                Link::Single(Arc::new(Reconnecting {
                    connector,
                    current: std::sync::RwLock::new((0, conn)),
                    reconnecting: tokio::sync::Mutex::new(()),
                }))
            }
        };
        Ok(Self {
            link,
            wire: wire.on_topology(topology),
        })
    }

    /// Connects to a Redis Cluster through any of its `seeds`
    /// (`redis://host:port`), publishing on sharded channels.
    pub async fn connect_cluster(seeds: &[String], wire: WireFormat) -> Result<Self, PublishError> {
        let config = RedisConfig {
            redis_cluster_nodes: seeds.to_vec(),
            ..RedisConfig::default()
        };
        Self::connect_config(&config, wire).await
    }

    /// Publishes any type; returns the event's id once Redis has it.
    pub async fn publish<D: Serialize + ?Sized>(
        &self,
        kind: &str,
        data: &D,
    ) -> Result<Position, PublishError> {
        let batch = Batch::one(self.wire.encode(kind, data)?);
        Ok(self.publish_batch(&batch).await?[0])
    }

    /// Publishes an event under an explicit state key (it replaces the
    /// key's previous event in the state; see `STATE_KEYS` for keys
    /// derived from the data instead).
    pub async fn publish_keyed<D: Serialize + ?Sized>(
        &self,
        kind: &str,
        key: &str,
        data: &D,
    ) -> Result<Position, PublishError> {
        let item = Item::new(kind, data).with_key(key);
        let batch = Batch::one(self.wire.encode_item(&item)?);
        Ok(self.publish_batch(&batch).await?[0])
    }

    /// Removes `key` of `kind` from the state: a tombstone event (its data
    /// `{}`) that goes live and into the history like any other, so every
    /// dashboard drops the key.
    pub async fn remove(&self, kind: &str, key: &str) -> Result<Position, PublishError> {
        let data = serde_json::json!({});
        let item = Item::new(kind, &data).with_key(key).removing();
        let batch = Batch::one(self.wire.encode_item(&item)?);
        Ok(self.publish_batch(&batch).await?[0])
    }

    /// Publishes `events` (type, data) in one round trip: in order,
    /// atomically into the history (all of them or, if Redis fails, none),
    /// each with its id, returned in the same order. Every event is checked
    /// first: one bad event ([`PublishError::InBatch`] names its index), or
    /// more than [`batch::MAX_BATCH_EVENTS`] events or
    /// [`batch::MAX_BATCH_BYTES`], and nothing is sent. Split longer inputs
    /// into several batches (each atomic on its own).
    ///
    /// ```no_run
    /// # async fn job(publisher: publisher::Publisher) -> Result<(), publisher::PublishError> {
    /// use serde_json::json;
    /// let ids = publisher
    ///     .publish_many([
    ///         ("metrics_update", &json!({"tutor_id": "t-1", "window": "7day"})),
    ///         ("metrics_update", &json!({"tutor_id": "t-2", "window": "7day"})),
    ///     ])
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_many<'d, K, D, I>(&self, events: I) -> Result<Vec<Position>, PublishError>
    where
        I: IntoIterator<Item = (K, &'d D)>,
        K: AsRef<str>,
        D: Serialize + ?Sized + 'd,
    {
        let batch = self.wire.batch(events)?;
        self.publish_batch(&batch).await
    }

    /// Publishes a batch already checked ([`WireFormat::batch`],
    /// [`Batch::push`]) in one round trip.
    pub async fn publish_batch(&self, batch: &Batch) -> Result<Vec<Position>, PublishError> {
        let link = match &self.link {
            Link::Cluster(conn) => {
                let mut conn = Connection::<MultiplexedConnection>::Cluster(conn.clone());
                return self.wire.publish_batch(&mut conn, batch).await;
            }
            Link::Single(link) => link,
        };
        let (generation, conn) = link.current();
        let result = self
            .wire
            .publish_batch(&mut Connection::Single(conn), batch)
            .await;
        let Err(PublishError::Redis(err)) = &result else {
            return result;
        };
        if !broken(err) {
            return result;
        }
        let retry = read_only(err);
        match link.replace(generation).await {
            Ok(fresh) if retry => {
                self.wire
                    .publish_batch(&mut Connection::Single(fresh), batch)
                    .await
            }
            Ok(_) => result,
            Err(reconnect) => {
                tracing::debug!("reconnect after a failed publish: {reconnect}");
                result
            }
        }
    }

    /// The wire format this publisher writes (to check events with before
    /// publishing them: [`WireFormat::encode`]).
    pub fn wire(&self) -> &WireFormat {
        &self.wire
    }

    pub async fn metrics_update<D: Serialize + ?Sized>(
        &self,
        data: &D,
    ) -> Result<Position, PublishError> {
        self.publish(kind::METRICS_UPDATE, data).await
    }

    pub async fn alert<D: Serialize + ?Sized>(&self, data: &D) -> Result<Position, PublishError> {
        self.publish(kind::ALERT, data).await
    }

    pub async fn intervention<D: Serialize + ?Sized>(
        &self,
        data: &D,
    ) -> Result<Position, PublishError> {
        self.publish(kind::INTERVENTION, data).await
    }

    pub async fn analytics_update<D: Serialize + ?Sized>(
        &self,
        data: &D,
    ) -> Result<Position, PublishError> {
        self.publish(kind::ANALYTICS_UPDATE, data).await
    }
}
