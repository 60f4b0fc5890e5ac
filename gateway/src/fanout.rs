//! The node's live clients, and the tasks that write each event to them.
//!
//! Live clients are split over a few shards (one per core), each served by
//! one task that reads the hub's broadcast ring and writes every event its
//! clients want straight into their [`Outbox`]es: one non-blocking write per
//! client per batch, and no client task woken (see `ws::outbox` for why).
//!
//! Batching: a shard task takes everything the ring holds when it writes
//! (up to [`MAX_BATCH`] events) and writes it to each client with one
//! `writev`. Two things make batches:
//! - falling behind (a burst, a busy machine): batches grow and the cost per
//!   delivery falls, which is what lets the shard catch up;
//! - `FLUSH_INTERVAL_MS`: writes are at least that far apart. An event after
//!   a quiet spell goes out at once; one that follows within the interval
//!   waits for it, with whatever else arrives meanwhile. On loopback one
//!   `send()` costs about the same for one small frame as for several (the
//!   TCP and wake-up work is per call). At 1,000 clients × 100 events/s on
//!   loopback, measured in one sitting (BENCHMARKS.md): 0 ms → 178–181k
//!   deliveries per CPU-second, p99 27 ms; 12 ms (the default) → 258k, p99
//!   28 ms; 20 ms → 345k, p99 37 ms.
//!
//! Before its greeting and replay are out, a client reads the ring itself;
//! `Hub::go_live` moves it to a shard at an exact sequence number, under the
//! shard's lock, so nothing is lost or sent twice at the switch.
//!
//! Slots are reused (a free list) so a shard walks a dense vector and
//! joining or leaving costs no reallocation under load.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use metrics::Histogram;
use shared::{EventId, TypeFilter};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, sleep_until};

use crate::hub::Frame;
use crate::ws::outbox::{MAX_IOV, Outbox};

/// Most events one batch takes from the ring (one `writev` per client).
pub const MAX_BATCH: usize = MAX_IOV;

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

    /// Writes the frames of `batch` each client wants, one `writev` per
    /// client; counts deliveries into `delivered` (by position in `batch`).
    fn fan_out(&self, batch: &[Arc<Frame>], delivered: &mut [u64]) {
        let mut wanted: [&Bytes; MAX_BATCH] = [&EMPTY; MAX_BATCH];
        for subscriber in self.slots.iter().flatten() {
            let mut n = 0;
            for (i, frame) in batch.iter().enumerate() {
                if frame.seq >= subscriber.from_seq && subscriber.wants(frame) {
                    wanted[n] = &frame.wire;
                    n += 1;
                    delivered[i] += 1;
                }
            }
            if n > 0 {
                subscriber.outbox.push_broadcast(&wanted[..n]);
            }
        }
    }

    /// Closes every client (1013): the shard lost events it owed them.
    fn overflow_all(&self) {
        for subscriber in self.slots.iter().flatten() {
            subscriber.outbox.overflow();
        }
    }

    /// The most broadcast frames any live client has waiting.
    fn most_waiting(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .map(|s| s.outbox.waiting())
            .max()
            .unwrap_or(0)
    }
}

static EMPTY: Bytes = Bytes::new();

/// A share of the live clients and the task that writes to them.
#[derive(Debug, Default)]
pub struct Shard {
    registry: Mutex<Registry>,
}

impl Shard {
    /// Held while a batch is written, and while a client goes live.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        // Plain data, and nothing under the lock panics.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn most_waiting(&self) -> usize {
        self.registry().most_waiting()
    }

    /// The shard's task: reads the ring until the hub is gone. `latency`:
    /// `gateway_broadcast_latency_seconds`, publish to written (or queued),
    /// once per event per shard. `interval`: least time between writes.
    pub async fn run(
        self: Arc<Self>,
        mut rx: Receiver<Arc<Frame>>,
        latency: Histogram,
        interval: Duration,
    ) {
        let mut batch: Vec<Arc<Frame>> = Vec::with_capacity(MAX_BATCH);
        let mut delivered = [0u64; MAX_BATCH];
        let mut last_write: Option<Instant> = None;
        loop {
            match rx.recv().await {
                Ok(frame) => batch.push(frame),
                Err(RecvError::Lagged(_)) => {
                    // The node is so far behind that events this shard owed
                    // its clients are gone from the ring: close them all with
                    // 1013; they resume with `?since=` from the history.
                    self.registry().overflow_all();
                    continue;
                }
                Err(RecvError::Closed) => return,
            }
            // Too soon after the last write: wait out the interval, and let
            // what arrives meanwhile join this write.
            if let Some(due) = last_write.map(|at| at + interval)
                && due > Instant::now()
            {
                sleep_until(due).await;
            }
            // Whatever else is already there joins the batch.
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(frame) => batch.push(frame),
                    Err(TryRecvError::Lagged(_)) => {
                        self.registry().overflow_all();
                        batch.clear();
                        break;
                    }
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            delivered[..batch.len()].fill(0);
            self.registry().fan_out(&batch, &mut delivered);
            last_write = Some(Instant::now());
            let now = Utc::now();
            for (frame, &n) in batch.iter().zip(&delivered) {
                if n > 0 {
                    frame.sent.increment(n);
                    let micros = (now - frame.published_at).num_microseconds().unwrap_or(0);
                    latency.record(micros.max(0) as f64 / 1e6);
                }
            }
            batch.clear();
        }
    }
}
