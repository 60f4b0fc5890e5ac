//! The publisher: a schedule hands out sequence numbers at `--rate` (or
//! `--burst` of them at once) and they go out through Redis (the history
//! script, or a raw PUBLISH) or `POST /api/publish`.
//!
//! Through Redis, events go out in batches on one connection: every
//! millisecond, the events due by then form one batch (at most
//! `--max-pipeline`; more go out in several, back to back). `--via redis`
//! sends a batch as one call of the publish script
//! (`Publisher::publish_batch`: atomic, in order, every event with its id),
//! `--via redis-raw` as one pipeline of PUBLISH commands. One batch is in
//! flight at a time, so Redis runs the events in `seq` order and the
//! clients' order count means something; the next batch carries whatever
//! came due while one was out, so the rate holds as long as Redis does. A
//! request per event does not: at 50,000 events/s one round trip each is
//! more than a connection can do, and several connections would reorder.
//!
//! `--via http` keeps `--inflight` workers, one request each.
//!
//! The send time is taken right before each send (a batch's events share
//! it), so latency is the gateway path, not the schedule's queue; how late
//! the schedule ran is reported apart (`lag_max_micros`), as is the rate
//! achieved, so a run that could not publish as asked says so.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use serde_json::value::RawValue;
use tokio::sync::{Mutex, mpsc};
use tokio::time::{Instant, MissedTickBehavior};

use crate::cli::{Args, Via};
use crate::client::unix_nanos;
use crate::stats::PublishCounts;

/// What the schedule asks for.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Rate { rate: f64, duration: Duration },
    Burst(u64),
}

impl Plan {
    fn of(args: &Args) -> Self {
        if args.bursting() {
            Plan::Burst(args.burst)
        } else {
            Plan::Rate {
                rate: args.rate,
                duration: args.duration,
            }
        }
    }

    /// Events due `elapsed` after the start (all of them for a burst);
    /// `None` once the schedule is over.
    fn due(self, elapsed: Duration) -> Option<u64> {
        match self {
            Plan::Rate { duration, .. } if elapsed >= duration => None,
            Plan::Rate { rate, .. } => {
                Some(((elapsed.as_secs_f64() * rate) as u64 + 1).min(self.total()))
            }
            Plan::Burst(n) => Some(n),
        }
    }

    /// Events asked for in all.
    fn total(self) -> u64 {
        match self {
            Plan::Rate { rate, duration } => (duration.as_secs_f64() * rate).ceil() as u64,
            Plan::Burst(n) => n,
        }
    }

    /// How late event `seq` is at `elapsed` (a burst's are all due at 0,
    /// which says nothing about the schedule: zero).
    fn lag(self, seq: u64, elapsed: Duration) -> Duration {
        match self {
            Plan::Rate { rate, .. } => {
                elapsed.saturating_sub(Duration::from_secs_f64(seq as f64 / rate))
            }
            Plan::Burst(_) => Duration::ZERO,
        }
    }
}

/// Publishes the schedule (`--rate` for `--duration`, or `--burst`), then
/// returns once every event is acknowledged or failed.
pub async fn run(args: Args, counts: Arc<PublishCounts>) -> anyhow::Result<()> {
    let plan = Plan::of(&args);
    if args.bursting() {
        // No warm-up in a burst: every event is measured.
        counts.measure_from.store(0, Ordering::Relaxed);
    }
    let result = match args.via {
        Via::Redis | Via::RedisRaw => {
            let pipeline = Pipeline::connect(&args).await?;
            pipelined(&args, &counts, pipeline, plan).await
        }
        Via::Http => with_workers(&args, &counts, plan).await,
        Via::None => anyhow::bail!("nothing to publish with --via none"),
    };
    counts.scheduled.store(plan.total(), Ordering::Relaxed);
    result
}

