//! `loadtest`: a load generator for the dashboard gateway.
//!
//! ```text
//! loadtest --url ws://127.0.0.1:8000/ws/dashboard --clients 1000 --rate 100 \
//!          --payload-bytes 100 --duration 20 --via redis --redis-url redis://127.0.0.1:6379
//! ```
//!
//! Phases: connect every client (each counts once it has its greeting), then
//! publish at `--rate` for `--duration` (the first `--warmup` seconds are not
//! measured), then wait up to `--drain` for the last deliveries, then report.
//! Clients run on `--threads` single-threaded runtimes (shards), each with
//! its own counters, so the generator itself stays cheap.
//!
//! Nothing here asserts timings: it measures and reports. The exit code is 0
//! unless the run could not be carried out (bad arguments, nothing reachable).

mod cli;
mod client;
mod procfs;
mod publish;
mod report;
mod stats;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::cli::Args;
use crate::client::{ClientSpec, Common, Phase, Target};
use crate::report::{ProcessReport, Report};
use crate::stats::{Counts, PublishCounts, Shard};

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("loadtest: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.threads >= 1, "--threads must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.slow_share),
        "--slow-share is a share, 0..1"
    );
    anyhow::ensure!(args.rate >= 0.0, "--rate must not be negative");
    let main_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let targets = main_rt.block_on(resolve(&args))?;

    let shards: Vec<Arc<Shard>> = (0..args.threads).map(|_| Arc::default()).collect();
    let published = Arc::new(PublishCounts::new());
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let watched: Vec<(String, u32)> = args
        .watch
        .iter()
        .cloned()
        .chain([("loadtest".to_owned(), procfs::self_pid())])
        .collect();
    let rss_before: Vec<Option<u64>> = watched.iter().map(|(_, pid)| procfs::rss(*pid)).collect();

    let slow_count = (args.clients as f64 * args.slow_share).round() as usize;
    let mut threads = Vec::new();
    for (t, shard) in shards.iter().enumerate() {
        let common = Common {
            shard: shard.clone(),
            published: published.clone(),
            phase: phase_rx.clone(),
            connect_gate: gate.clone(),
            connect_timeout: args.connect_timeout,
            read_buffer: args.read_buffer,
            slow_after: args.slow_after,
            slow_rcvbuf: args.slow_rcvbuf,
        };
        let specs: Vec<ClientSpec> = (t..args.clients)
            .step_by(args.threads)
            .map(|i| ClientSpec {
                target: targets[i % targets.len()].clone(),
                source_ip: (!args.source_ip.is_empty())
                    .then(|| args.source_ip[i % args.source_ip.len()]),
                // Spread evenly: client i is slow when the running share steps up.
                slow: slow_count > 0
                    && (i * slow_count / args.clients) != ((i + 1) * slow_count / args.clients),
            })
            .collect();
        threads.push(
            std::thread::Builder::new()
                .name(format!("clients-{t}"))
                .spawn(move || -> anyhow::Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async move {
                        let mut set = tokio::task::JoinSet::new();
                        for spec in specs {
                            set.spawn(client::run(spec, common.clone()));
                        }
                        while set.join_next().await.is_some() {}
                    });
                    Ok(())
                })?,
        );
    }

    let outcome = main_rt.block_on(orchestrate(
        &args,
        &shards,
        &published,
        &phase_tx,
        &watched,
        &rss_before,
    ));
    // Whatever happened, let the clients finish.
    let _ = phase_tx.send(Phase::Done);
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    let mut report = outcome?;
    report.counts = merged(&shards, false);
    report.print(&args);
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report.json(&args))?;
        if path == "-" {
            println!("{json}");
        } else {
            std::fs::write(path, json + "\n").with_context(|| format!("cannot write {path}"))?;
        }
    }
    Ok(())
}

