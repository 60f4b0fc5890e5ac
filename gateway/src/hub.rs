//! The hub: where bus payloads become frames, once per event, and fan out.
//!
//! A payload is decoded and validated here exactly once per node; the text
//! frame it becomes is shared (reference-counted bytes) by every client, so
//! fan-out costs no serialization and no copy per client.
//!
//! Fan-out is a `tokio::sync::broadcast` ring of `capacity` events: sending
//! never waits for a client. Each client reads at its own pace; one that
//! falls `capacity` events behind finds it has lagged and is disconnected
//! (see `ws::session`) — a slow or dead client never delays the others, and
//! no per-client queue can grow beyond the ring.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use metrics::{Counter, counter};
use serde_json::value::RawValue;
use shared::{DecodeError, EventId, kind};
use tokio::sync::broadcast;

use crate::telemetry::{self, BUS_INVALID_PAYLOADS, MESSAGES_SENT};

/// One event, ready to write to any client.
#[derive(Debug)]
pub struct Frame {
    pub text: Utf8Bytes,
    pub kind: String,
    pub id: Option<EventId>,
    pub published_at: DateTime<Utc>,
    /// `gateway_messages_sent_total{type}`, looked up once per event.
    pub sent: Counter,
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
    pub fn frame(snapshot: Option<&Snapshot>, position: Option<EventId>) -> String {
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
    /// The greatest id sent so far.
    head: Option<EventId>,
    /// `Some` for [`Arrival::Unordered`].
    recent: Option<Recent>,
    analytics: Option<Arc<Snapshot>>,
    analytics_id: Option<EventId>,
}

/// A client's view at the moment it joined: everything after `head` will
/// come through `rx`.
#[derive(Debug)]
pub struct Subscription {
    pub rx: broadcast::Receiver<Arc<Frame>>,
    pub head: Option<EventId>,
    pub analytics: Option<Arc<Snapshot>>,
}

#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Frame>>,
    state: Mutex<State>,
    invalid: Counter,
}

/// What [`Hub::dispatch`] did with a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    Sent(Option<EventId>),
    /// Its id was at or before one already sent (a reconnect's catch-up
    /// overlapping the live stream): dropped so nobody sees it twice.
    Duplicate,
}

impl Hub {
    /// `capacity`: how many events a client may fall behind.
    pub fn new(capacity: usize, arrival: Arrival) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        let state = State {
            recent: (arrival == Arrival::Unordered).then(Recent::default),
            ..State::default()
        };
        Self {
            tx,
            state: Mutex::new(state),
            invalid: counter!(BUS_INVALID_PAYLOADS),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The lock guards plain data and no code under it panics; a poisoned
        // lock still holds consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins the broadcast. Taken under the same lock `dispatch` holds, so
    /// `head` and `analytics` are exactly what was sent before `rx` starts.
    pub fn subscribe(&self) -> Subscription {
        let state = self.state();
        Subscription {
            rx: self.tx.subscribe(),
            head: state.head,
            analytics: state.analytics.clone(),
        }
    }

    pub fn head(&self) -> Option<EventId> {
        self.state().head
    }

    /// Starts the position at `id` if nothing was sent yet (a node learning
    /// where the shared history stands when it first subscribes).
    pub fn init_head(&self, id: EventId) {
        let mut state = self.state();
        if state.head.is_none() {
            state.head = Some(id);
        }
    }

    /// Decodes one bus payload and sends it to every subscriber. Malformed
    /// payloads are counted, logged and dropped: they never reach a client.
    pub fn dispatch(&self, payload: &[u8]) -> Result<Dispatched, DecodeError> {
        let decoded = shared::envelope::decode(payload, Utc::now()).inspect_err(|err| {
            self.invalid.increment(1);
            let preview: String = String::from_utf8_lossy(payload).chars().take(120).collect();
            tracing::warn!(%err, payload = %preview, "dropped a malformed bus payload");
        })?;
        let snapshot = (decoded.kind == kind::ANALYTICS_UPDATE)
            .then(|| snapshot_of(&decoded.text, decoded.published_at))
            .flatten();
        let frame = Arc::new(Frame {
            sent: counter!(MESSAGES_SENT, "type" => telemetry::type_label(&decoded.kind)),
            kind: decoded.kind,
            id: decoded.id,
            published_at: decoded.published_at,
            text: Utf8Bytes::from(decoded.text),
        });
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
        // An error only means nobody is subscribed right now.
        let _ = self.tx.send(frame.clone());
        Ok(Dispatched::Sent(frame.id))
    }

    /// Replaces the analytics snapshot (a node loading the shared one).
    pub fn set_snapshot(&self, payload: &str) {
        if let Ok(decoded) = shared::envelope::decode(payload.as_bytes(), Utc::now())
            && let Some(snapshot) = snapshot_of(&decoded.text, decoded.published_at)
        {
            self.state().analytics = Some(Arc::new(snapshot));
        }
    }
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

    fn payload(id: Option<&str>, kind: &str, data: &str) -> String {
        let id = id.map(|id| format!("\"id\":\"{id}\",")).unwrap_or_default();
        format!(r#"{{{id}"type":"{kind}","data":{data},"timestamp":"2026-11-25T10:00:00.000Z"}}"#)
    }

    #[test]
    fn every_subscriber_gets_the_same_shared_frame() {
        let hub = Hub::new(16, Arrival::InOrder);
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
        let hub = Hub::new(16, Arrival::InOrder);
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
    fn a_new_subscriber_sees_the_latest_analytics_and_head() {
        let hub = Hub::new(16, Arrival::InOrder);
        let greeting: serde_json::Value =
            serde_json::from_str(&Snapshot::frame(None, None)).unwrap();
        assert_eq!(greeting["data"], serde_json::json!({}));
        hub.dispatch(payload(Some("5-0"), "analytics_update", r#"{"total_tutors":7}"#).as_bytes())
            .unwrap();
        hub.dispatch(payload(Some("6-0"), "alert", "{}").as_bytes())
            .unwrap();
        let sub = hub.subscribe();
        assert_eq!(sub.head, Some(EventId::new(6, 0)));
        let greeting: serde_json::Value =
            serde_json::from_str(&Snapshot::frame(sub.analytics.as_deref(), sub.head)).unwrap();
        assert_eq!(greeting["data"]["total_tutors"], 7);
        assert_eq!(greeting["id"], "6-0");
    }

    #[test]
    fn out_of_order_arrival_keeps_late_events_and_drops_repeats() {
        let hub = Hub::new(16, Arrival::Unordered);
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
        assert_eq!(hub.head(), Some(EventId::new(11, 0)));
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
        let hub = Hub::new(16, Arrival::InOrder);
        let mut rx = hub.subscribe().rx;
        assert!(hub.dispatch(b"{not json").is_err());
        assert!(hub.dispatch(b"{\"data\":1}").is_err());
        assert!(rx.try_recv().is_err());
    }
}
