//! Batches: events encoded and checked before anything is sent, then written
//! by one call of the publish script (one round trip, atomic, in order).
//!
//! No I/O here: [`Encoded`] is one envelope checked against
//! `MAX_EVENT_BYTES`, [`Batch`] a list of them within the batch limits.
//! [`crate::WireFormat::publish_batch`] sends one.
//!
//! Why a batch is bounded ([`MAX_BATCH_EVENTS`], [`MAX_BATCH_BYTES`]): Redis
//! runs a script alone, so a batch holds every other client of that Redis
//! (gateways' reads, other publishers) for as long as it runs, and all of
//! its arguments sit in Redis's input buffer at once. 1,000 events or 4 MiB
//! is a few milliseconds of Redis time; a bulk job sends many batches
//! ([`DEFAULT_BATCH_EVENTS`] each: the CLI's `send --stdin`, the Python
//! package's `publish_many`), each atomic on its own.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::kind;
use shared::state::{Keyed, Keying};

use crate::PublishError;

/// Most events one batch may hold.
pub const MAX_BATCH_EVENTS: usize = 1000;
/// Most encoded bytes (envelopes, without ids) a batch of more than one
/// event may hold. A single event may always be as large as
/// `MAX_EVENT_BYTES` allows.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Events per round trip when a helper splits a long input (`publisher send
/// --stdin`, the Python package's `publish_many`), unless told otherwise.
pub const DEFAULT_BATCH_EVENTS: usize = 500;

/// An event to publish: its type and data, and, when the caller decides
/// them rather than the state rules, its key and whether it removes it.
#[derive(Debug)]
pub struct Item<'a, D: ?Sized> {
    pub kind: &'a str,
    pub data: &'a D,
    /// An explicit key (else the state rules derive one, or none).
    pub key: Option<&'a str>,
    /// Removes its key from the state (a tombstone).
    pub removed: bool,
}

// By hand: `derive` would ask `D: Copy` of the data it only borrows.
impl<D: ?Sized> Clone for Item<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D: ?Sized> Copy for Item<'_, D> {}

impl<'a, D: ?Sized> Item<'a, D> {
    pub fn new(kind: &'a str, data: &'a D) -> Self {
        Self {
            kind,
            data,
            key: None,
            removed: false,
        }
    }

    pub fn with_key(self, key: &'a str) -> Self {
        Self {
            key: Some(key),
            ..self
        }
    }

    pub fn removing(self) -> Self {
        Self {
            removed: true,
            ..self
        }
    }
}

/// One event, encoded (`{"type","key"?,"removed"?,"data","timestamp"}`, no
/// id yet) and checked against `MAX_EVENT_BYTES`.
#[derive(Debug, Clone)]
pub struct Encoded {
    kind: String,
    payload: String,
    keyed: Option<Keyed>,
}

impl Encoded {
    /// Validates `kind`, encodes `data` stamped `at` (unkeyed), and checks
    /// the size.
    pub fn new<D: Serialize + ?Sized>(
        kind: &str,
        data: &D,
        at: DateTime<Utc>,
        max_event_bytes: usize,
    ) -> Result<Self, PublishError> {
        Self::keyed(&Item::new(kind, data), &Keying::none(), at, max_event_bytes)
    }

