//! The node's recent events, in order: what the fan-out shards read, and
//! where a client switching to live picks up what arrived during its
//! greeting and replay.
//!
//! One shared log instead of a queue per reader: each reader (a shard, a
//! client about to go live) is a sequence number into it, so falling behind
//! costs a reader nothing but its place. The ring is bounded by bytes and by
//! age, not by a count of events, so a burst of small events never pushes a
//! reader off it:
//! - an event stays while any shard has yet to write it, up to `max_bytes`
//!   (`RING_BYTES`) of events in all; past that the oldest go, and a shard
//!   that had not written them recovers them from the history
//!   (`fanout::Shard::run`);
//! - once every shard has written it, an event stays for [`KEEP`] more, for
//!   clients still being greeted or replayed; one slower than that re-reads
//!   the history instead (`session`).
//!
//! Appending never waits for a reader: publishing never waits for a client.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::hub::Event;

/// How long an event every shard has written stays for clients not yet
/// live. A greeting plus a replay of a full history (10,000 events: 80
/// pages) takes well under this; a client slower than that reads the
/// history again, so a longer stay would only hold memory (at 50,000
/// events/s, 2 s of them is ~25 MB).
pub const KEEP: Duration = Duration::from_secs(2);

/// Bytes an event costs the ring beyond its wire bytes (the `Event`, its
/// `Arc`, the slot).
const OVERHEAD: usize = std::mem::size_of::<Event>() + 48;

#[derive(Debug)]
pub struct Ring {
    inner: Mutex<Inner>,
    /// Woken on every append: the shards wait here when they are caught up.
    pub appended: Notify,
    max_bytes: usize,
    /// The next sequence number each shard will read (`u64::MAX` for a
    /// shard not started yet: it holds nothing back).
    cursors: Vec<Arc<AtomicU64>>,
}

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<(Arc<Event>, Instant)>,
    /// The sequence number of `frames[0]` (or of the next frame, when empty).
    first: u64,
    bytes: usize,
}

/// What a read found.
#[derive(Debug)]
pub enum Read {
    /// The frames from the asked-for sequence number on (possibly none).
    Events(Vec<Arc<Event>>),
    /// The asked-for frames are gone; the ring now starts at `first`.
    Gone { first: u64 },
}