/// Resolves each `--url` once, adding `?types=` unless `--all-types`.
async fn resolve(args: &Args) -> anyhow::Result<Vec<Arc<Target>>> {
    let mut targets = Vec::new();
    for url in &args.url {
        let rest = url
            .strip_prefix("ws://")
            .context("only ws:// URLs (TLS is the load balancer's job; test behind it)")?;
        let host = rest.split(['/', '?']).next().unwrap_or(rest);
        let host_port = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let addr: SocketAddr = tokio::net::lookup_host(&host_port)
            .await
            .with_context(|| format!("cannot resolve {host_port}"))?
            .next()
            .with_context(|| format!("no address for {host_port}"))?;
        let mut url = url.clone();
        if !args.all_types {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("types=");
            url.push_str(&args.kind);
        }
        targets.push(Arc::new(Target { addr, url }));
    }
    anyhow::ensure!(!targets.is_empty(), "no --url");
    Ok(targets)
}

/// All shards' counts merged; `take_interval` resets the per-second histogram.
fn merged(shards: &[Arc<Shard>], take_interval: bool) -> Counts {
    let mut total = Counts::default();
    for shard in shards {
        let mut counts = shard.lock();
        total.merge(&counts);
        if take_interval {
            counts.latency_interval.reset();
        }
    }
    total
}

struct Sample {
    at: Instant,
    cpu: Vec<Option<(Duration, Duration)>>,
    machine: Option<(Duration, Duration)>,
    delivered: u64,
}

fn sample(shards: &[Arc<Shard>], watched: &[(String, u32)]) -> Sample {
    let delivered = shards
        .iter()
        .map(|s| {
            let c = s.lock();
            c.delivered + c.slow_delivered
        })
        .sum();
    Sample {
        at: Instant::now(),
        cpu: watched
            .iter()
            .map(|(_, pid)| procfs::cpu_split(*pid))
            .collect(),
        machine: procfs::machine(),
        delivered,
    }
}

async fn orchestrate(
    args: &Args,
    shards: &[Arc<Shard>],
    published: &Arc<PublishCounts>,
    phase: &watch::Sender<Phase>,
    watched: &[(String, u32)],
    rss_before: &[Option<u64>],
) -> anyhow::Result<Report> {
    let mut progress = Progress::new(args, watched);

    // 1. Connect.
    let start = Instant::now();
    let mut connect_elapsed;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let counts = merged(shards, false);
        connect_elapsed = start.elapsed();
        if counts.connected + counts.connect_failed >= args.clients as u64
            || connect_elapsed > args.connect_timeout + Duration::from_secs(5)
        {
            break;
        }
        progress.maybe_print("connect", shards, published, watched);
    }
    let connected = merged(shards, false).connected;
    anyhow::ensure!(
        connected > 0 || args.clients == 0,
        "no client could connect: {:?}",
        merged(shards, false).close_reasons
    );
    // Let the allocator and the kernel settle before reading memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected: Vec<Option<u64>> =
        watched.iter().map(|(_, pid)| procfs::rss(*pid)).collect();

    // 2. Publish (or hold).
    let _ = phase.send(Phase::Running);
    let run_start = Instant::now();
    let publisher = args
        .publishing()
        .then(|| tokio::spawn(publish::run(args.clone(), published.clone())));
    let mut window_start: Option<Sample> = None;
    let warmup_end = run_start + args.warmup;
    let run_end = run_start + args.duration;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if window_start.is_none() && Instant::now() >= warmup_end {
            window_start = Some(sample(shards, watched));
        }
        let publishing_done = publisher.as_ref().is_none_or(|p| p.is_finished());
        if Instant::now() >= run_end && publishing_done {
            break;
        }
        progress.maybe_print("run", shards, published, watched);
    }
    let window_end = sample(shards, watched);
    if let Some(publisher) = publisher {
        publisher.await??;
    }

    // 3. Drain: until every live, reading client has every event, or timeout.
    let drain_start = Instant::now();
    let ok = published.ok.load(Ordering::Relaxed);
    while drain_start.elapsed() < args.drain {
        let c = merged(shards, false);
        let readers = c.connected - c.slow_clients - c.disconnected;
        if args.publishing() && c.delivered - c.duplicated >= ok * readers {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        progress.maybe_print("drain", shards, published, watched);
    }
    let rss_end: Vec<Option<u64>> = watched.iter().map(|(_, pid)| procfs::rss(*pid)).collect();
    let _ = phase.send(Phase::Done);

    let window_start = window_start.unwrap_or_else(|| sample(shards, watched));
    let window = window_end.at.saturating_duration_since(window_start.at);
    let processes = watched
        .iter()
        .enumerate()
        .map(|(i, (name, pid))| ProcessReport {
            name: name.clone(),
            pid: *pid,
            cpu: match (window_start.cpu[i], window_end.cpu[i]) {
                (Some(a), Some(b)) => Some((b.0.saturating_sub(a.0), b.1.saturating_sub(a.1))),
                _ => None,
            },
            rss_before: rss_before[i],
            rss_connected: rss_connected[i],
            rss_end: rss_end[i],
        })
        .collect();
    let machine = match (window_start.machine, window_end.machine) {
        (Some(a), Some(b)) if b.1 > a.1 => {
            Some((b.0 - a.0).as_secs_f64() / (b.1 - a.1).as_secs_f64())
        }
        _ => None,
    };
    Ok(Report {
        machine_busy: machine,
        connect_elapsed,
        window,
        window_delivered: window_end.delivered - window_start.delivered,
        published_attempted: published.attempted.load(Ordering::Relaxed),
        published_ok: ok,
        publish_errors: published.errors.load(Ordering::Relaxed),
        publish_backlog_max: published.behind.load(Ordering::Relaxed),
        run_elapsed: run_start.elapsed(),
        processes,
        counts: Counts::default(),
    })
}

