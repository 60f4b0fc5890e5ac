//! The node's live clients, and the tasks that write each event to them.
//!
//! Live clients are split over a few shards (one per core), each served by
//! one task that reads the hub's [`Ring`] and writes every event its clients
//! want straight into their [`Outbox`]es: one non-blocking write per client
//! per batch, and no client task woken while its socket keeps up (see
//! `transport::outbox` for why).
//!
//! Draining: a shard never sleeps while events wait and no fixed count caps
//! a batch. When it wakes it takes everything the ring holds for it (up to
//! [`BATCH_BYTES`], then at once the next batch), so batches are as large as
//! the node is behind: a burst or a fast stream costs fewer syscalls per
//! event the further behind the shard is, which is what lets it catch up,
//! and a lone event on a quiet node goes out at once.
//!
//! One write per client per batch, whatever the batch's length: clients that
//! want the same events of a batch (the same `?types=`, nothing skipped at a
//! seam) share one contiguous buffer of them, built once per batch (a
//! [`Group`]), so a batch of 1,000 small events to a client is one `write`
//! of shared bytes, not 1,000, and a client whose types exclude a burst costs
//! one comparison per batch, not one per event.
//!
//! Falling off the ring: the ring keeps what a shard has yet to write up to
//! `RING_BYTES`. A shard that falls further behind (a node starved of CPU)
//! reads what it lost from the history and writes it to its clients, then
//! goes on from the ring: its own lag costs latency, never a connection.
//! Only when the history cannot give it back (no history, or trimmed past
//! it) are its clients closed with 1013, to resume with `?since=`.
//!
//! Before its greeting and replay are out, a client is a sequence number in
//! the ring; `Hub::go_live` moves it to a shard at an exact sequence number,
//! under the shard's lock, so nothing is lost or sent twice at the switch.
//!
//! Slots are reused (a free list) so a shard walks a dense vector and
//! joining or leaving costs no reallocation under load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use metrics::{Histogram, counter};
use shared::{EventId, Position, TypeFilter};
use tokio::time::Instant;

use crate::bus::{PAGE, Standing};
use crate::hub::{Event, Hub};
use crate::ring::{Read, Ring};
use crate::telemetry::{FANOUT_GAPS, FANOUT_RECOVERED};
use crate::transport::Encoding;
use crate::transport::outbox::{Budget, Outbox};

/// Most bytes of events one batch takes from the ring: what one pass writes
/// to each client at most (the next batch follows at once).
pub const BATCH_BYTES: usize = 256 * 1024;

/// Most distinct filters of one batch whose bytes are shared; clients past
/// them get a buffer of their own (same bytes on the wire).
const MAX_GROUPS: usize = 32;

/// One live client, as the fan-out sees it.
#[derive(Debug)]
pub struct Subscriber {
    pub outbox: Arc<Outbox>,
    /// `None`: every type (checked without a string comparison).
    pub filter: Option<TypeFilter>,
    /// Live events at or before this id were sent by the replay already.
    pub seam: EventId,
    /// The first event (by [`Event::seq`]) the fan-out owes this client:
    /// the ones before it were handed over from the ring.
    pub from_seq: u64,
    /// How its transport writes events.
    pub encoding: Encoding,
}

impl Subscriber {
    pub fn new(
        outbox: Arc<Outbox>,
        encoding: Encoding,
        filter: &TypeFilter,
        seam: EventId,
        from_seq: u64,
    ) -> Self {
        Self {
            outbox,
            filter: filter.types().map(|_| filter.clone()),
            seam,
            from_seq,
            encoding,
        }
    }

    /// Whether this client should get `frame`: a type it asked for, not at
    /// or before the seam (it has that already), and not handed over.
    pub fn wants(&self, frame: &Event) -> bool {
        frame.seq >= self.from_seq
            && allows(self.filter.as_ref(), frame)
            && frame.id().is_none_or(|id| id > self.seam)
    }
}

fn allows(filter: Option<&TypeFilter>, frame: &Event) -> bool {
    filter.is_none_or(|f| f.allows(&frame.kind))
}

