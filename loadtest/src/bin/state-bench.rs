//! `state-bench`: what keyed state costs and gives, against a running
//! gateway on a Redis (see BENCHMARKS.md, "Keyed state").
//!
//! 1. (Measured last, 5.) Publish cost: the same events published keyed
//!    and unkeyed (the script's extra writes), one at a time and in
//!    batches of 500, interleaved.
//! 2. Seeding `--tutors` × 2 windows of `metrics_update` (TutorMax's rows):
//!    Redis memory per key (`used_memory` before and after).
//! 3. One dashboard opening with `?state=1`: time to the `state` marker
//!    (the whole table), bytes, events.
//! 4. `--clients` dashboards opening at once (a node restart's reconnect):
//!    time until each has its whole table, while a watcher already
//!    connected measures live latency and a probe measures Redis PING.
//!
//! The gateway under test must use the same Redis and prefix.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::StreamExt;
use publisher::{Publisher, Topology, WireConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    /// The gateway's dashboard URL.
    #[arg(long, default_value = "ws://127.0.0.1:8000/ws/dashboard")]
    url: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Tutors to seed (two windows each: twice as many keys).
    #[arg(long, default_value_t = 10_000)]
    tutors: usize,
    /// Dashboards opening at once.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Events for the publish-cost comparison.
    #[arg(long, default_value_t = 5000)]
    publishes: usize,
}

fn row(tutor: usize, window: &str, n: usize) -> Value {
    json!({
        "tutor_id": format!("tutor-{tutor:05}"),
        "window": window,
        "sessions_completed": 40 + n % 17,
        "avg_rating": 4.2 + (n % 7) as f64 / 10.0,
        "first_session_success_rate": 0.82,
        "reschedule_rate": 0.07,
        "no_show_count": n % 3,
        "engagement_score": 0.76,
        "learning_objectives_met_pct": 0.68,
        "performance_tier": "Strong",
        "calculation_date": "2026-12-02T03:00:00Z",
    })
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("used_memory")
}

