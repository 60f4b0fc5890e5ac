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
//! - [`connection`]: [`connection::Connection`], one Redis or a cluster.
//! - [`simulate`]: [`simulate::Generator`], a realistic stream of tutor
//!   metrics, alerts, interventions and analytics (the CLI's `simulate`, the
//!   gateway's `--demo`).
//! - [`http`]: [`http::publish`], one event through a node's
//!   `POST /api/publish`, for when Redis is out of reach (`gateway --demo`).
//! - `src/bin/publisher.rs`: the CLI, a thin layer over these.

pub mod connection;
pub mod http;
pub mod simulate;
pub mod wire;

use std::time::Duration;

pub use connection::Connection;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use serde::Serialize;
use shared::kind;
pub use shared::{EventId, Position};
use thiserror::Error;
pub use wire::{HistoryPolicy, Topology, WireFormat};

/// How long connecting to Redis, or one command, may take before it fails.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum PublishError {
    #[error("invalid message type: {0}")]
    Kind(#[from] shared::KindError),
    #[error("invalid Redis URL: {0}")]
    Url(redis::RedisError),
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
    #[error("data does not serialize to JSON: {0}")]
    Data(#[from] serde_json::Error),
}

/// A connection to Redis plus the wire format: what a backend job holds.
#[derive(Clone)]
pub struct Publisher {
    conn: Connection<MultiplexedConnection>,
    wire: WireFormat,
}

impl Publisher {
    /// Connects with the default history policy. `prefix` is the
    /// deployment's `CHANNEL_PREFIX` (`ws` unless configured).
    pub async fn connect(redis_url: &str, prefix: &str) -> Result<Self, PublishError> {
        Self::connect_with(redis_url, WireFormat::new(prefix, HistoryPolicy::default())).await
    }

    pub async fn connect_with(redis_url: &str, wire: WireFormat) -> Result<Self, PublishError> {
        let client = redis::Client::open(redis_url).map_err(PublishError::Url)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|source| PublishError::Connect {
                // The address only: a URL may hold a password.
                addr: client.get_connection_info().addr().to_string(),
                source,
            })?;
        Ok(Self {
            conn: Connection::Single(conn),
            wire,
        })
    }

    /// Connects to a Redis Cluster through any of its `seeds`
    /// (`redis://host:port`), publishing on sharded channels.
    pub async fn connect_cluster(seeds: &[String], wire: WireFormat) -> Result<Self, PublishError> {
        let client = ClusterClientBuilder::new(seeds.to_vec())
            .connection_timeout(REDIS_TIMEOUT)
            .response_timeout(REDIS_TIMEOUT)
            .build()
            .map_err(PublishError::Url)?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|source| PublishError::Connect {
                addr: seeds.join(","),
                source,
            })?;
        Ok(Self {
            conn: Connection::Cluster(conn),
            wire: wire.on_topology(Topology::Cluster),
        })
    }

    /// Publishes any type; returns the event's id once Redis has it.
    pub async fn publish<D: Serialize + ?Sized>(
        &self,
        kind: &str,
        data: &D,
    ) -> Result<Position, PublishError> {
        self.wire.publish(&mut self.conn.clone(), kind, data).await
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
