//! One event as the node delivers it ([`Event`]), and the analytics
//! snapshot that greets new clients ([`Snapshot`]).

use std::sync::OnceLock;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use metrics::{Counter, counter};
use serde_json::value::RawValue;
use shared::{Epoch, EventId, Position, kind};

use crate::bus::ReplayEvent;
use crate::telemetry::{self, MESSAGES_SENT};
use crate::transport::Encoding;

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
    /// The other encodings, by [`Encoding::slot`], made on first use;
    /// boxed, so an event no client needs in another encoding (most of
    /// them, on most nodes) carries one word for them, not three `Bytes`.
    encoded: OnceLock<Box<[OnceLock<Bytes>; Encoding::COUNT]>>,
    /// This node's running number of the event: where a client moves from
    /// the ring to the fan-out.
    pub seq: u64,
    pub kind: String,
    /// The position the history gave it (`None`: live-only).
    pub position: Option<Position>,
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

    pub(super) fn new(
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
            encoded: OnceLock::new(),
            seq: 0,
            kind,
            position,
            published_at,
        }
    }

    /// Its position's id (`None`: live-only), compared on every delivery.
    pub fn id(&self) -> Option<EventId> {
        self.position.map(|p| p.id)
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
            other => self.encoded.get_or_init(Box::default)[other.slot()]
                .get_or_init(|| other.encode(self.text(), self.position)),
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
    /// The snapshot an `analytics_update` envelope makes (`None`: not an
    /// envelope).
    pub(super) fn of(text: &str, published_at: DateTime<Utc>) -> Option<Snapshot> {
        let parts = shared::envelope::parts(text).ok()?;
        let data = match parts.data {
            Some(data) => data.to_owned(),
            None => RawValue::NULL.to_owned(),
        };
        Some(Snapshot { data, published_at })
    }

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
