//! Counters and latency histograms, one set per client thread (shard), merged
//! for the progress line and the report.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, 3 significant digits, up to 60 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

#[derive(Debug)]
pub struct Counts {
    /// Clients that got their greeting.
    pub connected: u64,
    pub connect_failed: u64,
    /// Non-slow clients whose connection ended before the run did.
    pub disconnected: u64,
    /// Close codes (or "eof"/"error") of those, for the report.
    pub close_reasons: Vec<String>,
    /// Test events received by non-slow clients, duplicates included.
    pub delivered: u64,
    pub duplicated: u64,
    /// Events (first copies) that reached a non-slow client after one with a
    /// higher `seq`: meaningful when the publisher sends in order (one
    /// connection, batches), as it does through Redis.
    pub order_violations: u64,
    /// `--burst`: initial reading clients that received every one of the N
    /// events, and when the first and the last of them had (Unix ns).
    pub burst_complete: u64,
    pub burst_first_complete_nanos: u64,
    pub burst_last_complete_nanos: u64,
    /// `--filtered-clients`: connected, failed to connect, closed by the
    /// server before the run ended, and frames they received after the
    /// greeting (test events or anything else: all should be 0 but the first).
    pub filtered_connected: u64,
    pub filtered_connect_failed: u64,
    pub filtered_closed: u64,
    pub filtered_received: u64,
    /// Test events received by slow clients (before and after they stalled).
    pub slow_delivered: u64,
    /// Frames that are not test events (greetings, pongs...).
    pub other_frames: u64,
    /// Text bytes of the test events received (inflated).
    pub bytes: u64,
    /// Bytes read from the sockets (compressed, if deflate was on) by
    /// connected clients, handshake included: in all, and of that up to
    /// each one's greeting.
    pub wire_bytes: u64,
    pub wire_bytes_connect: u64,
    /// Connected clients whose handshake accepted permessage-deflate.
    pub deflate_negotiated: u64,
    /// Filled in when the run ends: events published but never received.
    pub lost: u64,
    pub slow_clients: u64,
    /// Slow clients the server had closed by the end of the run.
    pub slow_closed: u64,
    /// Latency (µs) of measured deliveries to non-slow clients.
    pub latency: Histogram<u64>,
    /// The same, since the last progress line.
    pub latency_interval: Histogram<u64>,
    /// Handshake + greeting time (µs).
    pub connect_time: Histogram<u64>,
    // Churn (`--churn-per-sec`). `connected`, `delivered`, `duplicated` and
    // `lost` above cover the initial clients only, and of those only the
    // ones never churned (a churned client's deliveries move to
    // `churned_delivered`); replacements are counted apart, per connection.
    /// Replacement clients that got their greeting.
    pub late_connected: u64,
    pub late_connect_failed: u64,
    /// Replacements' handshake + greeting time (µs), under load.
    pub late_connect_time: Histogram<u64>,
    /// Test events received by replacements not (yet) churned.
    pub late_delivered: u64,
    pub late_duplicated: u64,
    /// Replacements alive at the end, and what they missed of the events
    /// handed to the publisher after their greeting.
    pub late_alive: u64,
    pub late_lost: u64,
    /// Churned clients, by how they left.
    pub churned_drop: u64,
    pub churned_close: u64,
    pub churned_silent: u64,
    /// Of the churned, how many were initial clients (the rest replacements).
    pub churned_initial: u64,
    /// Test events received by clients before they were churned.
    pub churned_delivered: u64,
    pub churned_duplicated: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            connected: 0,
            connect_failed: 0,
            disconnected: 0,
            close_reasons: Vec::new(),
            delivered: 0,
            duplicated: 0,
            order_violations: 0,
            burst_complete: 0,
            burst_first_complete_nanos: 0,
            burst_last_complete_nanos: 0,
            filtered_connected: 0,
            filtered_connect_failed: 0,
            filtered_closed: 0,
            filtered_received: 0,
            slow_delivered: 0,
            other_frames: 0,
            bytes: 0,
            wire_bytes: 0,
            wire_bytes_connect: 0,
            deflate_negotiated: 0,
            lost: 0,
            slow_clients: 0,
            slow_closed: 0,
            latency: histogram(),
            latency_interval: histogram(),
            connect_time: histogram(),
            late_connected: 0,
            late_connect_failed: 0,
            late_connect_time: histogram(),
            late_delivered: 0,
            late_duplicated: 0,
            late_alive: 0,
            late_lost: 0,
            churned_drop: 0,
            churned_close: 0,
            churned_silent: 0,
            churned_initial: 0,
            churned_delivered: 0,
            churned_duplicated: 0,
        }
    }
}