    /// Validates the item's type, keys it (its explicit key, else by
    /// `keying`), encodes it stamped `at`, and checks the size.
    pub fn keyed<D: Serialize + ?Sized>(
        item: &Item<'_, D>,
        keying: &Keying,
        at: DateTime<Utc>,
        max_event_bytes: usize,
    ) -> Result<Self, PublishError> {
        let kind = item.kind;
        shared::validate_kind(kind)?;
        let data = serde_json::value::to_raw_value(item.data)?;
        let keyed = keying.key_for(kind, &data, item.key, item.removed)?;
        let payload = shared::envelope::encode_keyed(kind, keyed.as_ref(), &data, at);
        if payload.len() > max_event_bytes {
            return Err(PublishError::TooLarge {
                size: payload.len(),
                max: max_event_bytes,
            });
        }
        Ok(Self {
            kind: kind.to_owned(),
            payload,
            keyed,
        })
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Its key in the state, if it has one.
    pub fn state_key(&self) -> Option<&Keyed> {
        self.keyed.as_ref()
    }

    /// The envelope as the history stores it.
    pub fn payload(&self) -> &str {
        &self.payload
    }

    pub(crate) fn is_analytics(&self) -> bool {
        self.kind == kind::ANALYTICS_UPDATE
    }
}

/// Events for one round trip, in publish order, within [`MAX_BATCH_EVENTS`]
/// and [`MAX_BATCH_BYTES`].
#[derive(Debug, Clone, Default)]
pub struct Batch {
    events: Vec<Encoded>,
    bytes: usize,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// One event alone (any size `MAX_EVENT_BYTES` allowed).
    pub fn one(event: Encoded) -> Self {
        Self {
            bytes: event.payload.len(),
            events: vec![event],
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The envelopes' bytes in all.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn events(&self) -> &[Encoded] {
        &self.events
    }

    /// Whether `event` still fits, with at most `max_events` in the batch
    /// (capped at [`MAX_BATCH_EVENTS`]). An empty batch takes any event.
    pub fn has_room(&self, event: &Encoded, max_events: usize) -> bool {
        self.events.is_empty()
            || (self.events.len() < max_events.min(MAX_BATCH_EVENTS)
                && self.bytes + event.payload.len() <= MAX_BATCH_BYTES)
    }

    /// Adds `event` last; refused when it does not fit (see
    /// [`Self::has_room`] at [`MAX_BATCH_EVENTS`]).
    pub fn push(&mut self, event: Encoded) -> Result<(), PublishError> {
        if self.events.len() >= MAX_BATCH_EVENTS {
            return Err(PublishError::BatchTooLong {
                events: self.events.len() + 1,
                max: MAX_BATCH_EVENTS,
            });
        }
        if !self.has_room(&event, MAX_BATCH_EVENTS) {
            return Err(PublishError::BatchTooLarge {
                bytes: self.bytes + event.payload.len(),
                max: MAX_BATCH_BYTES,
            });
        }
        self.bytes += event.payload.len();
        self.events.push(event);
        Ok(())
    }

    /// Encodes every event, all stamped `at`, refusing the whole batch
    /// (before anything is sent) at the first bad one: its index is in the
    /// error ([`PublishError::InBatch`]).
    pub fn encode<'d, K, D, I>(
        events: I,
        at: DateTime<Utc>,
        max_event_bytes: usize,
    ) -> Result<Self, PublishError>
    where
        I: IntoIterator<Item = (K, &'d D)>,
        K: AsRef<str>,
        D: Serialize + ?Sized + 'd,
    {
        let events: Vec<(K, &D)> = events.into_iter().collect();
        let items = events
            .iter()
            .map(|(kind, data)| Item::new(kind.as_ref(), *data));
        Self::encode_items(items, &Keying::none(), at, max_event_bytes)
    }

    /// The same for [`Item`]s, keyed by `keying` where they name no key.
    pub fn encode_items<'a, D, I>(
        items: I,
        keying: &Keying,
        at: DateTime<Utc>,
        max_event_bytes: usize,
    ) -> Result<Self, PublishError>
    where
        I: IntoIterator<Item = Item<'a, D>>,
        D: Serialize + ?Sized + 'a,
    {
        let mut batch = Self::new();
        for (index, item) in items.into_iter().enumerate() {
            let in_batch = |source| PublishError::InBatch {
                index,
                source: Box::new(source),
            };
            let event = Encoded::keyed(&item, keying, at, max_event_bytes).map_err(in_batch)?;
            batch.push(event)?;
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-11-25T10:00:00.123Z".parse().unwrap()
    }

    #[test]
    fn a_batch_keeps_its_events_in_order_as_encoded() {
        let a = json!({"n": 1});
        let b = json!([2]);
        let batch = Batch::encode([("alert", &a), ("test_message", &b)], at(), 1024).unwrap();
        let payloads: Vec<&str> = batch.events().iter().map(Encoded::payload).collect();
        assert_eq!(
            payloads,
            [
                r#"{"type":"alert","data":{"n":1},"timestamp":"2026-11-25T10:00:00.123Z"}"#,
                r#"{"type":"test_message","data":[2],"timestamp":"2026-11-25T10:00:00.123Z"}"#,
            ]
        );
        assert_eq!(batch.bytes(), payloads[0].len() + payloads[1].len());
    }

    #[test]
    fn a_bad_event_refuses_the_whole_batch_and_names_its_index() {
        let ok = json!({});
        let big = json!("x".repeat(300));
        let err = Batch::encode([("alert", &ok), ("a b", &ok)], at(), 1024).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("events[1]: invalid message type: "),
            "{err}"
        );
        let err = Batch::encode([("alert", &ok), ("alert", &ok), ("alert", &big)], at(), 256)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "events[2]: event is 365 bytes encoded, over MAX_EVENT_BYTES (256)"
        );
        assert!(matches!(
            err,
            PublishError::InBatch { index: 2, ref source } if matches!(**source, PublishError::TooLarge { .. })
        ));
    }

    #[test]
    fn batches_are_bounded_in_events_and_bytes_but_take_any_one_event() {
        let small = json!({});
        let too_many = std::iter::repeat_n(("alert", &small), MAX_BATCH_EVENTS + 1);
        let err = Batch::encode(too_many, at(), 1024).unwrap_err();
        assert!(
            matches!(
                err,
                PublishError::BatchTooLong {
                    events: 1001,
                    max: 1000
                }
            ),
            "{err}"
        );

        let max = 16 * 1024 * 1024;
        let huge = json!("x".repeat(MAX_BATCH_BYTES));
        let alone = Encoded::new("alert", &huge, at(), max).unwrap();
        let mut batch = Batch::new();
        assert!(
            batch.has_room(&alone, 500),
            "an empty batch takes any event"
        );
        batch.push(alone.clone()).unwrap();
        let small = Encoded::new("alert", &small, at(), max).unwrap();
        assert!(!batch.has_room(&small, 500), "the bytes are spent");
        assert!(matches!(
            batch.push(small.clone()),
            Err(PublishError::BatchTooLarge { .. })
        ));

        let mut counted = Batch::new();
        for _ in 0..3 {
            assert!(counted.has_room(&small, 3));
            counted.push(small.clone()).unwrap();
        }
        assert!(!counted.has_room(&small, 3), "a helper's own batch size");
        assert!(
            counted.has_room(&small, 5000),
            "capped at MAX_BATCH_EVENTS only"
        );
    }
}
