//! The history stream, read: where it stands, one page after a position
//! (atomically with the facts that say whether nothing is missing), and this
//! node's catch-up from it.

use std::time::Duration;

use metrics::counter;
use redis::{AsyncCommands, Value};
use shared::{Epoch, EventId, Position, keys};
use tokio::time::Instant;

use super::{BusError, RedisBus, bounded};
use crate::bus::{HistoryPage, PAGE, ReplayEvent, Standing, StreamInfo};
use crate::hub::Dispatched;
use crate::telemetry::{BUS_CATCHUP_GAPS, BUS_HISTORY_RESETS};

/// The most a catch-up waits, per page, for clients to read what it sent
/// before; a client still that far behind after it is genuinely slow.
const PACE_MAX_WAIT: Duration = Duration::from_millis(250);

static READ_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("read_history.lua")));
/// How long the one read of the whole state may take.
const STATE_LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Keys asked for per `HSCAN` of a state hash.
const STATE_PAGE: usize = 1000;

static ENSURE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("ensure_history.lua")));

impl RedisBus {
    /// Where the shared history stands, creating an empty one (with a new
    /// epoch) if there is none.
    pub(super) async fn ensure_history(&self) -> Result<Position, BusError> {
        let mut conn = self.conn().await?;
        let (epoch, last): (String, String) = bounded(
            ENSURE_SCRIPT
                .key(keys::history_key(self.prefix()))
                .key(keys::epoch_key(self.prefix()))
                .arg(publisher::wire::new_epoch().to_string())
                .invoke_async(&mut conn),
        )
        .await?;
        let epoch: Epoch = epoch
            .parse()
            .map_err(|e: shared::event_id::ParseEpochError| BusError::Reply(e.to_string()))?;
        let last: EventId = last
            .parse()
            .map_err(|e: shared::event_id::ParseEventIdError| BusError::Reply(e.to_string()))?;
        Ok(Position::new(epoch, last))
    }

    /// Loads the keyed state into the hub, current to where the history
    /// stood when the read began ([`Self::read_state`]): the stream after
    /// that point brings everything later, and each key keeps its newest
    /// event. One read of every key, when the node (re)subscribes or finds
    /// the history created anew, never per client.
    pub(super) async fn load_state(&self) -> Result<(), BusError> {
        self.hub.begin_state_load();
        // Its own time limit: 100,000 keys are tens of MB for Redis to send.
        let read = tokio::time::timeout(STATE_LOAD_TIMEOUT, self.read_state())
            .await
            .map_err(|_| BusError::Timeout)
            .and_then(|read| read);
        let (at, events) = read.inspect_err(|_| self.hub.cancel_state_load())?;
        let keys = self.hub.load_state(at.epoch, at.id, &events);
        tracing::info!(keys, "loaded the keyed state");
        Ok(())
    }