/// The Redis path: a batch per millisecond, one in flight.
async fn pipelined(
    args: &Args,
    counts: &PublishCounts,
    mut pipeline: Pipeline,
    plan: Plan,
) -> anyhow::Result<()> {
    let max = pipeline.max_events;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    // A pipeline that took longer than a tick: the next one goes at once
    // with everything due since, then back on the millisecond grid.
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut seq = 0u64;
    let mut measuring = args.bursting();
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        let Some(due) = plan.due(elapsed) else {
            // The end: what the last tick left of the schedule goes too,
            // unless the publisher was behind by more than a pipeline (then
            // the run did not hold its rate anyway, and says so).
            let rest = plan.total().saturating_sub(seq);
            if rest > 0 && rest <= max {
                pipeline.send(seq..seq + rest, counts).await;
            }
            break;
        };
        if !measuring && elapsed >= args.warmup {
            counts.measure_from.store(seq, Ordering::Relaxed);
            measuring = true;
        }
        if seq >= due {
            if matches!(plan, Plan::Burst(_)) {
                break;
            }
            continue;
        }
        counts.behind.fetch_max(due - seq, Ordering::Relaxed);
        let lag = plan.lag(seq, elapsed).as_micros() as u64;
        counts.lag_max_micros.fetch_max(lag, Ordering::Relaxed);
        while seq < due {
            let n = (due - seq).min(max);
            pipeline.send(seq..seq + n, counts).await;
            seq += n;
            // A backlog of several pipelines (Redis slower than the rate)
            // is not worked off past the end: the run stops on time and
            // says what rate it reached.
            if plan.due(start.elapsed()).is_none() {
                break;
            }
        }
    }
    Ok(())
}

/// Events through `--inflight` workers, one request each (HTTP).
async fn with_workers(args: &Args, counts: &Arc<PublishCounts>, plan: Plan) -> anyhow::Result<()> {
    let workers = args.inflight.max(1);
    let (tx, rx) = mpsc::channel::<u64>(workers);
    let rx = Arc::new(Mutex::new(rx));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let client = publisher::http::HttpPublisher::new(&gateway_url(args)?, Some(&args.api_key))?;
        handles.push(tokio::spawn(worker(
            client,
            rx.clone(),
            counts.clone(),
            args.kind.clone(),
            args.payload_bytes,
        )));
    }

    let start = Instant::now();
    let mut seq = 0u64;
    if let Plan::Burst(n) = plan {
        // As fast as the workers take them.
        while seq < n {
            tx.send(seq).await.context("publish workers died")?;
            counts.attempted.fetch_add(1, Ordering::Relaxed);
            seq += 1;
        }
    } else {
        // Tick often enough for the rate, at most every millisecond; each
        // tick sends whatever the schedule says is due.
        let period = Duration::from_secs_f64((1.0 / args.rate).clamp(0.001, 0.05));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut measuring = false;
        loop {
            tick.tick().await;
            let elapsed = start.elapsed();
            let Some(due) = plan.due(elapsed) else { break };
            if !measuring && elapsed >= args.warmup {
                counts.measure_from.store(seq, Ordering::Relaxed);
                measuring = true;
            }
            if seq < due {
                let lag = plan.lag(seq, elapsed).as_micros() as u64;
                counts.lag_max_micros.fetch_max(lag, Ordering::Relaxed);
            }
            while seq < due {
                match tx.try_send(seq) {
                    Ok(()) => {
                        counts.attempted.fetch_add(1, Ordering::Relaxed);
                        seq += 1;
                    }
                    // Every worker busy: the rest goes out on later ticks.
                    Err(mpsc::error::TrySendError::Full(_)) => break,
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        anyhow::bail!("publish workers died")
                    }
                }
            }
            counts.behind.fetch_max(due - seq, Ordering::Relaxed);
        }
    }
    drop(tx);
    for handle in handles {
        handle.await?;
    }
    Ok(())
}

async fn worker(
    mut client: publisher::http::HttpPublisher,
    rx: Arc<Mutex<mpsc::Receiver<u64>>>,
    counts: Arc<PublishCounts>,
    kind: String,
    payload_bytes: usize,
) {
    let mut errors_logged = 0;
    loop {
        let Some(seq) = rx.lock().await.recv().await else {
            return;
        };
        let sent = unix_nanos();
        mark_first_send(&counts, sent);
        let published = match RawValue::from_string(event_data(seq, sent, payload_bytes)) {
            Ok(data) => client
                .publish(&kind, &data)
                .await
                .map_err(anyhow::Error::from),
            Err(err) => Err(err.into()),
        };
        match published {
            Ok(_) => {
                counts.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                if errors_logged < 5 {
                    errors_logged += 1;
                    eprintln!("publish failed: {err:#}");
                }
            }
        }
        counts
            .last_ack_nanos
            .fetch_max(unix_nanos(), Ordering::Relaxed);
    }
}

fn mark_first_send(counts: &PublishCounts, at: u64) {
    let _ = counts
        .first_sent_nanos
        .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
}

