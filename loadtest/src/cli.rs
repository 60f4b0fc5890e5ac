//! Command-line options.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Opens N WebSocket clients against one or many gateway URLs, publishes
/// events at a set rate and payload size, and reports connect rate, delivered,
/// lost, duplicated and publish→receive latency. Stops by itself after
/// `--duration`. Progress goes to stderr every second; the report to stdout.
// No `Debug`: it holds `--api-key` (the node's publish key), which a
// `{:?}` in a log line would print.
#[derive(Clone, Parser)]
#[command(version, about, args_override_self = true)]
pub struct Args {
    /// WebSocket URL(s) of the gateway(s); clients are spread round-robin.
    /// Repeat the flag or separate with commas.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8000/ws/dashboard"
    )]
    pub url: Vec<String>,

    /// Number of WebSocket clients.
    #[arg(long, short = 'c', default_value_t = 100)]
    pub clients: usize,

    /// Events published per second (0: connect and hold idle).
    #[arg(long, short = 'r', default_value_t = 10.0)]
    pub rate: f64,

    /// Instead of a steady `--rate`: publish this many events at once (as
    /// fast as the batches go), then wait up to `--drain` until every
    /// reading client has all of them. `--rate`, `--duration` and
    /// `--warmup` do not apply; every event's latency is measured.
    #[arg(long, default_value_t = 0)]
    pub burst: u64,

    /// Size in bytes of each event's `data` JSON (sequence number, send time
    /// and padding). At least ~40.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,

    /// How long to publish (or hold idle connections), seconds.
    #[arg(long, short = 'd', default_value = "10", value_parser = parse_secs)]
    pub duration: Duration,

    /// The first part of `--duration` that is not measured (latency, CPU,
    /// throughput), seconds.
    #[arg(long, default_value = "2", value_parser = parse_secs)]
    pub warmup: Duration,

    /// After publishing stops, how long to wait for the last deliveries.
    #[arg(long, default_value = "3", value_parser = parse_secs)]
    pub drain: Duration,

    /// How to publish: `redis` (the publisher crate: history + live, events
    /// get ids), `redis-raw` (a plain PUBLISH, live only), `http` (POST
    /// /api/publish), `none` (idle clients).
    #[arg(long, value_enum, default_value_t = Via::Redis)]
    pub via: Via,

    /// Redis for `--via redis|redis-raw`: the gateway's own variables
    /// (REDIS_URL, REDIS_SENTINELS, REDIS_TLS_*...); default
    /// redis://127.0.0.1:6379.
    #[command(flatten)]
    pub redis: publisher::RedisConfig,

    /// The deployment's CHANNEL_PREFIX (and history settings, for `--via redis`).
    #[command(flatten)]
    pub wire: publisher::WireConfig,

    /// URL of POST /api/publish for `--via http` (default: derived from the
    /// first `--url`).
    #[arg(long)]
    pub publish_url: Option<String>,

    /// Bearer key for `--via http`.
    #[arg(long, env = "PUBLISH_API_KEY", default_value = "")]
    pub api_key: String,

    /// Event type to publish (clients subscribe with `?types=` to it unless
    /// `--all-types`).
    #[arg(long = "type", default_value = "loadtest")]
    pub kind: String,

    /// Don't add `?types=<type>` to the client URLs.
    #[arg(long)]
    pub all_types: bool,

    /// Extra clients, besides `--clients`, that subscribe with
    /// `?types=<--filtered-types>`: types the published events never match.
    /// The gateway should neither send them anything nor close them; the
    /// report says how many were closed and how many frames they received.
    #[arg(long, default_value_t = 0)]
    pub filtered_clients: usize,

    /// The types `--filtered-clients` subscribe to (comma-separated); must
    /// not include `--type`.
    #[arg(long, value_delimiter = ',', default_value = "intervention")]
    pub filtered_types: Vec<String>,

    /// Publish requests in flight at once, one worker each (`--via http`).
    /// Through Redis events go out in batches instead (see
    /// `--max-pipeline`).
    #[arg(long, default_value_t = 8)]
    pub inflight: usize,

    /// Most events in one batch through Redis: one call of the publish
    /// script (`--via redis`; it takes at most 1,000 events and 4 MiB) or
    /// one pipeline of PUBLISH (`--via redis-raw`). Every millisecond the
    /// events due by then go out in one batch; more than this (a burst, or
    /// catching up) go out in several, back to back.
    #[arg(long, default_value_t = 1000)]
    pub max_pipeline: usize,

    /// Threads running the clients (each a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,

    /// Give up on clients not connected after this long, seconds.
    #[arg(long, default_value = "60", value_parser = parse_secs)]
    pub connect_timeout: Duration,

    /// Local addresses to bind client sockets to, round-robin (each gives
    /// ~28k ephemeral ports), e.g. `127.0.0.2,127.0.0.3`.
    #[arg(long, value_delimiter = ',')]
    pub source_ip: Vec<IpAddr>,

    /// Share of clients (0..1) that stop reading `--slow-after` seconds
    /// into the run; reported apart from the others.
    #[arg(long, default_value_t = 0.0)]
    pub slow_share: f64,

    /// When slow clients stop reading, seconds after publishing starts.
    #[arg(long, default_value = "2", value_parser = parse_secs)]
    pub slow_after: Duration,

    /// SO_RCVBUF of slow clients' sockets, bytes (small: the gateway sees
    /// back-pressure early).
    #[arg(long, default_value_t = 4096)]
    pub slow_rcvbuf: u32,

    /// Offer permessage-deflate (`Sec-WebSocket-Extensions:
    /// permessage-deflate; client_max_window_bits`, as Chrome does) and
    /// inflate what the gateway compresses. The report says how many
    /// clients the gateway accepted it for; the wire bytes it prints (with
    /// or without this) are what the sockets read, before inflating.
    #[arg(long)]
    pub deflate: bool,

    /// Client read buffer, bytes.
    #[arg(long, default_value_t = 8192)]
    pub read_buffer: usize,

    /// Churn (soak runs): every second this many connected clients vanish
    /// and as many new ones connect in their place, so the count stays near
    /// `--clients`. By default a churned client drops its TCP socket without
    /// a WebSocket close (see `--churn-close-share`, `--churn-silent-share`).
    /// Churn runs from the start of publishing until it stops.
    #[arg(long, default_value_t = 0.0)]
    pub churn_per_sec: f64,

    /// Share (0..1) of churned clients that send a clean WebSocket close
    /// instead of vanishing.
    #[arg(long, default_value_t = 0.0)]
    pub churn_close_share: f64,

    /// Share (0..1) of churned clients that go silent instead: they stop
    /// reading and never answer pings, keep the socket open for
    /// `--churn-silent-hold`, then drop it (a peer gone without a FIN, as
    /// far as the gateway can tell: its ping timeout has to find them).
    #[arg(long, default_value_t = 0.0)]
    pub churn_silent_share: f64,

    /// How long a silent churned client holds its socket, seconds.
    #[arg(long, default_value = "45", value_parser = parse_secs)]
    pub churn_silent_hold: Duration,

    /// Share (0..1) of the first `--clients` that churn never picks: the
    /// steady clients, connected for the whole run, on which lost and
    /// duplicated are counted as without churn.
    #[arg(long, default_value_t = 0.1)]
    pub churn_exempt: f64,

    /// Write a time series, one CSV row per second (clients, churn,
    /// publishes, deliveries, and RSS, open fds and CPU of every watched
    /// process). Also turns on the series table and the warm-vs-end
    /// comparison in the report (on anyway with `--churn-per-sec`).
    #[arg(long)]
    pub series: Option<String>,

    /// Spacing of the rows of the series table in the report, seconds.
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    pub series_every: Duration,

    /// Local processes to account (CPU, RSS) as `name=pid`, e.g.
    /// `gateway=1234`; repeatable. Linux only (/proc).
    #[arg(long = "watch-pid", value_parser = parse_watch)]
    pub watch: Vec<(String, u32)>,

    /// Also write the report as JSON to this file (`-`: stdout).
    #[arg(long)]
    pub json: Option<String>,

    /// A name for this run in the report.
    #[arg(long, default_value = "")]
    pub label: String,

    /// No progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    Redis,
    RedisRaw,
    Http,
    None,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Redis => "redis",
            Via::RedisRaw => "redis-raw",
            Via::Http => "http",
            Via::None => "none",
        }
    }
}

fn parse_secs(value: &str) -> Result<Duration, String> {
    let value = value.trim_end_matches('s');
    let secs: f64 = value.parse().map_err(|_| format!("not seconds: {value}"))?;
    Duration::try_from_secs_f64(secs).map_err(|err| err.to_string())
}

fn parse_watch(value: &str) -> Result<(String, u32), String> {
    let (name, pid) = value
        .split_once('=')
        .ok_or_else(|| format!("expected name=pid, got {value}"))?;
    let pid = pid.parse().map_err(|_| format!("not a pid: {pid}"))?;
    Ok((name.to_owned(), pid))
}

impl Args {
    pub fn publishing(&self) -> bool {
        self.via != Via::None && (self.rate > 0.0 || self.bursting())
    }

    /// `--burst N`: N events at once instead of a rate.
    pub fn bursting(&self) -> bool {
        self.burst > 0
    }

    pub fn churning(&self) -> bool {
        self.churn_per_sec > 0.0
    }

    /// Whether the per-second series (RSS, fds...) is kept and reported.
    pub fn series_on(&self) -> bool {
        self.series.is_some() || self.churning()
    }
}