/// Opens a dashboard with `?state=1` and reads to its marker: (time to the
/// marker, events, bytes). A refused handshake (a node admits 128 pending
/// handshakes per address: these all come from one) is retried after a
/// jittered pause, as the page's client does; the time includes it.
async fn open_full(url: &str, retries: &AtomicU64) -> Result<(Duration, usize, usize)> {
    let started = Instant::now();
    let mut attempt = 0;
    let mut ws = loop {
        match tokio_tungstenite::connect_async(format!("{url}?state=1")).await {
            Ok((ws, _)) => break ws,
            Err(_) if attempt < 50 => {
                attempt += 1;
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(
                    20 + u64::from(started.elapsed().subsec_nanos() % 80),
                ))
                .await;
            }
            Err(err) => return Err(err.into()),
        }
    };
    let (mut events, mut bytes) = (0, 0);
    while let Some(message) = ws.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        bytes += text.len();
        if text.contains(r#""type":"state""#) {
            let marker: Value = serde_json::from_str(&text)?;
            if marker["data"]["count"] != events - 1 {
                bail!("marker {marker} after {} events", events - 1);
            }
            return Ok((started.elapsed(), events - 1, bytes));
        }
        events += 1; // the greeting first, then the state's events
    }
    bail!("closed before the state was complete")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let keyed = WireConfig::default().wire_format(Topology::Single);
    let unkeyed = WireConfig {
        state_keys: "none".into(),
        ..WireConfig::default()
    }
    .wire_format(Topology::Single);
    let redis = redis::Client::open(args.redis.as_str())?;
    let mut conn = redis.get_multiplexed_async_connection().await?;
    let publisher = Publisher::connect_with(&args.redis, keyed).await?;
    let plain = Publisher::connect_with(&args.redis, unkeyed).await?;

    // 2. Seed the table; Redis memory per key.
    let before = used_memory(&mut conn).await?;
    let rows: Vec<Value> = (0..args.tutors)
        .flat_map(|t| ["7day", "30day"].map(|w| row(t, w, t)))
        .collect();
    let started = Instant::now();
    for chunk in rows.chunks(500) {
        publisher
            .publish_many(chunk.iter().map(|d| ("metrics_update", d)))
            .await?;
    }
    let seeded = started.elapsed();
    let keys: usize = redis::cmd("HLEN")
        .arg(shared::keys::state_key("ws", "metrics_update"))
        .query_async(&mut conn)
        .await?;
    let hash_bytes: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(shared::keys::state_key("ws", "metrics_update"))
        .arg("SAMPLES")
        .arg(0)
        .query_async(&mut conn)
        .await?;
    let zset_bytes: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(shared::keys::state_age_key("ws", "metrics_update"))
        .arg("SAMPLES")
        .arg(0)
        .query_async(&mut conn)
        .await?;
    let after = used_memory(&mut conn).await?;
    let event_bytes = serde_json::to_string(&rows[0])?.len();
    println!("## state of {keys} keys (data {event_bytes} B per event)");
    println!(
        "seeded in {:.2} s; Redis: hash {:.0} B/key + ages {:.0} B/key = {:.0} B/key (used_memory grew {:.0} B/key, history included)",
        seeded.as_secs_f64(),
        hash_bytes as f64 / keys as f64,
        zset_bytes as f64 / keys as f64,
        (hash_bytes + zset_bytes) as f64 / keys as f64,
        (after.saturating_sub(before)) as f64 / keys as f64
    );
    // Let the node take in the last events.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 3. One dashboard, three times.
    let retries = Arc::new(AtomicU64::new(0));
    for _ in 0..3 {
        let (took, events, bytes) = open_full(&args.url, &retries).await?;
        println!(
            "one dashboard: whole table ({events} events, {:.1} MB) in {:.0} ms",
            bytes as f64 / 1e6,
            took.as_secs_f64() * 1e3
        );
    }

    // 4. Many at once, with a watcher and a Redis probe.
    let (mut watcher, _) =
        tokio_tungstenite::connect_async(format!("{}?types=alert", args.url)).await?;
    watcher.next().await; // greeting
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let live_max_us = Arc::new(AtomicU64::new(0));
    let ping_max_us = Arc::new(AtomicU64::new(0));
    let live_task = {
        let (stop, live_max_us, publisher) = (stop.clone(), live_max_us.clone(), publisher.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                publisher
                    .alert(&json!({"id": format!("probe-{n}"), "status": "open"}))
                    .await?;
                loop {
                    let Some(Ok(Message::Text(text))) = watcher.next().await else {
                        bail!("watcher closed")
                    };
                    if text.contains(&format!("\"probe-{n}\"")) {
                        break;
                    }
                }
                live_max_us.fetch_max(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        })
    };
    let ping_task = {
        let (stop, ping_max_us) = (stop.clone(), ping_max_us.clone());
        let mut conn = redis.get_multiplexed_async_connection().await?;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                redis::cmd("PING").query_async::<()>(&mut conn).await?;
                ping_max_us.fetch_max(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            anyhow::Ok(())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quiet_live = live_max_us.swap(0, Ordering::Relaxed);
    let quiet_ping = ping_max_us.swap(0, Ordering::Relaxed);
    let started = Instant::now();
    let opening: Vec<_> = (0..args.clients)
        .map(|_| {
            let (url, retries) = (args.url.clone(), retries.clone());
            tokio::spawn(async move { open_full(&url, &retries).await })
        })
        .collect();
    let mut times = Vec::with_capacity(args.clients);
    let mut bytes = 0;
    for task in opening {
        let (took, _, b) = task.await??;
        times.push(took);
        bytes += b;
    }
    let all = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    live_task.await??;
    ping_task.await??;
    times.sort();
    println!(
        "{} dashboards at once ({} handshakes retried): all full in {:.2} s ({:.0} MB sent); per dashboard p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        args.clients,
        retries.load(Ordering::Relaxed),
        all.as_secs_f64(),
        bytes as f64 / 1e6,
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3,
    );
    println!(
        "meanwhile: a live alert's publish→receive max {:.1} ms (quiet: {:.1} ms); Redis PING max {:.1} ms (quiet: {:.1} ms)",
        live_max_us.load(Ordering::Relaxed) as f64 / 1e3,
        quiet_live as f64 / 1e3,
        ping_max_us.load(Ordering::Relaxed) as f64 / 1e3,
        quiet_ping as f64 / 1e3,
    );
    // 5. Publish cost (last: these rows join the state), keyed vs unkeyed, interleaved rounds.
    println!("## publish cost ({} events each way)", args.publishes);
    for (label, batch) in [("one at a time", 1usize), ("batches of 500", 500)] {
        let mut times = [Duration::ZERO; 2];
        for round in 0..4 {
            for (which, p) in [&plain, &publisher].into_iter().enumerate() {
                let rows: Vec<Value> = (0..args.publishes / 4)
                    .map(|n| row(50_000 + n, if round % 2 == 0 { "7day" } else { "30day" }, n))
                    .collect();
                let started = Instant::now();
                for chunk in rows.chunks(batch) {
                    p.publish_many(chunk.iter().map(|d| ("metrics_update", d)))
                        .await?;
                }
                times[which] += started.elapsed();
            }
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / args.publishes as f64;
        println!(
            "{label}: unkeyed {:.1} µs/event, keyed {:.1} µs/event (+{:.0} %)",
            per(times[0]),
            per(times[1]),
            (times[1].as_secs_f64() / times[0].as_secs_f64() - 1.0) * 100.0
        );
    }

    Ok(())
}
