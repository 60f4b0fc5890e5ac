//! The Redis wire format, written by one atomic script.
//!
//! On one Redis: one `EVALSHA` per event, so the history order and the live
//! order are the same order (Redis runs a script alone), and no subscriber
//! ever sees a live event that the history lacks:
//! 1. `XADD {prefix}:history MAXLEN <size>`: the event gets its id, the Redis
//!    stream id; the oldest entries beyond `size` are trimmed.
//! 2. `XTRIM MINID`: entries older than the history's age limit are trimmed.
//! 3. `SET {prefix}:analytics:latest` for `analytics_update`.
//! 4. `PUBLISH {prefix}:events:{type}` the envelope with its `id` in front.
//!
//! On a Redis Cluster ([`Topology::Cluster`]) the history, the snapshot and
//! each type's channel live on different shards, so one script cannot do it
//! all: the script does 1–2 (the history stays the single source of ids and
//! order), then `SET` the snapshot, `SADD {prefix}:types` a custom type (nodes
//! subscribe to it), and `SPUBLISH` the envelope on the type's sharded
//! channel. Gateways re-read the history every second, so an event whose
//! `SPUBLISH` was lost (a crash between the steps, a failover) still arrives.

use std::time::Duration;

use chrono::Utc;
use redis::aio::ConnectionLike;
use serde::Serialize;
use shared::{EventId, keys, kind};

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

/// Appends the event to the history (`ARGV[1]` envelope, `ARGV[2]` max
/// length, `ARGV[3]` age limit in ms) and sets `id`: the start of both
/// scripts.
macro_rules! append_lua {
    () => {
        r#"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'e', ARGV[1])
local ttl_ms = tonumber(ARGV[3])
if ttl_ms > 0 then
  local now = redis.call('TIME')
  local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - ttl_ms
  if cutoff > 0 then
    redis.call('XTRIM', KEYS[1], 'MINID', cutoff)
  end
end
"#
    };
}

/// Cluster: append to the history only; returns the id.
const HISTORY_SCRIPT: &str = concat!(append_lua!(), "return id\n");

/// One Redis: append, keep the snapshot (`KEYS[2]` when `ARGV[5]` is 1), and
/// publish on `ARGV[4]` with the id spliced in front; returns the id.
const PUBLISH_SCRIPT: &str = concat!(
    append_lua!(),
    r#"local payload = '{"id":"' .. id .. '",' .. string.sub(ARGV[1], 2)
if ARGV[5] == '1' then
  redis.call('SET', KEYS[2], payload)
end
redis.call('PUBLISH', ARGV[4], payload)
return id
"#
);

/// Everything needed to write events in the gateway's format: the prefix,
/// the history policy and the script. Cheap to clone.
#[derive(Clone)]
pub struct WireFormat {
    prefix: String,
    history: HistoryPolicy,
    topology: Topology,
    script: redis::Script,
    history_script: redis::Script,
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
            script: redis::Script::new(PUBLISH_SCRIPT),
            history_script: redis::Script::new(HISTORY_SCRIPT),
        }
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
    ) -> Result<EventId, PublishError>
    where
        C: ConnectionLike + Send,
        D: Serialize + ?Sized,
    {
        shared::validate_kind(kind)?;
        let data = serde_json::value::to_raw_value(data)?;
        let payload = shared::encode(kind, &data, Utc::now());
        if self.topology == Topology::Cluster {
            return self.publish_sharded(conn, kind, &payload).await;
        }
        let id: String = self
            .append(&self.script, &payload)
            .key(keys::analytics_key(&self.prefix))
            .arg(keys::events_channel(&self.prefix, kind))
            .arg(if kind == kind::ANALYTICS_UPDATE {
                "1"
            } else {
                "0"
            })
            .invoke_async(conn)
            .await?;
        id.parse().map_err(|_| PublishError::BadId(id))
    }

    /// `script` invoked with the history key and the append arguments.
    fn append<'a>(&self, script: &'a redis::Script, payload: &str) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(keys::history_key(&self.prefix))
            .arg(payload)
            .arg(self.history.max_len.max(1))
            .arg(u64::try_from(self.history.ttl.as_millis()).unwrap_or(u64::MAX));
        invocation
    }

    async fn publish_sharded<C>(
        &self,
        conn: &mut C,
        kind: &str,
        payload: &str,
    ) -> Result<EventId, PublishError>
    where
        C: ConnectionLike + Send,
    {
        let raw_id: String = self
            .append(&self.history_script, payload)
            .invoke_async(conn)
            .await?;
        let id: EventId = raw_id.parse().map_err(|_| PublishError::BadId(raw_id))?;
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
