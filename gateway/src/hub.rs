//! The hub: where bus payloads become frames, once per event, and fan out.
//!
//! A payload is decoded and validated here exactly once per node; the text
//! frame it becomes is shared (reference-counted bytes) by every client, so
//! fan-out costs no serialization and no copy per client.
//!
//! Positions come from the history alone: an `id` is trusted only when it
//! carries the current history's epoch and is not from the future. Any other
//! `id` is taken out of the frame (the event still goes out, live-only) and
//! counted, so no payload on the bus can make the node skip later events or
//! hand a client a position the history does not hold. Payloads larger than
//! `MAX_EVENT_BYTES` (plus the id the history adds) are dropped and counted.
//!
//! Each event is framed once (WebSocket header and payload: server frames
//! are unmasked, so the bytes are the same for every client). Live clients
//! get it from [`crate::fanout`], written straight to their sockets without
//! waiting for any of them; a client still being greeted or replayed reads
//! the `tokio::sync::broadcast` ring of `capacity` events, and moves over to
//! the fan-out when it goes live ([`Hub::go_live`]). A client that falls
//! `capacity` events behind on either path is disconnected (see
//! `ws::session`) — a slow or dead client never delays the others, and no
//! per-client queue can grow beyond `capacity` frames.

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
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::TryRecvError;

use crate::fanout::{Shard, Subscriber};
use crate::telemetry::{
    self, BROADCAST_LATENCY, BUS_INVALID_PAYLOADS, BUS_REJECTED_IDS, MESSAGES_SENT,
};
use crate::ws::frame;
use crate::ws::outbox::Outbox;

/// How far ahead of this node's clock a history id may be: history ids are
/// Redis's clock in ms, so anything further ahead was not assigned by it.
const MAX_CLOCK_AHEAD: Duration = Duration::from_secs(60);
/// How much of an untrusted payload a log line shows (escaped).
const LOG_PREVIEW: usize = 120;

/// One event, ready to write to any client.
#[derive(Debug)]
pub struct Frame {
    /// The whole WebSocket text frame (header and payload), shared by
    /// every client's write.
    pub wire: Bytes,
    /// This node's running number of the event: where a client moves from
    /// the ring to the fan-out.
    pub seq: u64,
    pub kind: String,
    pub id: Option<EventId>,
    pub published_at: DateTime<Utc>,
    /// `gateway_messages_sent_total{type}`, looked up once per event.
    pub sent: Counter,
}