    /// Where the history stands ([`Self::ensure_history`]: its epoch and
    /// last id, atomically), then every keyed type's hash, `HSCAN` page by
    /// page: Redis is never held by one long read. Events written meanwhile
    /// are later than that id: the node applies them from the stream too,
    /// keeping each key's newest. (The set of keyed types only grows within
    /// a history, so reading it after the position misses none.)
    async fn read_state(&self) -> Result<(Position, Vec<String>), BusError> {
        let at = self.ensure_history().await?;
        let mut conn = self.conn().await?;
        let kinds: Vec<String> =
            bounded(conn.smembers(keys::keyed_types_key(self.prefix()))).await?;
        let mut events = Vec::new();
        for kind in kinds {
            let hash = keys::state_key(self.prefix(), &kind);
            let mut cursor = 0u64;
            loop {
                let (next, page): (u64, Vec<String>) = bounded(
                    redis::cmd("HSCAN")
                        .arg(&hash)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(STATE_PAGE)
                        .query_async(&mut conn),
                )
                .await?;
                // Field, value, field, value: the values are the events.
                events.extend(page.into_iter().skip(1).step_by(2));
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok((at, events))
    }

    /// One page after `after`, with its standing (see [`crate::bus::Bus::read_history`]).
    pub(super) async fn read_page(
        &self,
        after: Position,
        until: Option<EventId>,
        limit: usize,
    ) -> Result<HistoryPage, BusError> {
        let mut conn = self.conn().await?;
        let reply: Value = bounded(
            READ_SCRIPT
                .key(keys::history_key(self.prefix()))
                .key(keys::epoch_key(self.prefix()))
                .arg(after.id.to_string())
                .arg(until.map_or_else(|| "+".to_owned(), |id| id.to_string()))
                .arg(limit.max(1))
                .invoke_async(&mut conn),
        )
        .await?;
        parse_page(reply, after, limit)
    }

    /// Sends this node's clients what the history holds after `from` and
    /// they have not had (the hub drops what went out already), page by
    /// page, paced so that clients keeping up are never dropped for lagging
    /// behind the catch-up itself. Returns the last position read.
    ///
    /// A gap is counted only when events after `from` really are gone; a
    /// history created anew is followed from its start (and counted), and
    /// its keyed state loaded.
    pub(super) async fn catch_up(&self, from: Position) -> Result<Position, BusError> {
        let (position, adopted) = self.catch_up_only(from).await?;
        if adopted {
            // The new history's state, which its events from the start may
            // no longer all be in the stream for.
            self.load_state().await?;
        }
        Ok(position)
    }

    /// [`Self::catch_up`] without loading the state; also whether it
    /// adopted a new history (the caller then loads it).
    pub(super) async fn catch_up_only(&self, from: Position) -> Result<(Position, bool), BusError> {
        let page_size = PAGE;
        let mut cursor = from;
        let mut until = None;
        let mut first_page = true;
        let mut sent = 0usize;
        let mut adopted = false;
        loop {
            let page = self.read_page(cursor, until, page_size).await?;
            match page.standing {
                Standing::OtherEpoch(Some(epoch)) => {
                    counter!(BUS_HISTORY_RESETS).increment(1);
                    tracing::warn!(
                        old = %cursor.epoch,
                        new = %epoch,
                        "the history was created anew (Redis restarted empty, or the stream was deleted): following the new one from its start"
                    );
                    self.hub.adopt(epoch);
                    adopted = true;
                    cursor = Position::new(epoch, EventId::ZERO);
                    until = None;
                    // What the new history lost before this node joined it is
                    // not a gap of this node's: the reset is counted instead.
                    first_page = false;
                    continue;
                }
                // No history at all (deleted, nothing published since).
                Standing::OtherEpoch(None) => return Ok((cursor, adopted)),
                Standing::Gone if first_page => {
                    counter!(BUS_CATCHUP_GAPS).increment(1);
                    self.hub.state_gap();
                    tracing::warn!(from = %cursor, "the history no longer holds events after this node's last one: its clients missed events");
                }
                Standing::Intact { top } => {
                    until.get_or_insert(top);
                }
                Standing::Gone => {}
            }
            first_page = false;
            for event in &page.events {
                if matches!(
                    self.hub.dispatch(event.text.as_bytes()),
                    Ok(Dispatched::Sent(_))
                ) {
                    sent += 1;
                }
            }
            if let Some(last) = page.last {
                cursor.id = last;
            }
            if page.done {
                break;
            }
            self.pace().await;
        }
        if sent > 0 {
            tracing::info!(sent, "caught up on events the live stream did not bring");
        }
        Ok((cursor, adopted))
    }

    /// Waits (boundedly) until the fan-out has written most of what was
    /// sent, so a long catch-up never outruns it (clients' own slowness is
    /// their budgets' business).
    async fn pace(&self) {
        let deadline = Instant::now() + PACE_MAX_WAIT;
        while self.hub.backlog() > PAGE && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

fn bad(what: &str) -> BusError {
    BusError::Reply(what.to_owned())
}

fn text(value: &Value) -> Option<String> {
    redis::from_redis_value_ref::<String>(value).ok()
}

/// Parses the reply of `read_history.lua`.
fn parse_page(reply: Value, after: Position, limit: usize) -> Result<HistoryPage, BusError> {
    let Value::Array(parts) = reply else {
        return Err(bad("not an array"));
    };
    let [epoch, info, entries] = <[Value; 3]>::try_from(parts).map_err(|_| bad("not 3 parts"))?;
    // An epoch that is no epoch (set by hand) names no history we know.
    let epoch: Option<Epoch> = text(&epoch).and_then(|e| e.parse().ok());
    let info = match info {
        Value::Array(fields) => Some(parse_info(&fields).ok_or_else(|| bad("stream info"))?),
        _ => None,
    };
    let Value::Array(entries) = entries else {
        return Err(bad("entries"));
    };
    let read = entries.len();
    let mut events = Vec::with_capacity(read);
    let mut last = None;
    for entry in entries {
        let Value::Array(entry) = entry else {
            continue;
        };
        let Some(id) = entry.first().and_then(text).and_then(|id| id.parse().ok()) else {
            continue;
        };
        last = Some(id);
        let fields: Vec<String> = entry
            .get(1)
            .and_then(|f| redis::from_redis_value_ref(f).ok())
            .unwrap_or_default();
        if let Some(epoch) = epoch
            && let Some(event) = history_event(Position::new(epoch, id), &fields)
        {
            events.push(event);
        }
    }
    let standing = match (info, epoch) {
        (Some(info), _) => info.standing(epoch, after),
        (None, _) => Standing::OtherEpoch(None),
    };
    Ok(HistoryPage {
        events,
        last,
        done: read < limit.max(1),
        standing,
    })
}

fn parse_info(fields: &[Value]) -> Option<StreamInfo> {
    let number = |i: usize| redis::from_redis_value_ref::<u64>(fields.get(i)?).ok();
    let id = |i: usize| text(fields.get(i)?)?.parse::<EventId>().ok();
    Some(StreamInfo {
        length: number(0)?,
        added: number(1)?,
        first: id(2)?,
        last: id(3)?,
        max_deleted: id(4)?,
    })
}

fn history_event(position: Position, fields: &[String]) -> Option<ReplayEvent> {
    let envelope = fields
        .chunks(2)
        .find(|pair| pair[0] == publisher::wire::HISTORY_FIELD)
        .and_then(|pair| pair.get(1))?;
    let text = shared::insert_id(envelope, position)?;
    let decoded = shared::envelope::decode(text.as_bytes(), chrono::Utc::now()).ok()?;
    Some(ReplayEvent {
        id: position.id,
        kind: decoded.kind,
        text,
    })
}
