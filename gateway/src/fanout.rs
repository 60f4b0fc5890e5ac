//! The node's live clients, and the loop that writes each event to them.
//!
//! A client is registered here once its greeting (and replay) is out; from
//! then on [`Registry::fan_out`] writes every event it wants straight into
//! its [`Outbox`] — one non-blocking write per client per event, no task
//! woken (see `ws::outbox` for why). Before that, a client reads the hub's
//! broadcast ring like any subscriber; `Hub::go_live` moves it over at an
//! exact sequence number, so nothing is lost or sent twice at the switch.
//!
//! Slots are reused (a free list) so the fan-out walks a dense vector and
//! joining or leaving costs no reallocation under load.

use std::sync::Arc;

use shared::{EventId, TypeFilter};

use crate::hub::Frame;
use crate::ws::outbox::Outbox;

/// One live client, as the fan-out sees it.
#[derive(Debug)]
pub struct Subscriber {
    pub outbox: Arc<Outbox>,
    /// `None`: every type (checked without a string comparison).
    pub filter: Option<TypeFilter>,
    /// Live events at or before this id were sent by the replay already.
    pub seam: EventId,
    /// The first frame (by [`Frame::seq`]) the fan-out owes this client: the
    /// ones before it were handed over from the ring.
    pub from_seq: u64,
}

impl Subscriber {
    pub fn new(outbox: Arc<Outbox>, filter: &TypeFilter, seam: EventId, from_seq: u64) -> Self {
        Self {
            outbox,
            filter: filter.types().map(|_| filter.clone()),
            seam,
            from_seq,
        }
    }

    /// Whether this client should get `frame`: a type it asked for, and not
    /// at or before the seam (it has that already).
    pub fn wants(&self, frame: &Frame) -> bool {
        self.filter.as_ref().is_none_or(|f| f.allows(&frame.kind))
            && frame.id.is_none_or(|id| id > self.seam)
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    slots: Vec<Option<Subscriber>>,
    free: Vec<usize>,
}

impl Registry {
    /// Adds a live client; the key removes it.
    pub fn insert(&mut self, subscriber: Subscriber) -> usize {
        match self.free.pop() {
            Some(key) => {
                self.slots[key] = Some(subscriber);
                key
            }
            None => {
                self.slots.push(Some(subscriber));
                self.slots.len() - 1
            }
        }
    }

    pub fn remove(&mut self, key: usize) {
        if self.slots.get_mut(key).and_then(Option::take).is_some() {
            self.free.push(key);
        }
    }

    /// Writes `frame` to every live client that wants it; how many got it
    /// (written or queued).
    pub fn fan_out(&self, frame: &Frame) -> u64 {
        let mut delivered = 0;
        for subscriber in self.slots.iter().flatten() {
            if frame.seq >= subscriber.from_seq && subscriber.wants(frame) {
                subscriber.outbox.push_broadcast(&frame.wire);
                delivered += 1;
            }
        }
        delivered
    }

    /// The most broadcast frames any live client has waiting.
    pub fn most_waiting(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .map(|s| s.outbox.waiting())
            .max()
            .unwrap_or(0)
    }
}
