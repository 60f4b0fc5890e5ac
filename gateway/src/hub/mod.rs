//! The hub: where bus payloads become events, once per event, and fan out.
//!
//! A payload is decoded and validated here exactly once per node; the
//! [`Event`] it becomes carries its encodings (the WebSocket frame made
//! here, the compressed frame and the SSE record made on first use), each
//! shared (reference-counted bytes) by every client of it, so fan-out costs
//! no serialization and no copy per client.
//!
//! Positions come from the history alone: an `id` is trusted only when it
//! carries the current history's epoch and is not from the future. Any other
//! `id` is taken out of the frame (the event still goes out, live-only) and
//! counted, so no payload on the bus can make the node skip later events or
//! hand a client a position the history does not hold. Payloads larger than
//! `MAX_EVENT_BYTES` (plus the id the history adds) are dropped and counted.
//!
//! Each event is framed once per encoding (server frames are unmasked, so
//! the bytes are the same for every client of an encoding) and appended to
//! the node's [`Ring`]. Live clients get it from [`crate::fanout`], written
//! straight to their sockets without waiting for any of them; a client still
//! being greeted or replayed is only a sequence number in the ring, and
//! moves over to the fan-out when it goes live ([`Hub::go_live`]), taking
//! what arrived meanwhile. A slow or dead client never delays the others:
//! its outbox has a budget of bytes and age (`transport::outbox`).

use shared::envelope::ENVELOPE_GROWTH;
use shared::{Epoch, EventId, Position, TypeFilter};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::time::Instant;

use crate::bus::Bus;
use crate::fanout::{Shard, Subscriber, concat};
use crate::ring::{Read, Ring};
use crate::telemetry::BROADCAST_LATENCY;
use crate::transport::Encoding;
use crate::transport::outbox::{Budget, Outbox};

mod event;
mod intake;
mod keyed;

pub use self::event::{Event, Snapshot};
pub use self::intake::Dispatched;
use self::keyed::Keyed;
pub use self::keyed::View;

/// How events arrive from the bus, which decides what counts as a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// One Redis (or in-process): in id order. Anything at or before the
    /// head was sent already.
    InOrder,
    /// Redis Cluster: each type's channel lives on its own shard, so events
    /// of different types can arrive out of id order, and the history is
    /// re-read to catch lost publishes. The ids seen recently are remembered.
    Unordered,
}

/// How many recent ids an [`Arrival::Unordered`] hub remembers (about 1 MiB).
const RECENT_IDS: usize = 65_536;

#[derive(Debug, Default)]
struct Recent {
    order: VecDeque<EventId>,
    set: HashSet<EventId>,
    /// The newest id ever forgotten: anything at or before it is too old to
    /// tell, and is dropped.
    floor: Option<EventId>,
}

impl Recent {
    /// Remembers `id`; false if it was seen (or is too old to tell).
    fn insert(&mut self, id: EventId) -> bool {
        if self.floor.is_some_and(|floor| id <= floor) || !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT_IDS {
            let forgotten = self.order.pop_front().expect("not empty");
            self.set.remove(&forgotten);
            self.floor = self.floor.max(Some(forgotten));
        }
        true
    }
}

#[derive(Debug, Default)]
struct State {
    /// The history's epoch the ids below belong to; `None` until the bus
    /// has read it.
    epoch: Option<Epoch>,
    /// The greatest id sent so far.
    head: Option<EventId>,
    /// `Some` for [`Arrival::Unordered`].
    recent: Option<Recent>,
    analytics: Option<Arc<Snapshot>>,
    analytics_id: Option<EventId>,
    /// The latest event per key of each type (`?state=1`).
    keyed: Keyed,
    /// Cancelled (and replaced) when the state changed in a way the live
    /// stream did not carry (a new history, a catch-up gap): the clients
    /// sent `state` before then reconnect for it.
    state_reset: tokio_util::sync::CancellationToken,
    /// The `seq` of the next frame.
    next_seq: u64,
}

