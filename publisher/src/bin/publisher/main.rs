//! `publisher`: push dashboard events onto Redis from a shell or a job.
//!
//! ```text
//! publisher send --type alert --data '{"tutor_id":"t-17","severity":"critical"}'
//! publisher send --url http://localhost:8000 --key "$KEY" --type alert --data '{}'
//! nightly-recompute | publisher send --stdin      # one {"type","data"} per line
//! publisher simulate --rate 20
//! ```

mod stdin;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::{CommandFactory, Parser, Subcommand};
use publisher::batch::{DEFAULT_BATCH_EVENTS, MAX_BATCH_EVENTS};
use publisher::config::DEFAULT_REDIS_URL;
use publisher::simulate::Generator;
use publisher::{Publisher, RedisConfig, RedisTarget, WireConfig, WireFormat};
use serde_json::value::RawValue;

#[derive(Parser)]
#[command(
    version,
    about = "Publish dashboard events to the gateway's Redis bus (or one gateway over HTTP)"
)]
struct Cli {
    /// Where Redis is: the same variables as the gateway's (REDIS_URL,
    /// REDIS_CLUSTER_NODES, REDIS_SENTINELS, REDIS_TLS_*); default
    /// redis://127.0.0.1:6379.
    #[command(flatten)]
    redis: RedisConfig,
    #[command(flatten)]
    wire: WireConfig,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish one event (or, with --stdin, every event on standard input);
    /// prints its id and exits 0 once Redis (or, with --url, the gateway)
    /// has it.
    Send {
        /// Message type: metrics_update, alert, intervention, analytics_update or your own.
        #[arg(
            long = "type",
            required_unless_present = "stdin",
            conflicts_with = "stdin"
        )]
        kind: Option<String>,
        /// The event's data, as JSON; published byte for byte as written.
        #[arg(long, required_unless_present = "stdin", conflicts_with = "stdin")]
        data: Option<String>,
        /// Read events from standard input instead: one JSON object
        /// {"type": "...", "data": ...} per line (data byte for byte; blank
        /// lines skipped), published in batches (one round trip each, in
        /// order); prints each event's id, one per line, in input order. A
        /// bad line stops the run: everything before it is published,
        /// nothing from it on, and the message says so (exit 1).
        #[arg(long)]
        stdin: bool,
        /// Events per batch with --stdin (a batch also ends at 4 MiB).
        #[arg(long, default_value_t = DEFAULT_BATCH_EVENTS as u64, requires = "stdin",
              value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH_EVENTS as u64))]
        batch_size: u64,
        /// Publish through this gateway's POST /api/publish instead of Redis
        /// (e.g. http://localhost:8000 for `gateway --demo`).
        #[arg(long, env = "GATEWAY_URL")]
        url: Option<String>,
        /// The gateway's PUBLISH_API_KEY, sent as a bearer key (with --url).
        #[arg(long, env = "PUBLISH_API_KEY", hide_env_values = true)]
        key: Option<String>,
        /// The event's state key (else STATE_KEYS derives one from --data).
        #[arg(long, conflicts_with = "stdin")]
        state_key: Option<String>,
        /// Remove the event's state key (a tombstone; needs a key).
        #[arg(long, conflicts_with = "stdin")]
        removed: bool,
    },
    /// Publish a realistic, continuous stream of tutor metrics, alerts,
    /// interventions and analytics until stopped.
    Simulate {
        /// Events per second.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        rate: u32,
        /// Stop after this many events (default: never).
        #[arg(long)]
        count: Option<u64>,
        /// Seed for a repeatable stream (default: random).
        #[arg(long)]
        seed: Option<u64>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // Checked once, before anything connects: a misconfiguration exits 2
    // with a clear message, like the gateway's.
    let checked = cli
        .redis
        .clone()
        .or_url(DEFAULT_REDIS_URL)
        .target()
        .and_then(|target| cli.wire.validate().map(|()| target));
    let target = match checked {
        Ok(Some(target)) => target,
        Ok(None) => unreachable!("or_url names a Redis"),
        Err(err) => Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, err)
            .exit(),
    };
    let target = Target {
        redis: target,
        wire: cli.wire.wire_format(publisher::Topology::Single),
    };
    match run(cli.command, target).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("publisher: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where to publish, checked.
#[derive(Clone)]
struct Target {
    redis: RedisTarget,
    wire: WireFormat,
}

impl Target {
    async fn connect(&self) -> Result<Publisher, publisher::PublishError> {
        Publisher::connect_target(self.redis.clone(), self.wire.clone()).await
    }
}

async fn run(command: Command, target: Target) -> Result<()> {
    match command {
        Command::Send {
            kind,
            data,
            stdin,
            batch_size,
            url,
            key,
            state_key,
            removed,
        } => {
            // An empty variable counts as unset, as for the gateway.
            let key = key.filter(|key| !key.is_empty());
            let url = url.filter(|url| !url.is_empty());
            if stdin {
                let sink = match url {
                    Some(url) => stdin::Sink::Http(publisher::http::HttpPublisher::new(
                        &url,
                        key.as_deref(),
                    )?),
                    None => stdin::Sink::Redis(target.connect().await?),
                };
                let batch_size = usize::try_from(batch_size).unwrap_or(DEFAULT_BATCH_EVENTS);
                return stdin::send(sink, &target.wire, batch_size).await;
            }
            let (Some(kind), Some(data)) = (kind, data) else {
                unreachable!("clap requires --type and --data without --stdin");
            };
            shared::validate_kind(&kind).context("--type")?;
            // Validated, but published as written: a `RawValue` keeps the
            // caller's bytes (key order, `1.50`, escapes) where a `Value`
            // would sort keys and rewrite numbers.
            let data: Box<RawValue> =
                serde_json::from_str(&data).context("--data is not valid JSON")?;
            let line = publisher::lines::Line {
                kind,
                data,
                key: state_key,
                removed,
            };
            let id = match url {
                Some(url) => {
                    publisher::http::HttpPublisher::new(&url, key.as_deref())?
                        .publish_line(&line)
                        .await?
                }
                None => {
                    let batch = publisher::Batch::one(target.wire.encode_item(&line.item())?);
                    target.connect().await?.publish_batch(&batch).await?[0].to_string()
                }
            };
            println!("{id}");
            Ok(())
        }
        Command::Simulate { rate, count, seed } => simulate(&target, rate, count, seed).await,
    }
}

/// Publishes until `count` events went out (or forever), riding out Redis
/// restarts: a failed publish is logged and retried after a pause.
async fn simulate(target: &Target, rate: u32, count: Option<u64>, seed: Option<u64>) -> Result<()> {
    let mut generator = Generator::new(rate, seed.unwrap_or_else(|| fastrand::u64(..)));
    let mut publisher = target.connect().await?;
    let mut ticker = tokio::time::interval(generator.interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(rate, "simulating dashboard traffic; ctrl-c to stop");
    let mut sent = 0u64;
    // The generator keeps time by the wall clock: alerts' `triggered_at`
    // and the like read true even when publishing stalls.
    let mut event = generator.next_event_at(Utc::now());
    while count.is_none_or(|count| sent < count) {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        match publisher.publish(event.kind, &event.data).await {
            Ok(_) => {
                sent += 1;
                event = generator.next_event_at(Utc::now());
            }
            Err(err) => {
                tracing::warn!("publish failed, retrying in 1 s: {err}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Ok(fresh) = target.connect().await {
                    publisher = fresh;
                }
            }
        }
    }
    tracing::info!(sent, "simulation stopped");
    Ok(())
}