/// `events` in `encoding`, as one buffer (the event's own bytes when there
/// is one, `None` when there is none).
pub fn concat<'a>(
    events: impl Iterator<Item = &'a Arc<Event>> + Clone,
    encoding: Encoding,
) -> Option<Bytes> {
    let mut iter = events.clone();
    let first = iter.next()?;
    if iter.next().is_none() {
        return Some(first.wire(encoding).clone());
    }
    let len = events.clone().map(|e| e.wire(encoding).len()).sum();
    let mut buf = BytesMut::with_capacity(len);
    for event in events {
        buf.extend_from_slice(event.wire(encoding));
    }
    Some(buf.freeze())
}

/// The clients of one batch that want the same events of it in the same
/// encoding, and those events as one shared buffer.
struct Group<'a> {
    filter: Option<&'a TypeFilter>,
    encoding: Encoding,
    bytes: Option<Bytes>,
    members: u64,
}

#[derive(Debug, Default)]
pub struct Registry {
    slots: Vec<Option<Subscriber>>,
    free: Vec<usize>,
    /// Every frame before this sequence number has been written to the
    /// clients here: where a client going live joins.
    pub next: u64,
    /// The newest history id this shard has written: where a recovery reads
    /// the history from.
    last_id: Option<EventId>,
    /// How far behind a client may fall.
    budget: Budget,
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

    /// Writes the frames of `batch` each client wants, one write per
    /// client; counts deliveries into `delivered` (by position in `batch`).
    fn fan_out(&self, batch: &[Arc<Event>], now: Instant, delivered: &mut [u64]) {
        let budget = &self.budget;
        let Some(first) = batch.first() else { return };
        let oldest_id = batch.iter().filter_map(|f| f.id()).min();
        let mut groups: Vec<Group<'_>> = Vec::new();
        for subscriber in self.slots.iter().flatten() {
            let whole =
                subscriber.from_seq <= first.seq && oldest_id.is_none_or(|id| id > subscriber.seam);
            let (filter, encoding) = (subscriber.filter.as_ref(), subscriber.encoding);
            let group = match groups
                .iter_mut()
                .position(|g| g.filter == filter && g.encoding == encoding)
            {
                Some(i) if whole => Some(&mut groups[i]),
                None if whole && groups.len() < MAX_GROUPS => {
                    let bytes = concat(batch.iter().filter(|f| allows(filter, f)), encoding);
                    groups.push(Group {
                        filter,
                        encoding,
                        bytes,
                        members: 0,
                    });
                    groups.last_mut()
                }
                _ => None,
            };
            match group {
                Some(group) => {
                    group.members += 1;
                    if let Some(bytes) = &group.bytes {
                        subscriber.outbox.push_broadcast(bytes, now, budget);
                    }
                }
                None => {
                    // Just joined, or past the shared groups: its own buffer.
                    let wanted = || batch.iter().filter(|f| subscriber.wants(f));
                    if let Some(bytes) = concat(wanted(), encoding) {
                        subscriber.outbox.push_broadcast(&bytes, now, budget);
                    }
                    for (i, frame) in batch.iter().enumerate() {
                        delivered[i] += u64::from(subscriber.wants(frame));
                    }
                }
            }
        }
        for group in groups.iter().filter(|g| g.bytes.is_some()) {
            for (i, frame) in batch.iter().enumerate() {
                if allows(group.filter, frame) {
                    delivered[i] += group.members;
                }
            }
        }
    }

    /// Closes every client (1013): the shard lost events it owed them and
    /// the history could not give them back.
    fn overflow_all(&self) {
        for subscriber in self.slots.iter().flatten() {
            subscriber.outbox.overflow();
        }
    }
}

/// A share of the live clients and the task that writes to them.
#[derive(Debug)]
pub struct Shard {
    registry: Mutex<Registry>,
    /// The ring's copy of where this shard reads next.
    cursor: Arc<AtomicU64>,
}