/// A client's view at the moment it joined: everything after `position`
/// is in the ring from `next_seq` on.
#[derive(Debug)]
pub struct Joined {
    /// The position of the last event sent before `next_seq`.
    pub position: Option<Position>,
    pub analytics: Option<Arc<Snapshot>>,
    /// The keyed state at that moment, when asked for
    /// ([`Hub::subscribe_with_state`]). Not kept otherwise: a view held
    /// makes the next update of every map it shares copy its path.
    pub state: Option<View>,
    /// The position `state` is current to: `position`, or later when the
    /// node loaded the state from a history that was ahead of it (the live
    /// stream then brings events up to it that the state holds already).
    pub state_position: Option<Position>,
    /// What a client sent `state` takes from the ring: every event after
    /// its place with an id after this. In id order (one Redis) that is
    /// `state_position`; on a Redis Cluster, where an event can reach the
    /// node after later ones, it is where the state was loaded from Redis
    /// (the view holds everything at or before that, and everything the
    /// node dispatched before the client joined).
    pub state_seam: EventId,
    /// With `state`: cancelled when that state stops being one the live
    /// stream continues.
    pub state_reset: Option<tokio_util::sync::CancellationToken>,
    /// The `seq` of the first frame the client has not had.
    pub next_seq: u64,
}

/// A client on the fan-out; leaves it when dropped.
#[derive(Debug)]
pub struct Live {
    shard: Arc<Shard>,
    key: usize,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.shard.registry().remove(self.key);
    }
}

/// The bus, as the fan-out's source of what it fell behind for.
struct History(OnceLock<Arc<dyn Bus>>);

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "History(attached)"
        } else {
            "History(none)"
        })
    }
}

/// What a client about to go live had not had is gone from the ring (its
/// greeting and replay took longer than the ring keeps events): it reads
/// the history again from where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind;

#[derive(Debug)]
pub struct Hub {
    ring: Arc<Ring>,
    state: Mutex<State>,
    /// The fan-out's shards, started by the first client to go live (inside
    /// the runtime; a hub used without clients needs none).
    shards: OnceLock<Vec<Arc<Shard>>>,
    /// Where the next live client goes (round robin).
    next_shard: AtomicUsize,
    /// Where shards read what they fell too far behind to get from the
    /// ring (set once the bus exists).
    history: History,
    /// How far behind a live client may fall (`CLIENT_BUFFER_BYTES`,
    /// `WRITE_TIMEOUT_MS`).
    budget: Budget,
    /// `MAX_EVENT_BYTES`.
    max_event_bytes: usize,
    /// Largest payload accepted from the bus: the limit plus the id the
    /// history adds.
    max_payload: usize,
    /// Set when a payload named another epoch: the bus should check whether
    /// the history was created anew.
    foreign_epoch_seen: AtomicBool,
    /// `STATE_TTL_SECS`: keys whose latest event is older are not current.
    state_ttl: std::time::Duration,
}

impl Hub {
    /// `ring_bytes`: `RING_BYTES`, what the ring may hold.
    /// `max_event_bytes`: `MAX_EVENT_BYTES`.
    pub fn new(ring_bytes: usize, arrival: Arrival, max_event_bytes: usize) -> Self {
        let unordered = arrival == Arrival::Unordered;
        let state = State {
            recent: unordered.then(Recent::default),
            keyed: if unordered {
                Keyed::remembering_removals(RECENT_IDS)
            } else {
                Keyed::default()
            },
            ..State::default()
        };
        Self {
            ring: Arc::new(Ring::new(ring_bytes, shard_count())),
            state: Mutex::new(state),
            shards: OnceLock::new(),
            next_shard: AtomicUsize::new(0),
            history: History(OnceLock::new()),
            budget: Budget::default(),
            max_event_bytes,
            max_payload: max_event_bytes + ENVELOPE_GROWTH,
            foreign_epoch_seen: AtomicBool::new(false),
            state_ttl: std::time::Duration::from_secs(shared::state::DEFAULT_STATE_TTL_SECS),
        }
    }