/// `{"seq":N,"t":T,"pad":"xxx"}`, padded to `size` bytes where possible.
pub fn event_data(seq: u64, sent_nanos: u64, size: usize) -> String {
    let head = format!("{{\"seq\":{seq},\"t\":{sent_nanos},\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut data = String::with_capacity(head.len() + pad + 2);
    data.push_str(&head);
    data.extend(std::iter::repeat_n('x', pad));
    data.push_str("\"}");
    data
}

/// Events to Redis in batches, one in flight.
struct Pipeline {
    kind: String,
    payload_bytes: usize,
    /// Most events in one batch: `--max-pipeline`, within the script's
    /// batch limits for `--via redis`.
    max_events: u64,
    link: Link,
    errors_logged: u32,
}

enum Link {
    /// `--via redis`: one call of the publish script per batch. The
    /// publisher replaces a broken connection itself (asking Sentinels
    /// anew), and works on a Cluster too.
    Script {
        publisher: publisher::Publisher,
        max_event_bytes: usize,
    },
    /// `--via redis-raw`: one pipeline of PUBLISH per batch on one Redis.
    Raw {
        // Boxed: far larger than the other variant, and there is one Link.
        connector: Box<publisher::Connector>,
        /// `None` after the connection broke: the next batch reconnects.
        conn: Option<redis::aio::MultiplexedConnection>,
        channel: String,
    },
}

impl Pipeline {
    async fn connect(args: &Args) -> anyhow::Result<Self> {
        shared::validate_kind(&args.kind)?;
        let target = redis_target(args)?;
        let mut max_events = args.max_pipeline.max(1);
        let link = if args.via == Via::Redis {
            let max_event_bytes = args.wire.max_event_bytes;
            // Every event has the same size but for its digits: the largest
            // says how many fit in a batch.
            let data = RawValue::from_string(event_data(u64::MAX, u64::MAX, args.payload_bytes))?;
            let largest =
                publisher::Encoded::new(&args.kind, &*data, chrono::Utc::now(), max_event_bytes)?;
            max_events = max_events
                .min(publisher::batch::MAX_BATCH_EVENTS)
                .min((publisher::batch::MAX_BATCH_BYTES / largest.payload().len()).max(1));
            let topology = target.topology();
            Link::Script {
                publisher: publisher::Publisher::connect_target(
                    target,
                    args.wire.wire_format(topology),
                )
                .await?,
                max_event_bytes,
            }
        } else {
            anyhow::ensure!(
                target.topology() == publisher::Topology::Single,
                "--via redis-raw publishes with PUBLISH: one Redis or Sentinels, not a Cluster"
            );
            let connector = Box::new(publisher::Connector::new(target)?);
            Link::Raw {
                conn: Some(connector.connect().await?),
                connector,
                channel: shared::keys::events_channel(&args.wire.channel_prefix, &args.kind),
            }
        };
        Ok(Self {
            kind: args.kind.clone(),
            payload_bytes: args.payload_bytes,
            max_events: max_events as u64,
            link,
            errors_logged: 0,
        })
    }

    /// Sends `seqs` (at most `max_events`) as one batch and counts what was
    /// acknowledged; a failure is counted per event and logged (the first
    /// few).
    async fn send(&mut self, seqs: Range<u64>, counts: &PublishCounts) {
        let n = seqs.end - seqs.start;
        counts.attempted.fetch_add(n, Ordering::Relaxed);
        counts.pipelines.fetch_add(1, Ordering::Relaxed);
        counts.largest_pipeline.fetch_max(n, Ordering::Relaxed);
        let sent = unix_nanos();
        let at = chrono::Utc::now();
        mark_first_send(counts, sent);
        let (kind, size) = (&self.kind, self.payload_bytes);
        let data = |seq| RawValue::from_string(event_data(seq, sent, size));
        let result = match &mut self.link {
            Link::Script {
                publisher,
                max_event_bytes,
            } => {
                let mut batch = publisher::Batch::new();
                let built = seqs.into_iter().try_for_each(|seq| -> anyhow::Result<()> {
                    // Keyed as a backend job's would be (`STATE_KEYS`).
                    let data = data(seq)?;
                    let item = publisher::Item::new(kind, &*data);
                    let keying = &publisher.wire().state().keying;
                    let event = publisher::Encoded::keyed(&item, keying, at, *max_event_bytes)?;
                    Ok(batch.push(event)?)
                });
                match built {
                    // All of a batch or, if Redis fails, none of it.
                    Ok(()) => publisher
                        .publish_batch(&batch)
                        .await
                        .map(|_| n)
                        .map_err(Into::into),
                    Err(err) => Err(err),
                }
            }
            Link::Raw {
                connector,
                conn,
                channel,
            } => raw_pipeline(connector, conn, channel, kind, seqs.map(data), at).await,
        };
        match result {
            Ok(ok) => {
                counts.ok.fetch_add(ok, Ordering::Relaxed);
                counts.errors.fetch_add(n - ok, Ordering::Relaxed);
            }
            Err(err) => {
                counts.errors.fetch_add(n, Ordering::Relaxed);
                if self.errors_logged < 5 {
                    self.errors_logged += 1;
                    eprintln!("publish failed: {err:#}");
                }
            }
        }
        counts
            .last_ack_nanos
            .fetch_max(unix_nanos(), Ordering::Relaxed);
    }
}

/// One pipeline of `PUBLISH channel envelope`, one per event; the number
/// Redis acknowledged. A broken connection is dropped, and replaced before
/// the next pipeline (with Sentinels, at the master they name now).
async fn raw_pipeline(
    connector: &publisher::Connector,
    conn: &mut Option<redis::aio::MultiplexedConnection>,
    channel: &str,
    kind: &str,
    events: impl Iterator<Item = serde_json::Result<Box<RawValue>>>,
    at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<u64> {
    let mut pipe = redis::pipe();
    // One reply per event, errors included, so they are counted one by one.
    pipe.ignore_errors();
    for data in events {
        pipe.cmd("PUBLISH")
            .arg(channel)
            .arg(shared::encode(kind, &*data?, at));
    }
    let live = match conn {
        Some(live) => live,
        None => conn.insert(connector.connect().await?),
    };
    let replies = match pipe.query_async::<Vec<redis::Value>>(live).await {
        Ok(replies) => replies,
        Err(err) => {
            if err.is_io_error() || err.is_connection_dropped() || err.is_timeout() {
                *conn = None;
            }
            return Err(err.into());
        }
    };
    let mut ok = 0;
    for reply in &replies {
        match reply {
            redis::Value::ServerError(err) => {
                // A failover made this server a replica: reconnect.
                if err.code() == "READONLY" {
                    *conn = None;
                }
            }
            _ => ok += 1,
        }
    }
    Ok(ok)
}

/// The checked Redis settings, or redis://127.0.0.1:6379 when none is given.
fn redis_target(args: &Args) -> anyhow::Result<publisher::RedisTarget> {
    args.redis
        .clone()
        .or_url(publisher::config::DEFAULT_REDIS_URL)
        .target()?
        .ok_or_else(|| anyhow::anyhow!("no Redis configured"))
}

/// The node to publish through: `--publish-url` (without its
/// `/api/publish`, which the client adds), or the first `--url` as http.
fn gateway_url(args: &Args) -> anyhow::Result<String> {
    if let Some(url) = &args.publish_url {
        let url = url.trim_end_matches('/');
        return Ok(url
            .strip_suffix(publisher::http::PUBLISH_PATH)
            .unwrap_or(url)
            .to_owned());
    }
    let ws = args.url.first().context("no --url")?;
    let rest = ws
        .strip_prefix("ws://")
        .context("--via http needs --publish-url for non-ws:// URLs")?;
    let host = rest.split('/').next().unwrap_or(rest);
    Ok(format!("http://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_data_is_json_of_the_asked_size() {
        let data = event_data(7, 1_700_000_000_000_000_000, 100);
        assert_eq!(data.len(), 100);
        let value: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(value["seq"], 7);
        assert_eq!(
            crate::client::parse_event(&format!("{{\"data\":{data}}}")),
            Some((7, 1_700_000_000_000_000_000))
        );
        // Too small to pad: still valid JSON.
        assert!(serde_json::from_str::<serde_json::Value>(&event_data(1, 2, 5)).is_ok());
    }

    #[test]
    fn the_schedule_is_due_by_the_rate_and_a_burst_at_once() {
        let rate = Plan::Rate {
            rate: 50_000.0,
            duration: Duration::from_secs(2),
        };
        assert_eq!(rate.due(Duration::ZERO), Some(1));
        assert_eq!(rate.due(Duration::from_millis(1)), Some(51));
        assert_eq!(rate.due(Duration::from_secs(2)), None);
        assert_eq!(rate.total(), 100_000);
        // Event 50 is due at 1 ms: at 3 ms it is 2 ms late.
        assert_eq!(
            rate.lag(50, Duration::from_millis(3)),
            Duration::from_millis(2)
        );
        let burst = Plan::Burst(20_000);
        assert_eq!(burst.due(Duration::ZERO), Some(20_000));
        assert_eq!(burst.due(Duration::from_secs(60)), Some(20_000));
        assert_eq!(burst.lag(19_999, Duration::from_secs(1)), Duration::ZERO);
    }
}
