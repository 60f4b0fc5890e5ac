//! Prometheus metrics: every name in one place, the recorder installed once
//! per process, and logging set up for the binary.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const CONNECTIONS_ACTIVE: &str = "gateway_connections_active";
pub const CONNECTIONS_OPENED: &str = "gateway_connections_opened_total";
pub const CONNECTIONS_CLOSED: &str = "gateway_connections_closed_total";
pub const HANDSHAKES_REJECTED: &str = "gateway_handshakes_rejected_total";
pub const MESSAGES_SENT: &str = "gateway_messages_sent_total";
pub const SLOW_CLIENT_DISCONNECTS: &str = "gateway_slow_client_disconnects_total";
pub const BROADCAST_LATENCY: &str = "gateway_broadcast_latency_seconds";
pub const CLIENT_ERRORS: &str = "gateway_client_errors_total";
pub const PUBLISH_REQUESTS: &str = "gateway_publish_requests_total";
pub const BUS_CONNECTED: &str = "gateway_bus_connected";
pub const BUS_RECONNECTS: &str = "gateway_bus_reconnects_total";
pub const BUS_MESSAGES_RECEIVED: &str = "gateway_bus_messages_received_total";
pub const BUS_INVALID_PAYLOADS: &str = "gateway_bus_invalid_payloads_total";
pub const BUS_CATCHUP_GAPS: &str = "gateway_bus_catchup_gaps_total";
pub const BUS_REJECTED_IDS: &str = "gateway_bus_rejected_ids_total";
pub const BUS_HISTORY_RESETS: &str = "gateway_bus_history_resets_total";
pub const STATE_KEYS: &str = "gateway_state_keys";
pub const STATE_EVICTIONS: &str = "gateway_state_evictions_total";
pub const STATE_SUPERSEDED: &str = "gateway_state_superseded_total";
pub const STATE_READS: &str = "gateway_state_reads_total";
pub const STATE_EVENTS_SENT: &str = "gateway_state_events_sent_total";
pub const FANOUT_GAPS: &str = "gateway_fanout_gaps_total";
pub const FANOUT_RECOVERED: &str = "gateway_fanout_recovered_events_total";
pub const REPLAYS_DEFERRED: &str = "gateway_replays_deferred_total";
pub const REPLAYS: &str = "gateway_replays_total";
pub const REPLAYED_EVENTS: &str = "gateway_replayed_events_total";
pub const RECOVERIES_FAILED: &str = "gateway_recoveries_failed_total";
pub const JWKS_REFRESH: &str = "gateway_jwks_refresh_total";

/// Lets a log line through at most once per interval, counting the ones it
/// held back: a flood of bad input must not become a flood of log lines.
#[derive(Debug)]
pub struct Throttle {
    interval_ms: u64,
    /// When the last line went out, ms since the Unix epoch.
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval_ms: interval.as_millis() as u64,
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may go out.
    pub fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.interval_ms
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Publish-to-socket latency buckets, seconds: fine below 100 ms, where the
/// product's target is.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process-wide recorder. The `metrics` facade has one global recorder,
/// so several nodes started in one test process share it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(BROADCAST_LATENCY.into()), &LATENCY_BUCKETS)
                .expect("non-empty bucket list")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_gauge!(
        CONNECTIONS_ACTIVE,
        "WebSocket clients connected to this node"
    );
    describe_counter!(CONNECTIONS_OPENED, "WebSocket connections accepted");
    describe_counter!(
        CONNECTIONS_CLOSED,
        "WebSocket connections closed, by reason"
    );
    describe_counter!(
        HANDSHAKES_REJECTED,
        "WebSocket handshakes refused, by reason"
    );
    describe_counter!(
        MESSAGES_SENT,
        "Broadcast events written to clients, by type"
    );
    describe_counter!(
        SLOW_CLIENT_DISCONNECTS,
        "Clients dropped for falling too far behind"
    );
    describe_histogram!(
        BROADCAST_LATENCY,
        Unit::Seconds,
        "Event publish time to socket write"
    );
    describe_counter!(CLIENT_ERRORS, "Error replies sent to clients, by code");
    describe_counter!(PUBLISH_REQUESTS, "POST /api/publish requests, by result");
    describe_gauge!(BUS_CONNECTED, "1 while the bus is connected and subscribed");
    describe_counter!(
        BUS_RECONNECTS,
        "Times the bus subscription was re-established"
    );
    describe_counter!(BUS_MESSAGES_RECEIVED, "Payloads received from the bus");
    describe_counter!(
        BUS_INVALID_PAYLOADS,
        "Bus payloads dropped, by reason (malformed, too_large)"
    );
    describe_counter!(
        BUS_REJECTED_IDS,
        "Bus payloads whose id the history did not assign (sent live-only without it), by reason"
    );
    describe_gauge!(
        STATE_KEYS,
        "Keys in this node's copy of the keyed state, all types (as of its last load from the history)"
    );
    describe_counter!(
        STATE_EVICTIONS,
        "Keys the publish script evicted from the state to stay within STATE_MAX_KEYS / STATE_TTL_SECS"
    );
    describe_counter!(
        STATE_SUPERSEDED,
        "Keyed events that reached this node after a later event of their key (a Redis Cluster's history re-read), not sent live"
    );
    describe_counter!(STATE_READS, "Clients sent the current state (?state=1)");
    describe_counter!(
        STATE_EVENTS_SENT,
        "Keyed events sent to clients as their current state"
    );
    describe_counter!(
        BUS_HISTORY_RESETS,
        "Times the history was found created anew (a new epoch)"
    );
    describe_counter!(
        FANOUT_GAPS,
        "Times a fan-out shard fell further behind than RING_BYTES and read the history for what it lost"
    );
    describe_counter!(
        FANOUT_RECOVERED,
        "Events a fan-out shard read back from the history after falling behind the ring"
    );
    describe_counter!(
        REPLAYS_DEFERRED,
        "Resumes told to retry (1013) because too many replays were running"
    );
    describe_counter!(
        BUS_CATCHUP_GAPS,
        "Reconnects after which history could not cover the outage"
    );
    describe_counter!(REPLAYS, "Resumes (?since=) served");
    describe_counter!(REPLAYED_EVENTS, "Events sent from history on resume");
    describe_counter!(RECOVERIES_FAILED, "Resumes answered with recovered=false");
    describe_counter!(JWKS_REFRESH, "JWKS fetches, by result (ok, error)");
}

/// The `type` label of per-type metrics. Types are open-ended, so only the
/// product's four get their own label: a publisher inventing types cannot
/// blow up the metric's cardinality.
pub fn type_label(kind: &str) -> &'static str {
    shared::kind::KNOWN
        .into_iter()
        .find(|known| *known == kind)
        .unwrap_or("other")
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
