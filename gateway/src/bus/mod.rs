//! The bus: how an event published anywhere reaches the hub of every node,
//! and where the history for resume lives.
//!
//! One trait, two real implementations:
//! - [`local::LocalBus`]: in-process, one node (development, demos). History
//!   is kept in memory with the same semantics as Redis.
//! - [`redis::RedisBus`]: Redis pub/sub between nodes, history in a Redis
//!   stream.
//!
//! Who else is in the cluster is another concern: [`crate::membership`].

pub mod local;
pub mod redis;

use async_trait::async_trait;
use publisher::Item;
use serde_json::value::RawValue;
use shared::{Epoch, EventId, Position};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BusError {
    #[error("the bus is not connected")]
    Unavailable,
    #[error("bus command timed out")]
    Timeout,
    #[error("Redis error: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("Redis pool error: {0}")]
    Pool(String),
    #[error(transparent)]
    Publish(#[from] publisher::PublishError),
    #[error("the history answered in an unexpected shape: {0}")]
    Reply(String),
}

/// How many history entries one read returns: what a replay or a catch-up
/// holds in memory at a time, whatever the history's length.
pub const PAGE: usize = 128;

/// One page of the history after a position, read atomically with the
/// facts that say whether it continues that position exactly.
#[derive(Debug)]
pub struct HistoryPage {
    /// In publish order; each `text` is the frame as it went out live.
    pub events: Vec<ReplayEvent>,
    /// The last stream id read (entries that are no event included): where
    /// the next page starts.
    pub last: Option<EventId>,
    /// Fewer entries than asked for: the read reached its end.
    pub done: bool,
    pub standing: Standing,
}

/// What the history says of the position a read started after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The position is of the current history and every entry after it is
    /// still retained: the page continues it with nothing missing. `top` is
    /// the newest id at the time of the read.
    Intact { top: EventId },
    /// Entries after the position were trimmed, or it lies beyond the
    /// history's end: events are missing.
    Gone,
    /// The position is of another history (Redis restarted empty, the
    /// stream was deleted); `epoch` is the current one, if any.
    OtherEpoch(Option<Epoch>),
}

/// The counters of a history (a Redis stream's `XINFO STREAM`) that decide
/// its [`Standing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    pub length: u64,
    /// Entries ever added (trimmed ones included).
    pub added: u64,
    /// The oldest retained entry (meaningless when `length` is 0).
    pub first: EventId,
    /// The newest id ever assigned.
    pub last: EventId,
    /// The greatest id ever removed: the publish script records each trim
    /// here (`XSETID … MAXDELETEDID`), as `XDEL` does by itself.
    pub max_deleted: EventId,
}

impl StreamInfo {
    /// Whether every entry ever added after `after` is still retained.
    /// Entries are trimmed oldest first and each trim records the newest id
    /// it removed, so this holds exactly when `after` is at or past that id.
    /// A stream trimmed some other way (by hand, with `XTRIM`) records
    /// nothing: then only what the counters prove counts (`after` at or past
    /// the oldest retained entry, or, with none retained, the newest id).
    pub fn standing(&self, epoch: Option<Epoch>, after: Position) -> Standing {
        if epoch != Some(after.epoch) {
            return Standing::OtherEpoch(epoch);
        }
        let retained = if self.added == self.length {
            true
        } else if self.max_deleted != EventId::ZERO {
            after.id >= self.max_deleted
        } else if self.length == 0 {
            after.id == self.last
        } else {
            after.id >= self.first
        };
        if after.id > self.last || !retained {
            Standing::Gone
        } else {
            Standing::Intact { top: self.last }
        }
    }
}

#[derive(Debug)]
pub struct ReplayEvent {
    pub id: EventId,
    pub kind: String,
    pub text: String,
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// `"in-process"` or `"redis"`, for `/ws/status`.
    fn name(&self) -> &'static str;

    /// True while events published anywhere reach this node.
    fn is_ready(&self) -> bool;

    /// Appends an event to the history and delivers it to every node; the
    /// returned position is its place in the history.
    async fn publish(&self, kind: &str, data: &RawValue) -> Result<Position, BusError>;

    /// Appends a batch of events (type, data) to the history in order and
    /// delivers them to every node in that order, in one bus round trip:
    /// atomically (no reader sees part of it) and all or nothing. Every event
    /// is checked first; a bad one refuses the batch
    /// ([`publisher::PublishError::InBatch`] names its index), as does one
    /// over the batch bounds ([`publisher::batch`]). The positions, in order.
    /// Keys: an item's own, else the state rules derive one (`STATE_KEYS`).
    async fn publish_many(&self, events: &[Item<'_, RawValue>]) -> Result<Vec<Position>, BusError>;

    /// Up to `limit` retained events after `after` (and no later than
    /// `until`), in order, with the [`Standing`] of `after` read in the same
    /// atomic step. Events are those of the current history, whatever the
    /// standing.
    async fn read_history(
        &self,
        after: Position,
        until: Option<EventId>,
        limit: usize,
    ) -> Result<HistoryPage, BusError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standing_is_intact_only_when_nothing_after_the_position_was_lost() {
        let e = Epoch(7);
        let at = |ms| Position::new(e, EventId::new(ms, 0));
        let info = |length, added, first, last| StreamInfo {
            length,
            added,
            first: EventId::new(first, 0),
            last: EventId::new(last, 0),
            max_deleted: EventId::ZERO,
        };
        let intact = Standing::Intact {
            top: EventId::new(20, 0),
        };
        // Never trimmed: any position up to the top.
        assert_eq!(info(5, 5, 16, 20).standing(Some(e), at(3)), intact);
        // Trimmed: only from the oldest retained entry on.
        assert_eq!(info(5, 9, 16, 20).standing(Some(e), at(16)), intact);
        assert_eq!(info(5, 9, 16, 20).standing(Some(e), at(15)), Standing::Gone);
        // Beyond the end: not a position this history gave.
        assert_eq!(info(5, 5, 16, 20).standing(Some(e), at(21)), Standing::Gone);
        // Everything trimmed (a quiet period past the TTL): intact only at the top.
        assert_eq!(info(0, 9, 0, 20).standing(Some(e), at(20)), intact);
        assert_eq!(info(0, 9, 0, 20).standing(Some(e), at(19)), Standing::Gone);
        // Another history.
        assert_eq!(
            info(5, 5, 16, 20).standing(Some(Epoch(8)), at(20)),
            Standing::OtherEpoch(Some(Epoch(8)))
        );
        // Trims recorded (the publish script's): exact, even for the very
        // entry trimmed last (a quiet period longer than the TTL).
        let mut recorded = info(1, 2, 20, 20);
        recorded.max_deleted = EventId::new(10, 0);
        assert_eq!(recorded.standing(Some(e), at(10)), intact);
        assert_eq!(recorded.standing(Some(e), at(9)), Standing::Gone);
        let mut emptied = info(0, 2, 0, 20);
        emptied.max_deleted = EventId::new(20, 0);
        assert_eq!(emptied.standing(Some(e), at(20)), intact);
    }
}
