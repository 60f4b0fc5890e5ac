//! The Redis wire format, written by one atomic script (`lua/publish.lua`,
//! which the Python package loads too).
//!
//! On one Redis: one `EVALSHA` per batch of events (a single publish is a
//! batch of one; see [`crate::batch`]), so the history order and the live
//! order are the same order (Redis runs a script alone), no subscriber ever
//! sees a live event that the history lacks, and no reader sees part of a
//! batch:
//! 1. The history's epoch (`{{prefix}:history}:epoch`) is read, or a new one
//!    is set when the history does not exist (first publish, Redis restarted
//!    empty, stream deleted).
//! 2. `XADD {prefix}:history` for each event, in order: each gets its stream
//!    id.
//! 3. Once for the batch: the oldest entries beyond the history's size are
//!    trimmed, then (`XTRIM MINID`) those older than its age limit.
//! 4. `PUBLISH {prefix}:events:{type}` each envelope with its position,
//!    `"id":"<epoch>:<ms>-<seq>"`, in front, in order.
//! 5. `SET {prefix}:analytics:latest` to the batch's last `analytics_update`.
//!
//! On a Redis Cluster ([`Topology::Cluster`]) the history, the snapshot and
//! each type's channel live on different shards, so one script cannot do it
//! all: the script does 1–3 (the history and its epoch share a slot and stay
//! the single source of positions and order), then, event by event, `SET` the
//! snapshot, `SADD {prefix}:types` a custom type (nodes subscribe to it), and
//! `SPUBLISH` the envelope on the type's sharded channel. Gateways re-read the
//! history every second, so an event whose `SPUBLISH` was lost (a crash
//! between the steps, a failover) still arrives.
//!
//! Every event is checked against `MAX_EVENT_BYTES`, and every batch against
//! its bounds, before anything reaches Redis.

use std::time::Duration;

use chrono::Utc;
use redis::aio::ConnectionLike;
use serde::Serialize;
use shared::envelope::{DEFAULT_MAX_EVENT_BYTES, MAX_EVENT_BYTES_RANGE};
use shared::state::{DEFAULT_STATE_MAX_KEYS, DEFAULT_STATE_TTL_SECS, Keying};
use shared::{Epoch, Position, keys, kind};

use crate::PublishError;
use crate::batch::{Batch, Encoded, Item};

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

/// The keyed state's rules ([`Keying`]: which events have a key, which
/// remove it) and bounds (most keys per type, the age of a key's latest
/// event), passed to the publish script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePolicy {
    pub keying: Keying,
    pub max_keys: usize,
    pub ttl: Duration,
}

