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

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use metrics::{Counter, counter};
use serde_json::value::RawValue;
use shared::envelope::{ENVELOPE_GROWTH, IdField};
use shared::{DecodeError, Epoch, EventId, Position, TypeFilter, kind};
use thiserror::Error;
use tokio::time::Instant;

use crate::bus::{Bus, ReplayEvent};
use crate::fanout::{Shard, Subscriber, concat};
use crate::ring::{Read, Ring};
use crate::telemetry::{
    self, BROADCAST_LATENCY, BUS_INVALID_PAYLOADS, BUS_REJECTED_IDS, MESSAGES_SENT,
};
use crate::transport::Encoding;
use crate::transport::outbox::{Budget, Outbox};

/// How far ahead of this node's clock a history id may be: history ids are
/// Redis's clock in ms, so anything further ahead was not assigned by it.
const MAX_CLOCK_AHEAD: Duration = Duration::from_secs(60);
/// How much of an untrusted payload a log line shows (escaped).
const LOG_PREVIEW: usize = 120;

/// One event as the node delivers it: its envelope, where it stands, and
/// its encodings, each made once per node (the WebSocket one at dispatch,
/// the others the first time a subscriber of theirs needs it).
#[derive(Debug)]
pub struct Event {
    /// The envelope as a WebSocket text frame (header and payload): the
    /// encoding most clients take, made at dispatch; [`Self::text`] is a
    /// slice of it.
    plain: Bytes,
    /// Where the envelope starts in `plain` (after the frame header).
    text_at: u8,
    /// The other encodings, by [`Encoding::slot`], made on first use.
    encoded: [OnceLock<Bytes>; Encoding::COUNT],
    /// This node's running number of the event: where a client moves from
    /// the ring to the fan-out.
    pub seq: u64,
    pub kind: String,
    /// The position the history gave it (`None`: live-only).
    pub position: Option<Position>,
    /// The position's id, compared on every delivery.
    pub id: Option<EventId>,
    pub published_at: DateTime<Utc>,
    /// `gateway_messages_sent_total{type}`, looked up once per event.
    pub sent: Counter,
}

impl Event {
    /// An event read back from the history (a shard's recovery), numbered
    /// `seq`.
    pub(crate) fn of_history(event: &ReplayEvent, epoch: Epoch, seq: u64) -> Self {
        let position = Position::new(epoch, event.id);
        Self {
            seq,
            ..Self::new(&event.text, event.kind.clone(), Some(position), Utc::now())
        }
    }

    fn new(
        text: &str,
        kind: String,
        position: Option<Position>,
        published_at: DateTime<Utc>,
    ) -> Self {
        let plain = Encoding::WebSocket.encode(text, position);
        Self {
            sent: counter!(MESSAGES_SENT, "type" => telemetry::type_label(&kind)),
            text_at: (plain.len() - text.len()) as u8,
            plain,
            encoded: Default::default(),
            seq: 0,
            kind,
            position,
            id: position.map(|p| p.id),
            published_at,
        }
    }

    /// The envelope (JSON).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.plain[usize::from(self.text_at)..]).expect("built from a str")
    }

    /// The event in `encoding`: made the first time it is asked for, then
    /// the same bytes for every subscriber of that encoding.
    pub fn wire(&self, encoding: Encoding) -> &Bytes {
        match encoding {
            Encoding::WebSocket => &self.plain,
            // Too short to compress: the plain frame itself, not a copy.
            Encoding::Deflate { min } if self.plain.len() - usize::from(self.text_at) < min => {
                &self.plain
            }
            other => {
                self.encoded[other.slot()].get_or_init(|| other.encode(self.text(), self.position))
            }
        }
    }

    /// Bytes the ring counts for it: its plain encoding (the other
    /// encodings, when made, are about that size again each).
    pub fn weight(&self) -> usize {
        self.plain.len()
    }
}

#[cfg(test)]
impl Event {
    pub fn for_test(seq: u64, kind: &str, id: Option<EventId>, text: &str) -> Self {
        let position = id.map(|id| Position::new(Epoch(0), id));
        Self {
            seq,
            ..Self::new(text, kind.to_owned(), position, Utc::now())
        }
    }
}

/// The latest `analytics_update`, kept to greet new connections.
#[derive(Debug)]
pub struct Snapshot {
    data: Box<RawValue>,
    published_at: DateTime<Utc>,
}

