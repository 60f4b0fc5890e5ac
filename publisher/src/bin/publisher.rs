//! `publisher`: push dashboard events onto Redis from a shell or a job.
//!
//! ```text
//! publisher send --type alert --data '{"tutor_id":"t-17","severity":"critical"}'
//! publisher send --url http://localhost:8000 --key "$KEY" --type alert --data '{}'
//! publisher simulate --rate 20
//! ```

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use publisher::simulate::Generator;
use publisher::wire::{DEFAULT_HISTORY_SIZE, DEFAULT_HISTORY_TTL};
use publisher::{HistoryPolicy, Publisher, WireFormat};
use serde_json::value::RawValue;
use shared::envelope::DEFAULT_MAX_EVENT_BYTES;

const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

#[derive(Parser)]
#[command(
    version,
    about = "Publish dashboard events to the gateway's Redis bus (or one gateway over HTTP)"
)]
struct Cli {
    #[command(flatten)]
    redis: RedisArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct RedisArgs {
    /// Redis to publish to.
    #[arg(long, env = "REDIS_URL", default_value = DEFAULT_REDIS_URL, global = true)]
    redis_url: String,
    /// Redis Cluster seed nodes (comma-separated redis:// URLs); replaces REDIS_URL.
    #[arg(long, env = "REDIS_CLUSTER_NODES", global = true)]
    redis_cluster_nodes: Option<String>,
    /// Key and channel namespace; must match the gateways' CHANNEL_PREFIX.
    #[arg(long, env = "CHANNEL_PREFIX", default_value = "ws", global = true)]
    channel_prefix: String,
    /// Events kept for resume (`?since=`).
    #[arg(long, env = "HISTORY_SIZE", default_value_t = DEFAULT_HISTORY_SIZE, global = true)]
    history_size: usize,
    /// Seconds an event is kept for resume (0: until pushed out by size).
    #[arg(long, env = "HISTORY_TTL_SECS", default_value_t = DEFAULT_HISTORY_TTL.as_secs(), global = true)]
    history_ttl_secs: u64,
    /// Largest encoded event, bytes; bigger ones are refused (exit 1).
    #[arg(long, env = "MAX_EVENT_BYTES", default_value_t = DEFAULT_MAX_EVENT_BYTES, global = true,
          value_parser = parse_max_event_bytes)]
    max_event_bytes: usize,
}

fn parse_max_event_bytes(value: &str) -> Result<usize, String> {
    let range = shared::envelope::MAX_EVENT_BYTES_RANGE;
    match value.parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "{value:?} is not a whole number from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Publish one event; prints its id and exits 0 once Redis (or, with
    /// --url, the gateway) has it.
    Send {
        /// Message type: metrics_update, alert, intervention, analytics_update or your own.
        #[arg(long = "type")]
        kind: String,
        /// The event's data, as JSON; published byte for byte as written.
        #[arg(long)]
        data: String,
        /// Publish through this gateway's POST /api/publish instead of Redis
        /// (e.g. http://localhost:8000 for `gateway --demo`).
        #[arg(long, env = "GATEWAY_URL")]
        url: Option<String>,
        /// The gateway's PUBLISH_API_KEY, sent as a bearer key (with --url).
        #[arg(long, env = "PUBLISH_API_KEY", hide_env_values = true)]
        key: Option<String>,
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
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("publisher: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where to publish: one Redis, or a cluster's seeds.
#[derive(Clone)]
struct Target {
    url: String,
    cluster: Vec<String>,
    prefix: String,
    history: HistoryPolicy,
    max_event_bytes: usize,
}

impl Target {
    async fn connect(&self) -> Result<Publisher, publisher::PublishError> {
        let wire =
            WireFormat::new(&self.prefix, self.history).with_max_event_bytes(self.max_event_bytes);
        if self.cluster.is_empty() {
            Publisher::connect_with(&self.url, wire).await
        } else {
            Publisher::connect_cluster(&self.cluster, wire).await
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let target = Target {
        url: cli.redis.redis_url,
        cluster: cli
            .redis
            .redis_cluster_nodes
            .as_deref()
            .map(publisher::connection::cluster_seeds)
            .unwrap_or_default(),
        prefix: cli.redis.channel_prefix,
        history: HistoryPolicy {
            max_len: cli.redis.history_size,
            ttl: Duration::from_secs(cli.redis.history_ttl_secs),
        },
        max_event_bytes: cli.redis.max_event_bytes,
    };
    match cli.command {
        Command::Send {
            kind,
            data,
            url,
            key,
        } => {
            shared::validate_kind(&kind).context("--type")?;
            // Validated, but published as written: a `RawValue` keeps the
            // caller's bytes (key order, `1.50`, escapes) where a `Value`
            // would sort keys and rewrite numbers.
            let data: Box<RawValue> =
                serde_json::from_str(&data).context("--data is not valid JSON")?;
            // An empty variable counts as unset, as for the gateway.
            let key = key.filter(|key| !key.is_empty());
            let id = match url.filter(|url| !url.is_empty()) {
                Some(url) => publisher::http::publish(&url, key.as_deref(), &kind, &data).await?,
                None => target
                    .connect()
                    .await?
                    .publish(&kind, &*data)
                    .await?
                    .to_string(),
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
