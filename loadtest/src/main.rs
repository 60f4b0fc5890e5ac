//! `loadtest`: a load generator for the dashboard gateway.
//!
//! ```text
//! loadtest --url ws://127.0.0.1:8000/ws/dashboard --clients 1000 --rate 100 \
//!          --payload-bytes 100 --duration 20 --via redis --redis-url redis://127.0.0.1:6379
//! ```
//!
//! Phases: connect every client (each counts once it has its greeting), then
//! publish at `--rate` for `--duration` (the first `--warmup` seconds are not
//! measured), or `--burst` N events at once, then wait up to `--drain` for
//! the last deliveries, then report. `--filtered-clients` connect alongside,
//! subscribed to types that are never published, and are counted apart.
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
mod series;
mod stats;
mod wire;

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
use crate::client::{Churn, ChurnPool, ClientSpec, Common, Phase, Target};
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
    anyhow::ensure!(
        args.churn_per_sec >= 0.0,
        "--churn-per-sec must not be negative"
    );
    for (name, share) in [
        ("--churn-close-share", args.churn_close_share),
        ("--churn-silent-share", args.churn_silent_share),
        ("--churn-exempt", args.churn_exempt),
    ] {
        anyhow::ensure!((0.0..=1.0).contains(&share), "{name} is a share, 0..1");
    }
    anyhow::ensure!(
        args.churn_close_share + args.churn_silent_share <= 1.0,
        "--churn-close-share + --churn-silent-share must not exceed 1"
    );
    anyhow::ensure!(
        !(args.bursting() && args.churning()),
        "--burst and --churn-per-sec do not go together: churn runs while a rate publishes"
    );
    if args.filtered_clients > 0 {
        anyhow::ensure!(
            !args.filtered_types.is_empty(),
            "--filtered-clients needs --filtered-types"
        );
        for kind in &args.filtered_types {
            shared::validate_kind(kind).with_context(|| format!("--filtered-types {kind}"))?;
            anyhow::ensure!(
                *kind != args.kind,
                "--filtered-types must not include the published --type {kind}: those clients would receive it"
            );
        }
    }
    let main_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let targets = main_rt.block_on(resolve(&args, Subscribe::Published))?;
    let filtered_targets = if args.filtered_clients > 0 {
        main_rt.block_on(resolve(&args, Subscribe::Filtered))?
    } else {
        Vec::new()
    };

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
    let exempt_count = (args.clients as f64 * args.churn_exempt).round() as usize;
    // Client i is picked when the running share steps up: spread evenly.
    let picked = |i: usize, count: usize| {
        count > 0 && (i * count / args.clients) != ((i + 1) * count / args.clients)
    };
    let mut threads = Vec::new();
    for (t, shard) in shards.iter().enumerate() {
        let churn = ChurnPlan {
            per_sec: args.churn_per_sec / args.threads as f64,
            close_share: args.churn_close_share,
            silent_share: args.churn_silent_share,
            silent_hold: args.churn_silent_hold,
            targets: targets.clone(),
            source_ips: args.source_ip.clone(),
            seed: 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1).wrapping_mul(client::unix_nanos() | 1),
        };
        let common = Common {
            shard: shard.clone(),
            published: published.clone(),
            phase: phase_rx.clone(),
            connect_gate: gate.clone(),
            connect_timeout: args.connect_timeout,
            read_buffer: args.read_buffer,
            slow_after: args.slow_after,
            slow_rcvbuf: args.slow_rcvbuf,
            churn_pool: ChurnPool::default(),
            burst: args.bursting().then_some(args.burst),
            deflate: args.deflate,
        };
        // Filtered clients come after the others (indices from `--clients`
        // on), dealt to the threads the same way.
        let specs: Vec<ClientSpec> = (t..args.clients + args.filtered_clients)
            .step_by(args.threads)
            .map(|i| {
                let filtered = i >= args.clients;
                ClientSpec {
                    target: if filtered {
                        filtered_targets[i % filtered_targets.len()].clone()
                    } else {
                        targets[i % targets.len()].clone()
                    },
                    source_ip: (!args.source_ip.is_empty())
                        .then(|| args.source_ip[i % args.source_ip.len()]),
                    slow: !filtered && picked(i, slow_count),
                    churnable: !filtered
                        && args.churning()
                        && !picked(i, slow_count)
                        && !picked(i, exempt_count),
                    late: false,
                    filtered,
                }
            })
            .collect();
        threads.push(
            std::thread::Builder::new()
                .name(format!("clients-{t}"))
                .spawn(move || -> anyhow::Result<()> {
                    if let Some(tid) = procfs::current_tid() {
                        common.shard.tid.store(tid, Ordering::Relaxed);
                    }
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async move {
                        let mut set = tokio::task::JoinSet::new();
                        for spec in specs {
                            set.spawn(client::run(spec, common.clone()));
                        }
                        if churn.per_sec > 0.0 {
                            churn.run(&mut set, &common).await;
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

/// Which types a client subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscribe {
    /// `--type` (or every type with `--all-types`).
    Published,
    /// `--filtered-types`, never published.
    Filtered,
}

/// Resolves each `--url` once, adding `?types=`: the published type unless
/// `--all-types`, or the filtered types.
async fn resolve(args: &Args, subscribe: Subscribe) -> anyhow::Result<Vec<Arc<Target>>> {
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
        let types = match subscribe {
            Subscribe::Published => (!args.all_types).then(|| args.kind.clone()),
            Subscribe::Filtered => Some(args.filtered_types.join(",")),
        };
        if let Some(types) = types {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("types=");
            url.push_str(&types);
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
    /// CPU time of each client thread.
    client_threads: Vec<Option<Duration>>,
    machine: Option<(Duration, Duration)>,
    delivered: u64,
}

fn sample(shards: &[Arc<Shard>], watched: &[(String, u32)]) -> Sample {
    let delivered = shards.iter().map(|s| s.lock().received()).sum();
    Sample {
        at: Instant::now(),
        cpu: watched
            .iter()
            .map(|(_, pid)| procfs::cpu_split(*pid))
            .collect(),
        client_threads: shards
            .iter()
            .map(|s| match s.tid.load(Ordering::Relaxed) {
                0 => None,
                tid => procfs::thread_cpu(tid),
            })
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
    let mut series = if args.series_on() {
        Some(series::Series::new(args, watched)?)
    } else {
        None
    };

    // 1. Connect.
    let start = Instant::now();
    let mut connect_elapsed;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let counts = merged(shards, false);
        connect_elapsed = start.elapsed();
        if counts.settled() >= (args.clients + args.filtered_clients) as u64
            || connect_elapsed > args.connect_timeout + Duration::from_secs(5)
        {
            break;
        }
        progress.maybe_print("connect", shards, published, watched);
        if let Some(s) = series.as_mut() {
            s.maybe_sample("connect", shards, published);
        }
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
    // A burst has no warm-up and no set length: its window runs from the
    // first event to the last delivery (the end of the drain), since the
    // gateway's work comes after the publishing.
    let mut window_start: Option<Sample> = args.bursting().then(|| sample(shards, watched));
    let warmup_end = run_start + args.warmup;
    let run_end = if args.bursting() {
        run_start
    } else {
        run_start + args.duration
    };
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
        // The last of these is the "end" of the warm-vs-end comparison:
        // taken while the publisher still runs (its connections still open).
        if let Some(s) = series.as_mut()
            && Instant::now() < run_end
        {
            s.maybe_sample("run", shards, published);
        }
    }
    let mut window_end = sample(shards, watched);
    let _ = phase.send(Phase::Draining);
    if let Some(publisher) = publisher {
        publisher.await??;
    }

    // 3. Drain: until every live, reading client has every event, or timeout.
    let drain_start = Instant::now();
    let ok = published.ok.load(Ordering::Relaxed);
    while drain_start.elapsed() < args.drain {
        let c = merged(shards, false);
        let readers = c.connected - c.slow_clients - c.disconnected - c.churned_initial;
        // With churn, replacements are owed events too: wait out the drain.
        if args.publishing() && !args.churning() && c.delivered - c.duplicated >= ok * readers {
            break;
        }
        // Closer looks for a burst: its window ends here.
        tokio::time::sleep(Duration::from_millis(if args.bursting() { 5 } else { 50 })).await;
        progress.maybe_print("drain", shards, published, watched);
        if let Some(s) = series.as_mut() {
            s.maybe_sample("drain", shards, published);
        }
    }
    if args.bursting() {
        window_end = sample(shards, watched);
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
    let client_threads = window_start
        .client_threads
        .iter()
        .zip(&window_end.client_threads)
        .map(|(a, b)| Some(b.as_ref()?.saturating_sub(*a.as_ref()?)))
        .collect();
    let machine = match (window_start.machine, window_end.machine) {
        (Some(a), Some(b)) if b.1 > a.1 => {
            Some((b.0 - a.0).as_secs_f64() / (b.1 - a.1).as_secs_f64())
        }
        _ => None,
    };
    Ok(Report {
        machine_busy: machine,
        client_threads,
        connect_elapsed,
        window,
        window_delivered: window_end.delivered - window_start.delivered,
        published_attempted: published.attempted.load(Ordering::Relaxed),
        published_ok: ok,
        publish_errors: published.errors.load(Ordering::Relaxed),
        publish_backlog_max: published.behind.load(Ordering::Relaxed),
        publish_lag_max: Duration::from_micros(published.lag_max_micros.load(Ordering::Relaxed)),
        published_scheduled: published.scheduled.load(Ordering::Relaxed),
        pipelines: published.pipelines.load(Ordering::Relaxed),
        largest_pipeline: published.largest_pipeline.load(Ordering::Relaxed),
        schedule: (!args.bursting()).then_some(args.duration),
        first_sent_nanos: published.first_sent_nanos.load(Ordering::Relaxed),
        last_ack_nanos: published.last_ack_nanos.load(Ordering::Relaxed),
        run_elapsed: run_start.elapsed(),
        processes,
        counts: Counts::default(),
        series: series.map(|s| s.finish(run_start, args.duration)),
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
    /// Also RSS and open fds of watched processes (with the series).
    resources: bool,
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
            resources: args.series_on(),
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
        let delivered = c.received();
        let pubs = published.ok.load(Ordering::Relaxed);
        let secs = dt.as_secs_f64();
        let mut line = format!(
            "[{:>5.1}s {phase:<7}] conns {}/{}{}  pub {} ({:.0}/s)  recv {} ({:.0}/s)",
            (now - self.start).as_secs_f64(),
            c.live(),
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
        if c.filtered_connected > 0 {
            // Closes are counted when the run ends: not shown here.
            line += &format!(
                "  filtered {} (frames {})",
                c.filtered_connected, c.filtered_received
            );
        }
        if c.churned() + c.late_connected > 0 {
            line += &format!("  churned {} new {}", c.churned(), c.late_connected);
            if c.late_connect_failed > 0 {
                line += &format!(" ({} failed)", c.late_connect_failed);
            }
        }
        let dup = c.duplicated + c.late_duplicated + c.churned_duplicated;
        if dup > 0 {
            line += &format!("  dup {dup}");
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
            if self.resources {
                if let Some(rss) = procfs::rss(*pid) {
                    line += &format!(" {:.0}MiB", rss as f64 / 1048576.0);
                }
                if let Some(fds) = procfs::fds(*pid) {
                    line += &format!(" {fds}fd");
                }
            }
        }
        if !self.quiet {
            eprintln!("{line}");
        }
        self.last = now;
        self.last_delivered = delivered;
        self.last_published = pubs;
    }
}

/// One client thread's share of the churn, and what it needs to replace
/// the clients it removes.
struct ChurnPlan {
    per_sec: f64,
    close_share: f64,
    silent_share: f64,
    silent_hold: Duration,
    targets: Vec<Arc<Target>>,
    source_ips: Vec<std::net::IpAddr>,
    seed: u64,
}

impl ChurnPlan {
    /// Every second while publishing: picks its share of connected,
    /// churnable clients at random, tells each how to leave, and starts as
    /// many replacements (themselves churnable). Returns when publishing stops.
    async fn run(self, set: &mut tokio::task::JoinSet<()>, common: &Common) {
        let mut phase = common.phase.clone();
        while *phase.borrow_and_update() == Phase::Connecting {
            if phase.changed().await.is_err() {
                return;
            }
        }
        let mut rng = self.seed | 1;
        let mut next = || {
            // xorshift64*: plenty for picking victims.
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let mut owed = 0.0;
        let mut spawned = 0usize;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = phase.changed() => {
                    if changed.is_err() || *phase.borrow_and_update() != Phase::Running {
                        return;
                    }
                    continue;
                }
            }
            // Reap finished tasks so the set does not grow with the churn.
            while set.try_join_next().is_some() {}
            owed += self.per_sec;
            let due = owed.floor() as usize;
            owed -= due as f64;
            let mut removed = 0;
            {
                let mut pool = common.churn_pool.lock().unwrap_or_else(|p| p.into_inner());
                while removed < due && !pool.is_empty() {
                    let at = (next() % pool.len() as u64) as usize;
                    let victim = pool.swap_remove(at);
                    let roll = (next() >> 11) as f64 / (1u64 << 53) as f64;
                    let kind = if roll < self.close_share {
                        Churn::Close
                    } else if roll < self.close_share + self.silent_share {
                        Churn::Silent(self.silent_hold)
                    } else {
                        Churn::Drop
                    };
                    // Fails only if the client had already ended: pick again.
                    if victim.send(kind).is_ok() {
                        removed += 1;
                    }
                }
            }
            for _ in 0..removed {
                let spec = ClientSpec {
                    target: self.targets[spawned % self.targets.len()].clone(),
                    source_ip: (!self.source_ips.is_empty())
                        .then(|| self.source_ips[spawned % self.source_ips.len()]),
                    slow: false,
                    churnable: true,
                    late: true,
                    filtered: false,
                };
                spawned += 1;
                set.spawn(client::run(spec, common.clone()));
            }
        }
    }
}
