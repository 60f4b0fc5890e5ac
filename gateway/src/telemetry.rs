//! Prometheus metrics: every name in one place, the recorder installed once
//! per process, and logging set up for the binary.

use std::sync::OnceLock;

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
pub const REPLAYS: &str = "gateway_replays_total";
pub const REPLAYED_EVENTS: &str = "gateway_replayed_events_total";
pub const RECOVERIES_FAILED: &str = "gateway_recoveries_failed_total";

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
    describe_counter!(BUS_INVALID_PAYLOADS, "Bus payloads dropped as malformed");
    describe_counter!(
        BUS_CATCHUP_GAPS,
        "Reconnects after which history could not cover the outage"
    );
    describe_counter!(REPLAYS, "Resumes (?since=) served");
    describe_counter!(REPLAYED_EVENTS, "Events sent from history on resume");
    describe_counter!(RECOVERIES_FAILED, "Resumes answered with recovered=false");
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
