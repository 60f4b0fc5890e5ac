//! The hub's intake, what the bus calls: payloads in ([`Hub::dispatch`]:
//! decoded and validated once, their ids trusted or stripped, duplicates
//! dropped, then one [`Event`] into the ring), where the history stands
//! (`init`, `adopt`), and the analytics snapshot a node loads at start.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use metrics::{counter, gauge};
use shared::envelope::{EVICTED_GROWTH, IdField};
use shared::{DecodeError, Epoch, EventId, Position, kind};
use thiserror::Error;

use super::{Event, Hub, Recent, Snapshot, State};
use crate::telemetry::{
    BUS_INVALID_PAYLOADS, BUS_REJECTED_IDS, STATE_EVICTIONS, STATE_KEYS, STATE_SUPERSEDED,
};

/// How far ahead of this node's clock a history id may be: history ids are
/// Redis's clock in ms, so anything further ahead was not assigned by it.
const MAX_CLOCK_AHEAD: Duration = Duration::from_secs(60);
/// How much of an untrusted payload a log line shows (escaped).
const LOG_PREVIEW: usize = 120;

/// What [`Hub::dispatch`] did with a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    Sent(Option<EventId>),
    /// Its id was at or before one already sent (a reconnect's catch-up
    /// overlapping the live stream): dropped so nobody sees it twice.
    Duplicate,
    /// A keyed event that reached the node after a later one of its key
    /// (on a Redis Cluster, the history re-read bringing an event whose
    /// live copy was lost): not its key's latest, so not sent live, where
    /// a dashboard would go back to it (a replay, in history order, has it).
    Superseded,
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
        // Nothing of the old history's state is current; the bus loads the
        // new one's, and the clients holding the old one come back for it.
        state.keyed.clear();
        state.reset_state_clients();
    }

    /// Events were lost on the way to this node (a catch-up gap): the
    /// clients sent `state` come back for it (the bus reloads it).
    pub fn state_gap(&self) {
        self.state().reset_state_clients();
    }

    /// A load of the keyed state from the history begins (see
    /// [`Self::load_state`]).
    pub fn begin_state_load(&self) {
        self.state().keyed.begin_load();
    }

    /// The load did not happen: the state stays as it is.
    pub fn cancel_state_load(&self) {
        self.state().keyed.cancel_load();
    }

    /// Replaces the keyed state with one read from the history (each
    /// payload the latest event of its key, with its id), current to
    /// `top`, where the history stood. When `epoch` is not the history the
    /// node follows (it was created anew meanwhile), the node's state is
    /// dropped instead: it belongs to a history that is gone, and the new
    /// one is loaded once the node adopts it. Returns how many keys were
    /// loaded.
    pub fn load_state(&self, epoch: Epoch, top: EventId, payloads: &[String]) -> usize {
        let mut events = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let Ok(decoded) = shared::envelope::decode(payload.as_bytes(), Utc::now()) else {
                counter!(BUS_INVALID_PAYLOADS, "reason" => "malformed").increment(1);
                continue;
            };
            let (IdField::Position(position), Some(change)) = (decoded.id, decoded.state) else {
                continue;
            };
            if position.epoch != epoch || payload.len() > self.max_payload + EVICTED_GROWTH {
                continue;
            }
            let event = Event::new(
                &decoded.text,
                decoded.kind,
                Some(position),
                decoded.published_at,
            );
            events.push((Arc::new(event), change.key));
        }
        let mut state = self.state();
        if state.epoch != Some(epoch) {
            state.keyed.clear();
            return 0;
        }
        state.keyed.replace(events, top);
        let keys = state.keyed.len();
        gauge!(STATE_KEYS).set(keys as f64);
        keys
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
        if payload.len() > self.max_payload + EVICTED_GROWTH {
            return Err(Dropped::TooLarge(payload.len()));
        }
        let mut decoded = shared::envelope::decode(payload, Utc::now())?;
        // Past the limit only by the evictions the publish script named.
        if payload.len() > self.max_payload {
            let named = decoded.state.as_ref().map_or(0, |s| {
                s.evicted.iter().map(|k| k.len() * 2 + 3).sum::<usize>() + 13
            });
            if payload.len() - named.min(EVICTED_GROWTH) > self.max_payload {
                return Err(Dropped::TooLarge(payload.len()));
            }
        }
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
            .then(|| Snapshot::of(&decoded.text, decoded.published_at))
            .flatten();
        // Only an event the history placed is state: a raw publish is
        // live-only, and cannot put keys into (or take them out of) it.
        let change = decoded.state.filter(|_| trusted.is_some());
        let mut frame = Event::new(&decoded.text, decoded.kind, trusted, decoded.published_at);
        let mut state = self.state();
        if let Some(id) = frame.id() {
            let fresh = match &mut state.recent {
                Some(recent) => recent.insert(id),
                None => state.head.is_none_or(|head| id > head),
            };
            if !fresh {
                return Ok(Dispatched::Duplicate);
            }
            state.head = state.head.max(Some(id));
        }
        if let Some(change) = &change
            && let Some(id) = frame.id()
            && state.keyed.superseded(&frame.kind, change, id)
        {
            // Its evictions still stand where nothing newer came since;
            // its own key is not put back.
            let evicted = state.keyed.apply(&Arc::new(frame), change);
            counter!(STATE_EVICTIONS).increment(evicted as u64);
            counter!(STATE_SUPERSEDED).increment(1);
            return Ok(Dispatched::Superseded);
        }
        // Out of order, an older analytics event must not replace a newer one.
        if snapshot.is_some() && (frame.id().is_none() || frame.id() >= state.analytics_id) {
            state.analytics = snapshot.map(Arc::new);
            state.analytics_id = frame.id().or(state.analytics_id);
        }
        frame.seq = state.next_seq;
        state.next_seq += 1;
        let id = frame.id();
        let frame = Arc::new(frame);
        if let Some(change) = &change {
            let evicted = state.keyed.apply(&frame, change);
            if evicted > 0 {
                counter!(STATE_EVICTIONS).increment(evicted as u64);
            }
        }
        // Under the state lock: ring order is `seq` order, and the state
        // is the state after the ring's last event.
        self.ring.push(frame);
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
            && let Some(snapshot) = Snapshot::of(&decoded.text, decoded.published_at)
        {
            self.state().analytics = Some(Arc::new(snapshot));
        }
    }
}

impl State {
    fn reset_state_clients(&mut self) {
        std::mem::take(&mut self.state_reset).cancel();
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