impl Default for StatePolicy {
    fn default() -> Self {
        Self {
            keying: Keying::default(),
            max_keys: DEFAULT_STATE_MAX_KEYS,
            ttl: Duration::from_secs(DEFAULT_STATE_TTL_SECS),
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
    state: StatePolicy,
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
            state: StatePolicy::default(),
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

    /// Sets the keyed state's rules and bounds (`STATE_*`).
    pub fn with_state(mut self, state: StatePolicy) -> Self {
        self.state = StatePolicy {
            max_keys: state.max_keys.max(1),
            ..state
        };
        self
    }

    pub fn state(&self) -> &StatePolicy {
        &self.state
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn history(&self) -> HistoryPolicy {
        self.history
    }

    /// Encodes `data` as an envelope of `kind`, stamped now, keyed by the
    /// state rules, and checks it (type, `MAX_EVENT_BYTES`): nothing is
    /// sent.
    pub fn encode<D: Serialize + ?Sized>(
        &self,
        kind: &str,
        data: &D,
    ) -> Result<Encoded, PublishError> {
        self.encode_item(&Item::new(kind, data))
    }

    /// The same for an [`Item`] (an explicit key or removal, if it has one).
    pub fn encode_item<D: Serialize + ?Sized>(
        &self,
        item: &Item<'_, D>,
    ) -> Result<Encoded, PublishError> {
        Encoded::keyed(item, &self.state.keying, Utc::now(), self.max_event_bytes)
    }

    /// Encodes and checks a whole batch (see [`Batch::encode`]): nothing is
    /// sent, and one bad event refuses all of them.
    pub fn batch<'d, K, D, I>(&self, events: I) -> Result<Batch, PublishError>
    where
        I: IntoIterator<Item = (K, &'d D)>,
        K: AsRef<str>,
        D: Serialize + ?Sized + 'd,
    {
        let events: Vec<(K, &D)> = events.into_iter().collect();
        Batch::encode_items(
            events
                .iter()
                .map(|(kind, data)| Item::new(kind.as_ref(), *data)),
            &self.state.keying,
            Utc::now(),
            self.max_event_bytes,
        )
    }

    /// Encodes and checks a batch of [`Item`]s (explicit keys and removals).
    pub fn batch_items<'a, D, I>(&self, items: I) -> Result<Batch, PublishError>
    where
        I: IntoIterator<Item = Item<'a, D>>,
        D: Serialize + ?Sized + 'a,
    {
        Batch::encode_items(items, &self.state.keying, Utc::now(), self.max_event_bytes)
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
        let batch = Batch::one(self.encode(kind, data)?);
        let ids = self.publish_batch(conn, &batch).await?;
        Ok(ids[0])
    }

    /// Publishes a checked batch in one call of the script: every event in
    /// order, atomically into the history, each with its position (returned
    /// in the same order). An empty batch sends nothing.
    pub async fn publish_batch<C>(
        &self,
        conn: &mut C,
        batch: &Batch,
    ) -> Result<Vec<Position>, PublishError>
    where
        C: ConnectionLike + Send,
    {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let cluster = self.topology == Topology::Cluster;
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(keys::history_key(&self.prefix))
            .key(keys::epoch_key(&self.prefix));
        if !cluster {
            invocation.key(keys::analytics_key(&self.prefix));
        }
        // On a cluster no channel: published below, on each type's shard.
        let channels = if cluster {
            String::new()
        } else {
            keys::events_channel(&self.prefix, "")
        };
        invocation
            .arg(self.history.max_len.max(1))
            .arg(u64::try_from(self.history.ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(new_epoch().to_string())
            .arg(channels)
            .arg(self.state.max_keys.max(1))
            .arg(u64::try_from(self.state.ttl.as_millis()).unwrap_or(u64::MAX));
        for event in batch.events() {
            invocation.arg(event.payload());
        }
        // On a cluster the script also hands back the envelopes it changed
        // (evictions named), which the live publish below must carry.
        let (raw, changed): (String, Vec<(usize, String)>) = if cluster {
            let (raw, pairs): (String, Vec<String>) = invocation.invoke_async(conn).await?;
            let changed = pairs
                .chunks_exact(2)
                .filter_map(|p| Some((p[0].parse::<usize>().ok()?.checked_sub(1)?, p[1].clone())))
                .collect();
            (raw, changed)
        } else {
            (invocation.invoke_async(conn).await?, Vec::new())
        };
        let ids = raw
            .split(',')
            .map(|id| id.parse().map_err(|_| PublishError::BadId(id.to_owned())))
            .collect::<Result<Vec<Position>, _>>()?;
        if ids.len() != batch.len() {
            return Err(PublishError::BadId(format!(
                "{} positions for {} events: {raw}",
                ids.len(),
                batch.len()
            )));
        }
        if cluster {
            self.publish_sharded(conn, batch, &ids, &changed).await?;
        }
        Ok(ids)
    }

    /// After the history script on a cluster: the snapshot, the type
    /// registry and the live `SPUBLISH`es, one command each (they live on
    /// different shards), in the batch's order.
    async fn publish_sharded<C>(
        &self,
        conn: &mut C,
        batch: &Batch,
        ids: &[Position],
        changed: &[(usize, String)],
    ) -> Result<(), PublishError>
    where
        C: ConnectionLike + Send,
    {
        let mut registered: Vec<&str> = Vec::new();
        for (index, (event, &id)) in batch.events().iter().zip(ids).enumerate() {
            let kind = event.kind();
            let stored = changed
                .iter()
                .find(|(i, _)| *i == index)
                .map_or(event.payload(), |(_, envelope)| envelope);
            let live =
                shared::insert_id(stored, id).expect("an encoded envelope is a non-empty object");
            if event.is_analytics() {
                redis::cmd("SET")
                    .arg(keys::analytics_key(&self.prefix))
                    .arg(&live)
                    .query_async::<()>(conn)
                    .await?;
            } else if !kind::KNOWN.contains(&kind) && !registered.contains(&kind) {
                redis::cmd("SADD")
                    .arg(keys::types_key(&self.prefix))
                    .arg(kind)
                    .query_async::<()>(conn)
                    .await?;
                registered.push(kind);
            }
            redis::cmd("SPUBLISH")
                .arg(keys::events_channel(&self.prefix, kind))
                .arg(&live)
                .query_async::<()>(conn)
                .await?;
        }
        Ok(())
    }
}

/// A random epoch for a history this publish may have to create.
pub fn new_epoch() -> Epoch {
    Epoch(fastrand::u32(..))
}