    /// Keys whose latest event is older than `ttl` are not current
    /// (`STATE_TTL_SECS`; zero: no age limit).
    pub fn with_state_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.state_ttl = ttl;
        self
    }

    pub fn state_ttl(&self) -> std::time::Duration {
        self.state_ttl
    }

    /// How far behind a live client may fall (the default: 4 MiB, 10 s).
    pub fn with_client_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// Where the fan-out recovers what it fell too far behind for (the
    /// node's bus; set once, after the bus is made with this hub).
    pub fn attach_history(&self, bus: Arc<dyn Bus>) {
        let _ = self.history.0.set(bus);
    }

    pub(crate) fn history(&self) -> Option<Arc<dyn Bus>> {
        self.history.0.get().cloned()
    }

    /// How many events the slowest shard has yet to write: what a catch-up
    /// paces itself by, so it never outruns the fan-out.
    pub fn backlog(&self) -> usize {
        self.ring.backlog()
    }

    /// The fan-out's shards: one per core the runtime may use, started on
    /// first use.
    fn shards(self: &Arc<Self>) -> &[Arc<Shard>] {
        self.shards.get_or_init(|| {
            let latency = metrics::histogram!(BROADCAST_LATENCY);
            let start = self.ring.next_seq();
            let last_id = self.position().map(|p| p.id);
            (0..shard_count())
                .map(|i| {
                    let shard =
                        Arc::new(Shard::new(self.ring.cursor(i), start, last_id, self.budget));
                    // Holds no `Hub`: the task ends when the hub is gone.
                    tokio::spawn(shard.clone().run(
                        self.ring.clone(),
                        Arc::downgrade(self),
                        latency.clone(),
                    ));
                    shard
                })
                .collect()
        })
    }

    /// Moves a client that joined at `next_seq` to the fan-out: what the
    /// ring took in since then and its shard has written already is written
    /// to `outbox` first, then the shard takes over from the next frame.
    /// Under the shard's lock, so the shard writes nothing to it in between:
    /// everything arrives once, in order.
    pub fn go_live(
        self: &Arc<Self>,
        next_seq: u64,
        outbox: Arc<Outbox>,
        encoding: Encoding,
        filter: &TypeFilter,
        seam: EventId,
    ) -> Result<Live, Behind> {
        let shards = self.shards();
        let shard = shards[self.next_shard.fetch_add(1, Ordering::Relaxed) % shards.len()].clone();
        let mut registry = shard.registry();
        let upto = registry.next;
        let subscriber = Subscriber::new(outbox, encoding, filter, seam, next_seq);
        let mut from = next_seq;
        while from < upto {
            let frames = match self.ring.read(from, crate::fanout::BATCH_BYTES) {
                Read::Events(frames) => frames,
                Read::Gone { .. } => return Err(Behind),
            };
            let frames: Vec<_> = frames.into_iter().take_while(|f| f.seq < upto).collect();
            let Some(last) = frames.last() else { break };
            from = last.seq + 1;
            let wanted = || frames.iter().filter(|f| subscriber.wants(f));
            if let Some(bytes) = concat(wanted(), encoding) {
                subscriber
                    .outbox
                    .push_broadcast(&bytes, Instant::now(), &self.budget);
            }
            for frame in wanted() {
                frame.sent.increment(1);
            }
        }
        let key = registry.insert(Subscriber {
            from_seq: upto.max(next_seq),
            ..subscriber
        });
        drop(registry);
        Ok(Live { shard, key })
    }

    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The lock guards plain data and no code under it panics; a poisoned
        // lock still holds consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins the stream. Taken under the same lock `dispatch` holds, so
    /// `position` and `analytics` are exactly what was sent before
    /// `next_seq`.
    pub fn subscribe(&self) -> Joined {
        self.join(false)
    }

    /// The same, with a view of the keyed state as of that moment.
    pub fn subscribe_with_state(&self) -> Joined {
        self.join(true)
    }

    fn join(&self, with_state: bool) -> Joined {
        let state = self.state();
        let position = state.position();
        let state_position = position.map(|p| Position {
            id: p.id.max(state.keyed.floor().unwrap_or(EventId::ZERO)),
            ..p
        });
        let floor = state.keyed.floor().unwrap_or(EventId::ZERO);
        let state_seam = match &state.recent {
            Some(_) => floor,
            None => state_position.map_or(EventId::ZERO, |p| p.id),
        };
        Joined {
            position,
            analytics: state.analytics.clone(),
            state: with_state.then(|| state.keyed.view()),
            state_position,
            state_seam,
            state_reset: with_state.then(|| state.state_reset.clone()),
            next_seq: state.next_seq,
        }
    }

    /// The frames from `seq` on that the ring still holds (tests).
    #[cfg(test)]
    pub fn frames_since(&self, seq: u64) -> Vec<Arc<Event>> {
        self.frames_since_checked(seq).expect("still in the ring")
    }

    /// The same, `None` when the ring no longer starts at or before `seq`.
    #[cfg(test)]
    pub fn frames_since_checked(&self, seq: u64) -> Option<Vec<Arc<Event>>> {
        match self.ring.read(seq, usize::MAX) {
            Read::Events(frames) => Some(frames),
            Read::Gone { .. } => None,
        }
    }

    /// The position of the last event sent (or where the history stood
    /// when the node joined it).
    pub fn position(&self) -> Option<Position> {
        self.state().position()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // Wakes the shards waiting for events: they see the hub gone, and end.
        self.ring.appended.notify_waiters();
    }
}

/// One shard per core the runtime may use.
fn shard_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl State {
    fn position(&self) -> Option<Position> {
        let epoch = self.epoch?;
        Some(Position::new(epoch, self.head.unwrap_or(EventId::ZERO)))
    }
}

#[cfg(test)]
mod tests;