#[cfg(test)]
impl Frame {
    /// The event's JSON text (after the frame header).
    pub fn text(&self) -> &str {
        std::str::from_utf8(frame::payload(&self.wire)).expect("built from a String")
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

/// A client's view at the moment it joined: everything after `head` will
/// come through `rx`.
#[derive(Debug)]
pub struct Subscription {
    pub rx: broadcast::Receiver<Arc<Frame>>,
    /// The position of the last event sent before `rx` starts.
    pub position: Option<Position>,
    pub analytics: Option<Arc<Snapshot>>,
    /// The `seq` of the first frame `rx` will bring.
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

/// The client fell further behind the ring than its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged;

#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Frame>>,
    capacity: usize,
    state: Mutex<State>,
    /// The fan-out's shards, started by the first client to go live (inside
    /// the runtime; a hub used without clients needs none).
    shards: OnceLock<Vec<Arc<Shard>>>,
    /// Where the next live client goes (round robin).
    next_shard: AtomicUsize,
    /// `FLUSH_INTERVAL_MS`: least time between a shard's writes.
    flush_interval: Duration,
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
    /// `capacity`: how many events a client may fall behind.
    /// `max_event_bytes`: `MAX_EVENT_BYTES`.
    pub fn new(capacity: usize, arrival: Arrival, max_event_bytes: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        let state = State {
            recent: (arrival == Arrival::Unordered).then(Recent::default),
            ..State::default()
        };
        Self {
            tx,
            capacity,
            state: Mutex::new(state),
            shards: OnceLock::new(),
            next_shard: AtomicUsize::new(0),
            flush_interval: Duration::ZERO,
            max_event_bytes,
            max_payload: max_event_bytes + ENVELOPE_GROWTH,
            foreign_epoch_seen: AtomicBool::new(false),
        }
    }

    /// Events within `interval` of a shard's last write wait for it (see
    /// [`crate::fanout`]); zero writes each event at once.
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// How many events the slowest client has yet to read or be written
    /// (at most the ring's capacity): what a catch-up paces itself by.
    pub fn backlog(&self) -> usize {
        let queued = self.shards.get().map_or(0, |shards| {
            shards.iter().map(|s| s.most_waiting()).max().unwrap_or(0)
        });
        self.tx.len().max(queued)
    }

    /// The fan-out's shards: one per core the runtime may use, started on
    /// first use.
    fn shards(&self) -> &[Arc<Shard>] {
        self.shards.get_or_init(|| {
            let count = std::thread::available_parallelism().map_or(1, |n| n.get());
            let latency = metrics::histogram!(BROADCAST_LATENCY);
            (0..count)
                .map(|_| {
                    let shard = Arc::new(Shard::default());
                    // Holds no `Hub`: the task ends when the ring closes.
                    let rx = self.tx.subscribe();
                    tokio::spawn(shard.clone().run(rx, latency.clone(), self.flush_interval));
                    shard
                })
                .collect()
        })
    }

    /// Moves a client from the ring to the fan-out: what `rx` still holds
    /// is written to `outbox` first, then its shard takes over from the next
    /// frame. Under the shard's lock, so the shard writes nothing to it in
    /// between: everything arrives once, in order.
    pub fn go_live(
        &self,
        mut rx: broadcast::Receiver<Arc<Frame>>,
        mut next_seq: u64,
        outbox: Arc<Outbox>,
        filter: &TypeFilter,
        seam: EventId,
    ) -> Result<Live, Lagged> {
        let shards = self.shards();
        let shard = shards[self.next_shard.fetch_add(1, Ordering::Relaxed) % shards.len()].clone();
        let mut registry = shard.registry();
        let subscriber = Subscriber::new(outbox, filter, seam, 0);
        loop {
            match rx.try_recv() {
                Ok(frame) => {
                    if subscriber.wants(&frame) {
                        subscriber.outbox.push_broadcast(&[&frame.wire]);
                        frame.sent.increment(1);
                    }
                    next_seq = frame.seq + 1;
                }
                Err(TryRecvError::Lagged(_)) => return Err(Lagged),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        let key = registry.insert(Subscriber {
            from_seq: next_seq,
            ..subscriber
        });
        drop(registry);
        Ok(Live { shard, key })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
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

    /// Joins the broadcast. Taken under the same lock `dispatch` holds, so
    /// `position` and `analytics` are exactly what was sent before `rx`
    /// starts.
    pub fn subscribe(&self) -> Subscription {
        let state = self.state();
        Subscription {
            rx: self.tx.subscribe(),
            position: state.position(),
            analytics: state.analytics.clone(),
            next_seq: state.next_seq,
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
            IdField::Position(p) => self.state().trust(p).map(|()| Some(p.id)),
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
        let wire = frame::text(&decoded.text);
        let mut frame = Frame {
            sent: counter!(MESSAGES_SENT, "type" => telemetry::type_label(&decoded.kind)),
            kind: decoded.kind,
            id: trusted,
            published_at: decoded.published_at,
            wire,
            seq: 0,
        };
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
        // An error only means nobody is on the ring right now (no client
        // and no fan-out shard yet).
        let _ = self.tx.send(Arc::new(frame));
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

    fn hub(arrival: Arrival) -> Hub {
        let hub = Hub::new(16, arrival, 1024);
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
        let mut a = hub.subscribe().rx;
        let mut b = hub.subscribe().rx;
        hub.dispatch(payload(None, "alert", "{}").as_bytes())
            .unwrap();
        let (fa, fb) = (a.try_recv().unwrap(), b.try_recv().unwrap());
        assert!(Arc::ptr_eq(&fa, &fb), "one frame per event, not per client");
        assert_eq!(fa.kind, "alert");
    }

    #[test]
    fn ids_at_or_before_the_head_are_dropped_as_duplicates() {
        let hub = hub(Arrival::InOrder);
        let mut rx = hub.subscribe().rx;
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
        let mut rx = hub.subscribe().rx;
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
        let mut rx = hub.subscribe().rx;
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
        let mut rx = hub.subscribe().rx;
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