impl Shard {
    /// A shard that starts reading the ring at `next` (its cursor there).
    pub fn new(
        cursor: Arc<AtomicU64>,
        next: u64,
        last_id: Option<EventId>,
        budget: Budget,
    ) -> Self {
        cursor.store(next, Ordering::Release);
        Self {
            registry: Mutex::new(Registry {
                next,
                last_id,
                budget,
                ..Registry::default()
            }),
            cursor,
        }
    }

    /// Held while a batch is written, and while a client goes live.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        // Plain data, and nothing under the lock panics.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shard's task: reads the ring until the hub is gone. `latency`:
    /// `gateway_broadcast_latency_seconds`, publish to written (or queued),
    /// once per event per shard.
    pub async fn run(self: Arc<Self>, ring: Arc<Ring>, hub: Weak<Hub>, latency: Histogram) {
        let mut delivered = Vec::new();
        // History ids at or before this were written by a recovery: the
        // ring's copies of them are not sent again.
        let mut recovered: Option<EventId> = None;
        loop {
            let next = self.cursor.load(Ordering::Acquire);
            let appended = ring.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let batch = match ring.read(next, BATCH_BYTES) {
                Read::Events(batch) => batch,
                Read::Gone { first } => {
                    let Some(hub) = hub.upgrade() else { return };
                    recovered = self.recover(&hub, first).await.or(recovered);
                    continue;
                }
            };
            let Some(last) = batch.last().map(|f| f.seq) else {
                if hub.strong_count() == 0 {
                    return;
                }
                appended.await;
                continue;
            };
            let batch: Vec<Arc<Event>> = match recovered {
                Some(upto) => {
                    // Once past what was recovered, nothing more to skip.
                    if batch.iter().any(|f| f.id().is_some_and(|id| id > upto)) {
                        recovered = None;
                    }
                    batch
                        .into_iter()
                        .filter(|f| f.id().is_none_or(|id| id > upto))
                        .collect()
                }
                None => batch,
            };
            delivered.clear();
            delivered.resize(batch.len(), 0);
            {
                let mut registry = self.registry();
                registry.fan_out(&batch, Instant::now(), &mut delivered);
                registry.next = last + 1;
                registry.last_id = batch
                    .iter()
                    .filter_map(|f| f.id())
                    .max()
                    .or(registry.last_id);
            }
            self.cursor.store(last + 1, Ordering::Release);
            let now = Utc::now();
            for (frame, &n) in batch.iter().zip(&delivered) {
                if n > 0 {
                    frame.sent.increment(n);
                    let micros = (now - frame.published_at).num_microseconds().unwrap_or(0);
                    latency.record(micros.max(0) as f64 / 1e6);
                }
            }
        }
    }

    /// The ring dropped frames this shard had not written (it starts at
    /// `first` now): reads what the history holds after the last id this
    /// shard wrote and writes it, page by page, then carries on from
    /// `first`. Returns the newest id recovered (the ring's copies of ids
    /// up to it are skipped).
    async fn recover(&self, hub: &Hub, first: u64) -> Option<EventId> {
        counter!(FANOUT_GAPS).increment(1);
        let (history, position) = (hub.history(), hub.position());
        let last_id = self.registry().last_id;
        let start = position.map(|p| Position::new(p.epoch, last_id.unwrap_or(EventId::ZERO)));
        let outcome = match (history, start, last_id) {
            (Some(history), Some(start), Some(_)) => self.replay(&*history, start, first).await,
            _ => Err("no history to recover from"),
        };
        {
            let mut registry = self.registry();
            if let Err(why) = outcome {
                tracing::warn!(
                    why,
                    "the fan-out fell further behind than RING_BYTES and cannot recover: closing its clients (1013) to resume"
                );
                registry.overflow_all();
            }
            registry.next = registry.next.max(first);
        }
        self.cursor.store(first, Ordering::Release);
        outcome.ok().flatten()
    }

