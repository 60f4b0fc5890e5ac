//! The Redis wire format, written by one atomic script (`lua/publish.lua`,
//! which the Python package loads too).
//!
//! On one Redis: one `EVALSHA` per event, so the history order and the live
//! order are the same order (Redis runs a script alone), and no subscriber
//! ever sees a live event that the history lacks:
//! 1. The history's epoch (`{{prefix}:history}:epoch`) is read, or a new one
//!    is set when the history does not exist (first publish, Redis restarted
//!    empty, stream deleted).
//! 2. `XADD {prefix}:history MAXLEN <size>`: the event gets its stream id;
//!    the oldest entries beyond `size` are trimmed.
//! 3. `XTRIM MINID`: entries older than the history's age limit are trimmed.
//! 4. `SET {prefix}:analytics:latest` for `analytics_update`.
//! 5. `PUBLISH {prefix}:events:{type}` the envelope with its position,
//!    `"id":"<epoch>:<ms>-<seq>"`, in front.
//!
//! On a Redis Cluster ([`Topology::Cluster`]) the history, the snapshot and
//! each type's channel live on different shards, so one script cannot do it
//! all: the script does 1–3 (the history and its epoch share a slot and stay
//! the single source of positions and order), then `SET` the snapshot, `SADD
//! {prefix}:types` a custom type (nodes subscribe to it), and `SPUBLISH` the
//! envelope on the type's sharded channel. Gateways re-read the history every
//! second, so an event whose `SPUBLISH` was lost (a crash between the steps, a
//! failover) still arrives.
//!
//! Every event is checked against `MAX_EVENT_BYTES` before it reaches Redis.

use std::time::Duration;

use chrono::Utc;
use redis::aio::ConnectionLike;
use serde::Serialize;
use shared::envelope::{DEFAULT_MAX_EVENT_BYTES, MAX_EVENT_BYTES_RANGE};
use shared::{Epoch, Position, keys, kind};

use crate::PublishError;

pub const DEFAULT_HISTORY_SIZE: usize = 10_000;
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(300);

/// How much history is kept for resume: at most `max_len` events, none
/// older than `ttl` (a zero `ttl` keeps events until `max_len` pushes them
/// out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPolicy {
    pub max_len: usize,
    pub ttl: Duration,
}

impl Default for HistoryPolicy {
    fn default() -> Self {
        Self {
            max_len: DEFAULT_HISTORY_SIZE,
            ttl: DEFAULT_HISTORY_TTL,
        }
    }
}

/// The stream field holding the envelope (without its id: the entry's own id
/// is the event id, and is spliced back in on replay).
pub const HISTORY_FIELD: &str = "e";

/// One Redis, or a Redis Cluster with sharded pub/sub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Single,
    Cluster,
}

/// The one write script, shared with the Python package (see its header
/// for the keys and arguments).
pub const PUBLISH_SCRIPT: &str = include_str!("../lua/publish.lua");

/// Everything needed to write events in the gateway's format: the prefix,
/// the history policy, the size limit and the script. Cheap to clone.
#[derive(Clone)]
pub struct WireFormat {
    prefix: String,
    history: HistoryPolicy,
    topology: Topology,
    max_event_bytes: usize,
    script: redis::Script,
}

impl WireFormat {
    pub fn new(prefix: &str, history: HistoryPolicy) -> Self {
        Self::with_topology(prefix, history, Topology::Single)
    }

    pub fn with_topology(prefix: &str, history: HistoryPolicy, topology: Topology) -> Self {
        Self {
            prefix: prefix.to_owned(),
            history,
            topology,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            script: redis::Script::new(PUBLISH_SCRIPT),
        }
    }

    pub fn on_topology(mut self, topology: Topology) -> Self {
        self.topology = topology;
        self
    }

    /// Sets `MAX_EVENT_BYTES`, clamped to the range nodes accept.
    pub fn with_max_event_bytes(mut self, max: usize) -> Self {
        self.max_event_bytes =
            max.clamp(*MAX_EVENT_BYTES_RANGE.start(), *MAX_EVENT_BYTES_RANGE.end());
        self
    }

    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn history(&self) -> HistoryPolicy {
        self.history
    }

    /// Encodes `data` as an envelope of `kind`, stamped now, and publishes it
    /// on any Redis connection (a pooled one in the gateway).
    pub async fn publish<C, D>(
        &self,
        conn: &mut C,
        kind: &str,
        data: &D,
    ) -> Result<Position, PublishError>
    where
        C: ConnectionLike + Send,
        D: Serialize + ?Sized,
    {
        shared::validate_kind(kind)?;
        let data = serde_json::value::to_raw_value(data)?;
        let payload = shared::encode(kind, &data, Utc::now());
        if payload.len() > self.max_event_bytes {
            return Err(PublishError::TooLarge {
                size: payload.len(),
                max: self.max_event_bytes,
            });
        }
        if self.topology == Topology::Cluster {
            return self.publish_sharded(conn, kind, &payload).await;
        }
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(keys::history_key(&self.prefix))
            .key(keys::epoch_key(&self.prefix))
            .key(keys::analytics_key(&self.prefix));
        self.script_args(&mut invocation, kind, &payload)
            .arg(keys::events_channel(&self.prefix, kind));
        let id: String = invocation.invoke_async(conn).await?;
        id.parse().map_err(|_| PublishError::BadId(id))
    }

    /// The script's arguments 1–5 (see `lua/publish.lua`).
    fn script_args<'i, 'a>(
        &self,
        invocation: &'i mut redis::ScriptInvocation<'a>,
        kind: &str,
        payload: &str,
    ) -> &'i mut redis::ScriptInvocation<'a> {
        let analytics = if kind == kind::ANALYTICS_UPDATE {
            "1"
        } else {
            "0"
        };
        invocation
            .arg(payload)
            .arg(self.history.max_len.max(1))
            .arg(u64::try_from(self.history.ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(new_epoch().to_string())
            .arg(analytics)
    }

    async fn publish_sharded<C>(
        &self,
        conn: &mut C,
        kind: &str,
        payload: &str,
    ) -> Result<Position, PublishError>
    where
        C: ConnectionLike + Send,
    {
        // History and epoch only (one slot); no channel: published below.
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(keys::history_key(&self.prefix))
            .key(keys::epoch_key(&self.prefix));
        self.script_args(&mut invocation, kind, payload).arg("");
        let raw_id: String = invocation.invoke_async(conn).await?;
        let id: Position = raw_id.parse().map_err(|_| PublishError::BadId(raw_id))?;
        let live =
            shared::insert_id(payload, id).expect("an encoded envelope is a non-empty object");
        if kind == kind::ANALYTICS_UPDATE {
            redis::cmd("SET")
                .arg(keys::analytics_key(&self.prefix))
                .arg(&live)
                .query_async::<()>(conn)
                .await?;
        } else if !kind::KNOWN.contains(&kind) {
            redis::cmd("SADD")
                .arg(keys::types_key(&self.prefix))
                .arg(kind)
                .query_async::<()>(conn)
                .await?;
        }
        redis::cmd("SPUBLISH")
            .arg(keys::events_channel(&self.prefix, kind))
            .arg(&live)
            .query_async::<()>(conn)
            .await?;
        Ok(id)
    }
}

/// A random epoch for a history this publish may have to create.
pub fn new_epoch() -> Epoch {
    Epoch(fastrand::u32(..))
}