impl Snapshot {
    /// The greeting frame: the snapshot's data, carrying `position` as its
    /// id (the history position the snapshot is current to, so a client that
    /// has seen nothing else can still resume from there).
    pub fn frame(snapshot: Option<&Snapshot>, position: Option<Position>) -> String {
        let (data, at): (&RawValue, _) = match snapshot {
            Some(s) => (&s.data, s.published_at),
            None => (&EMPTY_OBJECT, Utc::now()),
        };
        match position {
            Some(id) => shared::encode_with_id(id, kind::ANALYTICS_UPDATE, data, at),
            None => shared::encode(kind::ANALYTICS_UPDATE, data, at),
        }
    }
}

static EMPTY_OBJECT: std::sync::LazyLock<Box<RawValue>> =
    std::sync::LazyLock::new(|| RawValue::from_string("{}".to_owned()).expect("valid JSON"));

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
}

/// What [`Hub::dispatch`] did with a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    Sent(Option<EventId>),
    /// Its id was at or before one already sent (a reconnect's catch-up
    /// overlapping the live stream): dropped so nobody sees it twice.
    Duplicate,
}

/// Why a bus payload reached no client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Dropped {
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    #[error("payload is {0} bytes, over MAX_EVENT_BYTES")]
    TooLarge(usize),
}

impl Dropped {
    fn label(&self) -> &'static str {
        match self {
            Dropped::Malformed(_) => "malformed",
            Dropped::TooLarge(_) => "too_large",
        }
    }
}

/// Why an `id` was not trusted (the `reason` of `gateway_bus_rejected_ids_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Untrusted {
    /// Not a position at all.
    Malformed,
    /// Another history's epoch (or none known yet).
    ForeignEpoch,
    /// Later than the history's clock could have made it.
    Future,
}

impl Untrusted {
    fn label(self) -> &'static str {
        match self {
            Untrusted::Malformed => "malformed",
            Untrusted::ForeignEpoch => "foreign_epoch",
            Untrusted::Future => "future",
        }
    }
}