    /// Writes the history after `start` up to its top, page by page, to the
    /// shard's clients as if from the ring (at `first`, so every client
    /// registered now gets them).
    async fn replay(
        &self,
        history: &dyn crate::bus::Bus,
        start: Position,
        first: u64,
    ) -> Result<Option<EventId>, &'static str> {
        let mut cursor = start;
        let mut until = None;
        let mut newest = None;
        let mut delivered = Vec::new();
        loop {
            let page = history
                .read_history(cursor, until, PAGE)
                .await
                .map_err(|_| "the history could not be read")?;
            match page.standing {
                Standing::Intact { top } => {
                    until.get_or_insert(top);
                }
                Standing::Gone | Standing::OtherEpoch(_) => {
                    return Err("the history no longer holds what was lost");
                }
            }
            let frames: Vec<Arc<Event>> = page
                .events
                .iter()
                .map(|e| Arc::new(Event::of_history(e, start.epoch, first)))
                .collect();
            counter!(FANOUT_RECOVERED).increment(frames.len() as u64);
            delivered.clear();
            delivered.resize(frames.len(), 0);
            {
                let mut registry = self.registry();
                registry.fan_out(&frames, Instant::now(), &mut delivered);
                if let Some(id) = frames.iter().filter_map(|f| f.id()).max() {
                    registry.last_id = Some(id);
                    newest = Some(id);
                }
            }
            for (frame, &n) in frames.iter().zip(&delivered) {
                frame.sent.increment(n);
            }
            match page.last {
                Some(last) if !page.done => cursor.id = last,
                _ => return Ok(newest.or(until)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use publisher::HistoryPolicy;
    use serde_json::value::RawValue;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::bus::Bus;
    use crate::bus::local::LocalBus;
    use crate::hub::Arrival;

    /// The payloads of the text frames in `wire` (server frames: unmasked,
    /// lengths under 126 here).
    fn texts(wire: &[u8]) -> Vec<String> {
        let mut texts = Vec::new();
        let mut at = 0;
        while at + 2 <= wire.len() {
            let len = usize::from(wire[at + 1]);
            assert!(len < 126, "short frames only");
            if at + 2 + len > wire.len() {
                break;
            }
            texts.push(String::from_utf8(wire[at + 2..at + 2 + len].to_vec()).unwrap());
            at += 2 + len;
        }
        texts
    }

    // One thread: while the test publishes without yielding, the shard
    // cannot run, so the ring (64 KiB: a few hundred frames) drops what the
    // shard has not written yet, as it would on a node starved of CPU.
    #[tokio::test(flavor = "current_thread")]
    async fn a_shard_that_falls_off_the_ring_recovers_from_the_history_and_loses_nothing() {
        let hub = Arc::new(Hub::new(64 * 1024, Arrival::InOrder, 1024));
        let policy = HistoryPolicy {
            max_len: 10_000,
            ttl: Duration::from_secs(60),
        };
        let bus = Arc::new(LocalBus::new(hub.clone(), policy));
        hub.attach_history(bus.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let outbox = Arc::new(Outbox::new(server.into()));
        let joined = hub.subscribe();
        let seam = joined.position.map_or(EventId::ZERO, |p| p.id);
        let _live = hub
            .go_live(
                joined.next_seq,
                outbox.clone(),
                Encoding::WebSocket,
                &TypeFilter::default(),
                seam,
            )
            .unwrap();

        const EVENTS: usize = 2_000;
        for n in 0..EVENTS {
            let data = RawValue::from_string(n.to_string()).unwrap();
            bus.publish("alert", &data).await.unwrap();
        }
        assert!(
            hub.frames_since_checked(joined.next_seq).is_none(),
            "the ring no longer holds the first events"
        );

        let mut wire = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while texts(&wire).len() < EVENTS {
            let _ = outbox.drain().await;
            let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
                .await
                .expect("the shard writes everything")
                .unwrap();
            wire.extend_from_slice(&buf[..n]);
        }
        let got: Vec<usize> = texts(&wire)
            .iter()
            .map(|text| {
                let value: serde_json::Value = serde_json::from_str(text).unwrap();
                value["data"].as_u64().unwrap() as usize
            })
            .collect();
        assert_eq!(
            got,
            (0..EVENTS).collect::<Vec<_>>(),
            "every event once, in order"
        );
        assert_eq!(
            outbox.status(),
            crate::transport::outbox::Status::Drain,
            "not closed"
        );
    }
}
