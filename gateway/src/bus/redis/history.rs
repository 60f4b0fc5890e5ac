//! The history stream, read: its top, what follows an id, and this node's
//! catch-up from it.

use chrono::Utc;
use metrics::counter;
use shared::{EventId, keys};
use tokio::time::timeout;

use super::{BusError, PAGE, REDIS_TIMEOUT, RedisBus, bounded};
use crate::bus::{Replay, ReplayEvent};
use crate::hub::Dispatched;
use crate::telemetry::BUS_CATCHUP_GAPS;

impl RedisBus {
    /// The newest id in the history, if any.
    pub(super) async fn top(&self) -> Result<Option<EventId>, BusError> {
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

    /// Sends this node's clients what the history holds after `from` and
    /// they have not had (the hub drops what went out already). Returns the
    /// last id read.
    pub(super) async fn catch_up(&self, from: EventId) -> Result<EventId, BusError> {
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
    pub(super) async fn range_after(
        &self,
        since: EventId,
        everything: bool,
    ) -> Result<Replay, BusError> {
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
