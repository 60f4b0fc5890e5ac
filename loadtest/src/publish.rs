//! The publisher: a schedule hands out sequence numbers at `--rate`;
//! `--inflight` workers publish them through Redis (the publisher crate or a
//! raw PUBLISH) or `POST /api/publish`. The send time is taken by the worker
//! right before it sends, so latency is the gateway path, not the queue.

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

/// Publishes at `args.rate` for `args.duration`, then returns once every
/// worker is done.
pub async fn run(args: Args, counts: Arc<PublishCounts>) -> anyhow::Result<()> {
    let workers = args.inflight.max(1);
    let (tx, rx) = mpsc::channel::<u64>(workers);
    let rx = Arc::new(Mutex::new(rx));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let sink = Sink::connect(&args).await?;
        handles.push(tokio::spawn(worker(
            sink,
            rx.clone(),
            counts.clone(),
            args.kind.clone(),
            args.payload_bytes,
        )));
    }

    let start = Instant::now();
    let warmup_end = start + args.warmup;
    let end = start + args.duration;
    // Tick often enough for the rate, at most every millisecond; each tick
    // sends whatever the schedule says is due.
    let period = Duration::from_secs_f64((1.0 / args.rate).clamp(0.001, 0.05));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut seq = 0u64;
    let mut measuring = false;
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= end {
            break;
        }
        if !measuring && now >= warmup_end {
            counts.measure_from.store(seq, Ordering::Relaxed);
            measuring = true;
        }
        let due = ((now - start).as_secs_f64() * args.rate) as u64 + 1;
        while seq < due {
            match tx.try_send(seq) {
                Ok(()) => {
                    counts.attempted.fetch_add(1, Ordering::Relaxed);
                    seq += 1;
                }
                // Every worker busy: the rest goes out on later ticks.
                Err(mpsc::error::TrySendError::Full(_)) => break,
                Err(mpsc::error::TrySendError::Closed(_)) => anyhow::bail!("publish workers died"),
            }
        }
        counts.behind.fetch_max(due - seq, Ordering::Relaxed);
    }
    drop(tx);
    for handle in handles {
        handle.await?;
    }
    Ok(())
}

async fn worker(
    mut sink: Sink,
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
        let data = event_data(seq, unix_nanos(), payload_bytes);
        match sink.publish(&kind, &data).await {
            Ok(()) => {
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
    }
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

enum Sink {
    Publisher(publisher::Publisher),
    Raw {
        conn: redis::aio::MultiplexedConnection,
        prefix: String,
    },
    Http(publisher::http::HttpPublisher),
}

impl Sink {
    async fn connect(args: &Args) -> anyhow::Result<Self> {
        Ok(match args.via {
            Via::Redis => Sink::Publisher(
                publisher::Publisher::connect_target(
                    redis_target(args)?,
                    args.wire.wire_format(publisher::Topology::Single),
                )
                .await?,
            ),
            Via::RedisRaw => {
                let target = redis_target(args)?;
                anyhow::ensure!(
                    target.topology() == publisher::Topology::Single,
                    "--via redis-raw publishes with PUBLISH: one Redis or Sentinels, not a Cluster"
                );
                Sink::Raw {
                    conn: publisher::Connector::new(target)?.connect().await?,
                    prefix: args.wire.channel_prefix.clone(),
                }
            }
            Via::Http => Sink::Http(publisher::http::HttpPublisher::new(
                &gateway_url(args)?,
                Some(&args.api_key),
            )?),
            Via::None => anyhow::bail!("nothing to publish with --via none"),
        })
    }

    async fn publish(&mut self, kind: &str, data: &str) -> anyhow::Result<()> {
        match self {
            Sink::Publisher(publisher) => {
                let raw = RawValue::from_string(data.to_owned())?;
                publisher.publish(kind, &*raw).await?;
            }
            Sink::Raw { conn, prefix } => {
                let raw = RawValue::from_string(data.to_owned())?;
                let envelope = shared::encode(kind, &*raw, chrono::Utc::now());
                let channel = shared::keys::events_channel(prefix, kind);
                let _receivers: i64 = redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(envelope)
                    .query_async(conn)
                    .await?;
            }
            Sink::Http(client) => {
                let raw = RawValue::from_string(data.to_owned())?;
                client.publish(kind, &raw).await?;
            }
        }
        Ok(())
    }
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
}