impl Ring {
    /// `readers`: how many shards will read it.
    pub fn new(max_bytes: usize, readers: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            appended: Notify::new(),
            max_bytes,
            cursors: (0..readers)
                .map(|_| Arc::new(AtomicU64::new(u64::MAX)))
                .collect(),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Plain data, and nothing under the lock panics.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cursor of shard `i`: the shard stores there the next sequence
    /// number it will read, so the ring keeps what it has yet to write.
    pub fn cursor(&self, i: usize) -> Arc<AtomicU64> {
        self.cursors[i].clone()
    }

    /// The sequence number the next appended frame gets.
    pub fn next_seq(&self) -> u64 {
        let inner = self.inner();
        inner.first + inner.frames.len() as u64
    }

    /// Appends `frame` (its `seq` must be [`Self::next_seq`]) and drops what
    /// no one needs any more, or what is over the byte bound.
    pub fn push(&self, frame: Arc<Event>) {
        self.push_at(frame, Instant::now());
    }

    fn push_at(&self, frame: Arc<Event>, now: Instant) {
        {
            let mut inner = self.inner();
            debug_assert_eq!(frame.seq, inner.first + inner.frames.len() as u64);
            inner.bytes += cost(&frame);
            inner.frames.push_back((frame, now));
            let slowest = self
                .cursors
                .iter()
                .map(|c| c.load(Ordering::Acquire))
                .min()
                .unwrap_or(u64::MAX);
            while let Some((front, at)) = inner.frames.front() {
                let over = inner.bytes > self.max_bytes;
                let done_with = front.seq < slowest && now.duration_since(*at) > KEEP;
                if !over && !done_with {
                    break;
                }
                inner.bytes -= cost(front);
                inner.frames.pop_front();
                inner.first += 1;
            }
        }
        self.appended.notify_waiters();
    }

    /// How many frames the slowest started shard has yet to read.
    pub fn backlog(&self) -> usize {
        let next = self.next_seq();
        self.cursors
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .filter(|&c| c != u64::MAX)
            .map(|c| next.saturating_sub(c) as usize)
            .max()
            .unwrap_or(0)
    }

    /// Up to `max_bytes` of frames (at least one, if any) from `from` on.
    pub fn read(&self, from: u64, max_bytes: usize) -> Read {
        let inner = self.inner();
        if from < inner.first {
            return Read::Gone { first: inner.first };
        }
        let skip = (from - inner.first) as usize;
        let mut bytes = 0;
        let frames = inner
            .frames
            .iter()
            .skip(skip)
            .take_while(|(frame, _)| {
                let take = bytes == 0 || bytes + frame.weight() <= max_bytes;
                bytes += frame.weight();
                take
            })
            .map(|(frame, _)| frame.clone())
            .collect();
        Read::Events(frames)
    }

    /// Events held and their bytes (for tests and the ring's gauge).
    #[cfg(test)]
    pub fn held(&self) -> (usize, usize) {
        let inner = self.inner();
        (inner.frames.len(), inner.bytes)
    }
}

fn cost(frame: &Event) -> usize {
    frame.weight() + frame.kind.len() + OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Event;

    fn frame(seq: u64, bytes: usize) -> Arc<Event> {
        Arc::new(Event::for_test(seq, "alert", None, &"x".repeat(bytes)))
    }

    fn seqs(read: Read) -> Vec<u64> {
        match read {
            Read::Events(frames) => frames.iter().map(|f| f.seq).collect(),
            Read::Gone { first } => panic!("gone, first {first}"),
        }
    }

    #[test]
    fn events_stay_while_a_shard_has_not_written_them() {
        let ring = Ring::new(1 << 20, 1);
        ring.cursor(0).store(0, Ordering::Release);
        let start = Instant::now();
        for seq in 0..1000 {
            ring.push_at(frame(seq, 100), start);
        }
        let later = start + KEEP * 2;
        ring.push_at(frame(1000, 100), later);
        assert_eq!(ring.held().0, 1001, "the shard is at 0: all kept");
        ring.cursor(0).store(990, Ordering::Release);
        ring.push_at(frame(1001, 100), later);
        assert_eq!(
            seqs(ring.read(990, usize::MAX)),
            (990..1002).collect::<Vec<_>>()
        );
        assert!(matches!(ring.read(5, 100), Read::Gone { first: 990 }));
    }

    #[test]
    fn written_events_stay_for_clients_not_yet_live_then_go() {
        let ring = Ring::new(1 << 20, 1);
        let start = Instant::now();
        ring.push_at(frame(0, 10), start);
        ring.cursor(0).store(1, Ordering::Release);
        ring.push_at(frame(1, 10), start);
        assert_eq!(seqs(ring.read(0, usize::MAX)), [0, 1], "written, but young");
        ring.push_at(frame(2, 10), start + KEEP + Duration::from_millis(1));
        assert!(matches!(ring.read(0, 10), Read::Gone { first: 1 }));
    }

    #[test]
    fn the_byte_bound_holds_even_against_a_stalled_shard() {
        let each = cost(&frame(0, 100));
        let ring = Ring::new(100 * each, 1);
        ring.cursor(0).store(0, Ordering::Release);
        for seq in 0..1000 {
            ring.push(frame(seq, 100));
        }
        assert_eq!(ring.held(), (100, 100 * each), "the newest 100 frames");
        assert!(matches!(ring.read(0, 10), Read::Gone { first: 900 }));
    }

    #[test]
    fn a_read_takes_at_least_one_frame_and_stops_at_its_byte_budget() {
        let ring = Ring::new(1 << 20, 1);
        for seq in 0..10 {
            ring.push(frame(seq, 100));
        }
        let one = seqs(ring.read(0, 1));
        assert_eq!(one.len(), 1);
        let some = seqs(ring.read(3, 350));
        assert_eq!(some, [3, 4, 5], "frames are 102 bytes");
        assert!(seqs(ring.read(10, 1000)).is_empty());
    }
}