impl Hub {
    /// `ring_bytes`: `RING_BYTES`, what the ring may hold.
    /// `max_event_bytes`: `MAX_EVENT_BYTES`.
    pub fn new(ring_bytes: usize, arrival: Arrival, max_event_bytes: usize) -> Self {
        let state = State {
            recent: (arrival == Arrival::Unordered).then(Recent::default),
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
        }
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
        let state = self.state();
        Joined {
            position: state.position(),
            analytics: state.analytics.clone(),
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

    /// Starts at `position` if the node knows no history yet (a node
    /// learning where the shared history stands when it first subscribes).
    pub fn init(&self, position: Position) {
        let mut state = self.state();
        if state.epoch.is_none() {
            state.epoch = Some(position.epoch);
            state.head = Some(position.id);
        }
    }

    /// Follows a history created anew: its ids start over, so nothing sent
    /// under the old epoch counts as a duplicate any more.
    pub fn adopt(&self, epoch: Epoch) {
        let mut state = self.state();
        state.epoch = Some(epoch);
        state.head = None;
        if let Some(recent) = &mut state.recent {
            *recent = Recent::default();
        }
        state.analytics_id = None;
    }

    /// True (once) when a payload named an epoch other than the node's
    /// since the last call: the history may have been created anew.
    pub fn take_foreign_epoch_seen(&self) -> bool {
        self.foreign_epoch_seen.swap(false, Ordering::Relaxed)
    }

    /// Decodes one bus payload and sends it to every subscriber. Malformed
    /// or oversized payloads are counted, logged (escaped) and dropped: they
    /// never reach a client. An `id` the history did not assign is taken out.
    pub fn dispatch(&self, payload: &[u8]) -> Result<Dispatched, Dropped> {
        self.try_dispatch(payload).inspect_err(|err| {
            counter!(BUS_INVALID_PAYLOADS, "reason" => err.label()).increment(1);
            tracing::warn!(%err, payload = ?preview(payload), "dropped a bus payload");
        })
    }

    fn try_dispatch(&self, payload: &[u8]) -> Result<Dispatched, Dropped> {
        if payload.len() > self.max_payload {
            return Err(Dropped::TooLarge(payload.len()));
        }
        let mut decoded = shared::envelope::decode(payload, Utc::now())?;
        let verdict = match decoded.id {
            IdField::Absent => Ok(None),
            IdField::Position(p) => self.state().trust(p).map(|()| Some(p)),
            IdField::Malformed => Err(Untrusted::Malformed),
        };
        let trusted = match verdict {
            Ok(id) => id,
            Err(why) => {
                decoded.text = self.untrusted(why, payload, &decoded.text)?;
                None
            }
        };
        let snapshot = (decoded.kind == kind::ANALYTICS_UPDATE)
            .then(|| snapshot_of(&decoded.text, decoded.published_at))
            .flatten();
        let mut frame = Event::new(&decoded.text, decoded.kind, trusted, decoded.published_at);
        let mut state = self.state();
        if let Some(id) = frame.id {
            let fresh = match &mut state.recent {
                Some(recent) => recent.insert(id),
                None => state.head.is_none_or(|head| id > head),
            };
            if !fresh {
                return Ok(Dispatched::Duplicate);
            }
            state.head = state.head.max(Some(id));
        }
        // Out of order, an older analytics event must not replace a newer one.
        if snapshot.is_some() && (frame.id.is_none() || frame.id >= state.analytics_id) {
            state.analytics = snapshot.map(Arc::new);
            state.analytics_id = frame.id.or(state.analytics_id);
        }
        frame.seq = state.next_seq;
        state.next_seq += 1;
        let id = frame.id;
        // Under the state lock: ring order is `seq` order.
        self.ring.push(Arc::new(frame));
        Ok(Dispatched::Sent(id))
    }

    /// Counts and logs an untrusted id; the frame text without it.
    fn untrusted(&self, why: Untrusted, payload: &[u8], text: &str) -> Result<String, Dropped> {
        counter!(BUS_REJECTED_IDS, "reason" => why.label()).increment(1);
        if why == Untrusted::ForeignEpoch {
            self.foreign_epoch_seen.store(true, Ordering::Relaxed);
        }
        tracing::warn!(
            reason = why.label(),
            payload = ?preview(payload),
            "a bus payload carried an id the history did not assign; sent live-only without it"
        );
        shared::envelope::strip_id(text).ok_or(Dropped::Malformed(DecodeError::NotAnObject))
    }

    /// Replaces the analytics snapshot (a node loading the shared one). One
    /// over the size limit is ignored: it would greet every client.
    pub fn set_snapshot(&self, payload: &str) {
        if payload.len() > self.max_payload {
            counter!(BUS_INVALID_PAYLOADS, "reason" => "too_large").increment(1);
            tracing::warn!(
                bytes = payload.len(),
                "ignored an analytics snapshot over MAX_EVENT_BYTES"
            );
            return;
        }
        if let Ok(decoded) = shared::envelope::decode(payload.as_bytes(), Utc::now())
            && let Some(snapshot) = snapshot_of(&decoded.text, decoded.published_at)
        {
            self.state().analytics = Some(Arc::new(snapshot));
        }
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

    /// Whether `p` can have been assigned by the history the node follows.
    fn trust(&self, p: Position) -> Result<(), Untrusted> {
        if self.epoch != Some(p.epoch) {
            return Err(Untrusted::ForeignEpoch);
        }
        let now_ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        if p.id.ms > now_ms + MAX_CLOCK_AHEAD.as_millis() as u64 {
            return Err(Untrusted::Future);
        }
        Ok(())
    }
}

/// The start of an untrusted payload, for a log line: shown with `?`, so
/// quotes, newlines and control characters are escaped and cannot forge a
/// line of their own.
pub fn preview(payload: &[u8]) -> String {
    let end = payload.len().min(LOG_PREVIEW);
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

fn snapshot_of(text: &str, published_at: DateTime<Utc>) -> Option<Snapshot> {
    let parts = shared::envelope::parts(text).ok()?;
    let data = match parts.data {
        Some(data) => data.to_owned(),
        None => RawValue::NULL.to_owned(),
    };
    Some(Snapshot { data, published_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: Epoch = Epoch(0xabcdef01);

    /// A reader of the ring from where a client would join now.
    struct Rx<'a>(&'a Hub, u64);

    impl Rx<'_> {
        fn try_recv(&mut self) -> Result<Arc<Event>, ()> {
            let frame = self.0.frames_since(self.1).into_iter().next().ok_or(())?;
            self.1 = frame.seq + 1;
            Ok(frame)
        }
    }

    fn rx(hub: &Hub) -> Rx<'_> {
        Rx(hub, hub.subscribe().next_seq)
    }

    fn hub(arrival: Arrival) -> Hub {
        let hub = Hub::new(1 << 20, arrival, 1024);
        hub.init(Position::new(EPOCH, EventId::ZERO));
        hub
    }

    fn payload(id: Option<&str>, kind: &str, data: &str) -> String {
        let id = id
            .map(|id| format!("\"id\":\"{EPOCH}:{id}\","))
            .unwrap_or_default();
        format!(r#"{{{id}"type":"{kind}","data":{data},"timestamp":"2026-11-25T10:00:00.000Z"}}"#)
    }

    #[test]
    fn every_subscriber_gets_the_same_shared_frame() {
        let hub = hub(Arrival::InOrder);
        let mut a = rx(&hub);
        let mut b = rx(&hub);
        hub.dispatch(payload(None, "alert", "{}").as_bytes())
            .unwrap();
        let (fa, fb) = (a.try_recv().unwrap(), b.try_recv().unwrap());
        assert!(Arc::ptr_eq(&fa, &fb), "one frame per event, not per client");
        assert_eq!(fa.kind, "alert");
    }

    #[test]
    fn each_encoding_of_an_event_is_made_once_and_shared() {
        let hub = hub(Arrival::InOrder);
        let mut rx = rx(&hub);
        let data = format!("{{\"note\":\"{}\"}}", "row ".repeat(100));
        hub.dispatch(payload(Some("5-0"), "metrics_update", &data).as_bytes())
            .unwrap();
        let event = rx.try_recv().unwrap();
        let deflate = Encoding::Deflate { min: 256 };
        for encoding in [Encoding::WebSocket, deflate, Encoding::Sse] {
            let (first, again) = (event.wire(encoding), event.wire(encoding));
            assert_eq!(first.as_ptr(), again.as_ptr(), "{encoding:?}: built once");
        }
        assert_eq!(event.wire(deflate)[0], 0xC1, "compressed: FIN, RSV1, text");
        let small = Encoding::Deflate { min: 100_000 };
        assert_eq!(
            event.wire(small).as_ptr(),
            event.wire(Encoding::WebSocket).as_ptr(),
            "under the minimum: the plain frame itself"
        );
        assert!(event.wire(deflate).len() < event.wire(Encoding::WebSocket).len() / 2);
        let sse = std::str::from_utf8(event.wire(Encoding::Sse)).unwrap();
        assert!(
            sse.starts_with(&format!("id: {EPOCH}:5-0\ndata: {{")),
            "{sse}"
        );
        assert_eq!(
            &sse[sse.find("data: ").unwrap() + 6..sse.len() - 2],
            event.text()
        );
    }

    #[test]
    fn ids_at_or_before_the_head_are_dropped_as_duplicates() {
        let hub = hub(Arrival::InOrder);
        let mut rx = rx(&hub);
        let first = payload(Some("10-0"), "alert", "1");
        assert!(matches!(
            hub.dispatch(first.as_bytes()),
            Ok(Dispatched::Sent(Some(_)))
        ));
        assert_eq!(hub.dispatch(first.as_bytes()), Ok(Dispatched::Duplicate));
        assert_eq!(
            hub.dispatch(payload(Some("9-5"), "alert", "2").as_bytes()),
            Ok(Dispatched::Duplicate)
        );
        hub.dispatch(payload(None, "raw", "3").as_bytes()).unwrap();
        assert_eq!(rx.try_recv().unwrap().id, Some(EventId::new(10, 0)));
        assert_eq!(rx.try_recv().unwrap().kind, "raw");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn an_id_the_history_did_not_assign_moves_nothing_and_never_reaches_a_client() {
        let hub = hub(Arrival::InOrder);
        let mut rx = rx(&hub);
        let forged = [
            r#"{"id":"99999999999999-0","type":"alert","data":{}}"#.to_owned(),
            r#"{"id":"01234567:99999999999999-0","type":"alert","data":{}}"#.to_owned(),
            payload(Some("99999999999999-0"), "alert", "{}"),
            r#"{"id":{"x":1},"type":"alert","data":{}}"#.to_owned(),
        ];
        for text in &forged {
            assert_eq!(
                hub.dispatch(text.as_bytes()),
                Ok(Dispatched::Sent(None)),
                "{text}"
            );
            let frame = rx.try_recv().unwrap();
            assert_eq!(frame.id, None);
            let value: serde_json::Value = serde_json::from_str(frame.text()).unwrap();
            assert!(
                value.get("id").is_none(),
                "sent live-only: {}",
                frame.text()
            );
        }
        assert_eq!(hub.position(), Some(Position::new(EPOCH, EventId::ZERO)));
        assert!(hub.take_foreign_epoch_seen(), "another epoch was named");
        let real = payload(Some("10-0"), "alert", "{}");
        assert_eq!(
            hub.dispatch(real.as_bytes()),
            Ok(Dispatched::Sent(Some(EventId::new(10, 0)))),
            "later events still go out"
        );
    }

    #[test]
    fn an_oversized_payload_is_dropped() {
        let hub = hub(Arrival::InOrder);
        let big = payload(None, "alert", &format!("\"{}\"", "x".repeat(2000)));
        assert!(matches!(
            hub.dispatch(big.as_bytes()),
            Err(Dropped::TooLarge(_))
        ));
        hub.set_snapshot(&payload(
            None,
            "analytics_update",
            &format!("\"{}\"", "x".repeat(2000)),
        ));
        assert!(
            hub.subscribe().analytics.is_none(),
            "never a greeting over the limit"
        );
    }

    #[test]
    fn a_new_subscriber_sees_the_latest_analytics_and_position() {
        let hub = hub(Arrival::InOrder);
        let greeting: serde_json::Value =
            serde_json::from_str(&Snapshot::frame(None, None)).unwrap();
        assert_eq!(greeting["data"], serde_json::json!({}));
        hub.dispatch(payload(Some("5-0"), "analytics_update", r#"{"total_tutors":7}"#).as_bytes())
            .unwrap();
        hub.dispatch(payload(Some("6-0"), "alert", "{}").as_bytes())
            .unwrap();
        let sub = hub.subscribe();
        assert_eq!(sub.position.unwrap().to_string(), "abcdef01:6-0");
        let greeting: serde_json::Value =
            serde_json::from_str(&Snapshot::frame(sub.analytics.as_deref(), sub.position)).unwrap();
        assert_eq!(greeting["data"]["total_tutors"], 7);
        assert_eq!(greeting["id"], "abcdef01:6-0");
    }

    #[test]
    fn out_of_order_arrival_keeps_late_events_and_drops_repeats() {
        let hub = hub(Arrival::Unordered);
        let mut rx = rx(&hub);
        for id in ["10-0", "9-0", "10-0", "11-0", "9-0"] {
            let _ = hub.dispatch(payload(Some(id), "alert", "1").as_bytes());
        }
        let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|f| f.id.unwrap().to_string())
            .collect();
        assert_eq!(
            got,
            ["10-0", "9-0", "11-0"],
            "a late event still goes out, a repeat never"
        );
        hub.dispatch(payload(Some("12-0"), "analytics_update", r#"{"v":"new"}"#).as_bytes())
            .unwrap();
        hub.dispatch(payload(Some("8-0"), "analytics_update", r#"{"v":"old"}"#).as_bytes())
            .unwrap();
        let greeting: serde_json::Value =
            serde_json::from_str(&Snapshot::frame(hub.subscribe().analytics.as_deref(), None))
                .unwrap();
        assert_eq!(
            greeting["data"]["v"], "new",
            "the newest analytics by id stays the snapshot"
        );
    }

    #[test]
    fn malformed_payloads_never_reach_a_subscriber() {
        let hub = hub(Arrival::InOrder);
        let mut rx = rx(&hub);
        assert!(hub.dispatch(b"{not json").is_err());
        assert!(hub.dispatch(b"{\"data\":1}").is_err());
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_log_preview_of_hostile_bytes_cannot_forge_a_line() {
        let line = format!("{:?}", preview(b"ok\n2026-11-25 INFO forged\x1b[31m\xff"));
        assert!(!line.contains('\n') && !line.contains('\x1b'), "{line}");
    }
}