/// The once-a-second line on stderr.
struct Progress {
    quiet: bool,
    start: Instant,
    last: Instant,
    last_delivered: u64,
    last_published: u64,
    last_cpu: Vec<Option<Duration>>,
    clients: usize,
}

impl Progress {
    fn new(args: &Args, watched: &[(String, u32)]) -> Self {
        let now = Instant::now();
        Self {
            quiet: args.quiet,
            start: now,
            last: now,
            last_delivered: 0,
            last_published: 0,
            last_cpu: watched.iter().map(|(_, pid)| procfs::cpu(*pid)).collect(),
            clients: args.clients,
        }
    }

    fn maybe_print(
        &mut self,
        phase: &str,
        shards: &[Arc<Shard>],
        published: &PublishCounts,
        watched: &[(String, u32)],
    ) {
        let now = Instant::now();
        let dt = now - self.last;
        if dt < Duration::from_secs(1) {
            return;
        }
        let c = merged(shards, true);
        let delivered = c.delivered + c.slow_delivered;
        let pubs = published.ok.load(Ordering::Relaxed);
        let secs = dt.as_secs_f64();
        let mut line = format!(
            "[{:>5.1}s {phase:<7}] conns {}/{}{}  pub {} ({:.0}/s)  recv {} ({:.0}/s)",
            (now - self.start).as_secs_f64(),
            c.connected - c.disconnected,
            self.clients,
            if c.connect_failed > 0 {
                format!(" ({} failed)", c.connect_failed)
            } else {
                String::new()
            },
            pubs,
            (pubs - self.last_published) as f64 / secs,
            delivered,
            (delivered - self.last_delivered) as f64 / secs,
        );
        if !c.latency_interval.is_empty() {
            line += &format!(
                "  p99 {}  max {}",
                report::ms(c.latency_interval.value_at_quantile(0.99)),
                report::ms(c.latency_interval.max())
            );
        }
        if c.duplicated > 0 {
            line += &format!("  dup {}", c.duplicated);
        }
        for (i, (name, pid)) in watched.iter().enumerate() {
            let cpu = procfs::cpu(*pid);
            if let (Some(before), Some(after)) = (self.last_cpu[i], cpu) {
                line += &format!(
                    "  {name} {:.0}%",
                    after.saturating_sub(before).as_secs_f64() / secs * 100.0
                );
            }
            self.last_cpu[i] = cpu;
        }
        if !self.quiet {
            eprintln!("{line}");
        }
        self.last = now;
        self.last_delivered = delivered;
        self.last_published = pubs;
    }
}