impl Counts {
    pub fn merge(&mut self, other: &Counts) {
        self.connected += other.connected;
        self.connect_failed += other.connect_failed;
        self.disconnected += other.disconnected;
        self.close_reasons
            .extend(other.close_reasons.iter().take(20).cloned());
        self.delivered += other.delivered;
        self.duplicated += other.duplicated;
        self.order_violations += other.order_violations;
        self.burst_complete += other.burst_complete;
        self.burst_first_complete_nanos = match (
            self.burst_first_complete_nanos,
            other.burst_first_complete_nanos,
        ) {
            (0, b) => b,
            (a, 0) => a,
            (a, b) => a.min(b),
        };
        self.burst_last_complete_nanos = self
            .burst_last_complete_nanos
            .max(other.burst_last_complete_nanos);
        self.filtered_connected += other.filtered_connected;
        self.filtered_connect_failed += other.filtered_connect_failed;
        self.filtered_closed += other.filtered_closed;
        self.filtered_received += other.filtered_received;
        self.slow_delivered += other.slow_delivered;
        self.other_frames += other.other_frames;
        self.bytes += other.bytes;
        self.wire_bytes += other.wire_bytes;
        self.wire_bytes_connect += other.wire_bytes_connect;
        self.deflate_negotiated += other.deflate_negotiated;
        self.lost += other.lost;
        self.slow_clients += other.slow_clients;
        self.slow_closed += other.slow_closed;
        // Same bounds everywhere: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.latency_interval.add(&other.latency_interval);
        let _ = self.connect_time.add(&other.connect_time);
        self.late_connected += other.late_connected;
        self.late_connect_failed += other.late_connect_failed;
        let _ = self.late_connect_time.add(&other.late_connect_time);
        self.late_delivered += other.late_delivered;
        self.late_duplicated += other.late_duplicated;
        self.late_alive += other.late_alive;
        self.late_lost += other.late_lost;
        self.churned_drop += other.churned_drop;
        self.churned_close += other.churned_close;
        self.churned_silent += other.churned_silent;
        self.churned_initial += other.churned_initial;
        self.churned_delivered += other.churned_delivered;
        self.churned_duplicated += other.churned_duplicated;
    }

    /// Test events received by every client, whatever its kind.
    pub fn received(&self) -> u64 {
        self.delivered + self.slow_delivered + self.late_delivered + self.churned_delivered
    }

    pub fn churned(&self) -> u64 {
        self.churned_drop + self.churned_close + self.churned_silent
    }

    /// Every client that got a greeting or gave up, filtered ones included:
    /// the connect phase ends when this reaches the number asked for.
    pub fn settled(&self) -> u64 {
        self.connected
            + self.connect_failed
            + self.filtered_connected
            + self.filtered_connect_failed
    }

    /// Clients connected now (as far as the generator knows).
    pub fn live(&self) -> u64 {
        (self.connected + self.late_connected).saturating_sub(self.disconnected + self.churned())
    }
}

/// One shard's counts. Only its own thread and the once-a-second reporter
/// take the lock, so it is practically uncontended.
#[derive(Debug, Default)]
pub struct Shard {
    counts: Mutex<Counts>,
    /// The thread's id (Linux), once it runs: its own CPU time says whether
    /// the generator kept up (0: unknown).
    pub tid: AtomicU32,
}

impl Shard {
    pub fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the publisher shares with the clients.
#[derive(Debug, Default)]
pub struct PublishCounts {
    /// Sequence numbers handed out (attempts).
    pub attempted: AtomicU64,
    /// Publishes the bus (or the API) acknowledged.
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    /// The largest backlog of events due by the schedule but not yet sent
    /// (handed to a worker, or put in a batch) when the schedule looked.
    pub behind: AtomicU64,
    /// How late the most overdue event went out against the schedule, µs:
    /// above a millisecond or two the publisher, not the gateway, fell
    /// behind (a steady rate only; a burst's events are all due at once).
    pub lag_max_micros: AtomicU64,
    /// Events the schedule asked for in all: `--rate` × `--duration`, or
    /// `--burst`. Set when publishing stops.
    pub scheduled: AtomicU64,
    /// Batches sent through Redis (pipelines of PUBLISH, or calls of the
    /// publish script) and the most events in one.
    pub pipelines: AtomicU64,
    pub largest_pipeline: AtomicU64,
    /// When the first event went out and the last acknowledgement came
    /// back (Unix ns; 0 before): the span the achieved rate is counted over.
    pub first_sent_nanos: AtomicU64,
    pub last_ack_nanos: AtomicU64,
    /// Sequence number from which latency is measured (after the warm-up).
    pub measure_from: AtomicU64,
}

impl PublishCounts {
    pub fn new() -> Self {
        let counts = Self::default();
        counts.measure_from.store(u64::MAX, Ordering::Relaxed);
        counts
    }
}
