//! The final report: a table on stdout, optionally JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::cli::Args;
use crate::series::SeriesReport;
use crate::stats::Counts;

#[derive(Debug)]
pub struct ProcessReport {
    pub name: String,
    pub pid: u32,
    /// (user, system) CPU time used in the measured window.
    pub cpu: Option<(Duration, Duration)>,
    pub rss_before: Option<u64>,
    pub rss_connected: Option<u64>,
    pub rss_end: Option<u64>,
}

#[derive(Debug)]
pub struct Report {
    /// Share of the whole machine's CPU time that was busy in the window.
    pub machine_busy: Option<f64>,
    /// CPU time of each client thread in the window.
    pub client_threads: Vec<Option<Duration>>,
    pub connect_elapsed: Duration,
    /// The measured window: after the warm-up, until publishing stopped (a
    /// burst: from its first event to the end of the drain).
    pub window: Duration,
    /// Deliveries (all clients) inside the window.
    pub window_delivered: u64,
    pub published_attempted: u64,
    pub published_ok: u64,
    pub publish_errors: u64,
    pub publish_backlog_max: u64,
    /// How late the most overdue event went out against the schedule.
    pub publish_lag_max: Duration,
    /// Events the schedule asked for (`--rate` × `--duration`, or `--burst`).
    pub published_scheduled: u64,
    pub pipelines: u64,
    pub largest_pipeline: u64,
    /// How long the schedule ran (`--duration`; none for a burst).
    pub schedule: Option<Duration>,
    /// First send, last acknowledgement (Unix ns, 0 if none).
    pub first_sent_nanos: u64,
    pub last_ack_nanos: u64,
    pub run_elapsed: Duration,
    pub processes: Vec<ProcessReport>,
    pub counts: Counts,
    /// The per-second series, with `--series` or `--churn-per-sec`.
    pub series: Option<SeriesReport>,
}

/// Microseconds as milliseconds, 2 decimals.
pub fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

fn quantiles(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "samples": h.len(),
        "p50_ms": q(0.50),
        "p90_ms": q(0.90),
        "p99_ms": q(0.99),
        "p999_ms": q(0.999),
        "max_ms": h.max() as f64 / 1000.0,
        "mean_ms": h.mean() / 1000.0,
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A share of the schedule below which a run did not publish as asked.
const HELD_SHARE: f64 = 0.99;

/// A client thread busier than this in the window was (nearly) saturated:
/// what it measured may be the generator's limit, not the gateway's.
const SATURATED: f64 = 0.9;

impl Report {
    /// Initial, non-slow clients never churned (all of them without churn).
    fn readers(&self) -> u64 {
        self.counts.connected - self.counts.slow_clients - self.counts.churned_initial
    }

    fn connect_rate(&self) -> f64 {
        self.counts.connected as f64 / self.connect_elapsed.as_secs_f64().max(1e-9)
    }

    /// Deliveries per CPU-second of a watched process, in the window.
    fn per_cpu_second(&self, p: &ProcessReport) -> Option<f64> {
        let (user, system) = p.cpu?;
        let cpu = (user + system).as_secs_f64();
        (cpu > 0.0 && self.window_delivered > 0).then(|| self.window_delivered as f64 / cpu)
    }

    /// From the first send to the last acknowledgement.
    fn publish_span(&self) -> Option<Duration> {
        (self.first_sent_nanos > 0 && self.last_ack_nanos > self.first_sent_nanos)
            .then(|| Duration::from_nanos(self.last_ack_nanos - self.first_sent_nanos))
    }

    /// Acknowledged events per second: over the schedule's length for a
    /// steady rate (or longer, if the last replies came after it), over the
    /// publishing span for a burst.
    fn achieved_rate(&self) -> Option<f64> {
        let span = self.publish_span()?.max(self.schedule.unwrap_or_default());
        let secs = span.as_secs_f64();
        (secs > 0.0).then(|| self.published_ok as f64 / secs)
    }

    /// Whether the publisher did what was asked: (nearly) every scheduled
    /// event acknowledged, none failed. A steady run that falls short could
    /// not keep the rate (the load tool or Redis was the limit), and its
    /// gateway figures are for a lower rate than the label says.
    fn held(&self) -> bool {
        self.publish_errors == 0
            && self.published_ok as f64 >= self.published_scheduled as f64 * HELD_SHARE
    }

    /// Milliseconds from the burst's first send to `nanos` (0: never).
    fn since_first_send(&self, nanos: u64) -> Option<f64> {
        (nanos > 0 && self.first_sent_nanos > 0)
            .then(|| nanos.saturating_sub(self.first_sent_nanos) as f64 / 1e6)
    }

    /// Each client thread's busy share of the window.
    fn thread_busy(&self) -> Vec<Option<f64>> {
        let window = self.window.as_secs_f64().max(1e-9);
        self.client_threads
            .iter()
            .map(|cpu| cpu.map(|c| c.as_secs_f64() / window))
            .collect()
    }

    /// Client-thread CPU per delivery in the window, µs: how many deliveries
    /// a second one thread can read (1e6 / this) when it has a core.
    fn client_micros_per_delivery(&self) -> Option<f64> {
        let cpu: f64 = self
            .client_threads
            .iter()
            .map(|c| c.map(|c| c.as_secs_f64()))
            .sum::<Option<f64>>()?;
        (self.window_delivered > 0).then(|| cpu * 1e6 / self.window_delivered as f64)
    }

    /// Clients that got a greeting, of every kind.
    fn greeted(&self) -> u64 {
        self.counts.connected + self.counts.late_connected + self.counts.filtered_connected
    }

    /// Wire bytes per test event received, after the greetings (pings and
    /// close frames included).
    fn wire_per_event(&self) -> Option<f64> {
        let c = &self.counts;
        let after = c.wire_bytes.saturating_sub(c.wire_bytes_connect);
        (c.received() > 0).then(|| after as f64 / c.received() as f64)
    }

    /// Memory added per connection between before-connect and connected.
    fn rss_per_conn(&self, p: &ProcessReport) -> Option<f64> {
        let (a, b) = (p.rss_before?, p.rss_connected?);
        // Filtered clients hold connections too.
        let conns = self.counts.connected + self.counts.filtered_connected;
        (conns > 0).then(|| (b as f64 - a as f64) / conns as f64)
    }

    pub fn print(&self, args: &Args) {
        let c = &self.counts;
        let title = if args.label.is_empty() {
            String::new()
        } else {
            format!(" [{}]", args.label)
        };
        if args.bursting() {
            println!(
                "loadtest{title}: {} clients on {} URL(s), a burst of {} events × {} B via {}",
                args.clients,
                args.url.len(),
                args.burst,
                args.payload_bytes,
                args.via.name(),
            );
        } else {
            println!(
                "loadtest{title}: {} clients on {} URL(s), {} ev/s × {} B via {}, {:.0} s (+{:.0} s warm-up excluded)",
                args.clients,
                args.url.len(),
                args.rate,
                args.payload_bytes,
                args.via.name(),
                (args.duration.saturating_sub(args.warmup)).as_secs_f64(),
                args.warmup.as_secs_f64(),
            );
        }
        println!(
            "  connect     {} ok, {} failed in {:.2} s → {:.0} conn/s; handshake+greeting p50 {} p99 {} max {}",
            c.connected,
            c.connect_failed,
            self.connect_elapsed.as_secs_f64(),
            self.connect_rate(),
            ms(c.connect_time.value_at_quantile(0.5)),
            ms(c.connect_time.value_at_quantile(0.99)),
            ms(c.connect_time.max()),
        );
        if args.deflate {
            println!(
                "  deflate     offered by every client; the gateway accepted permessage-deflate for {} of the {} that connected",
                c.deflate_negotiated,
                self.greeted(),
            );
        }
        if args.publishing() {
            println!(
                "  published   {} ok of {} sent ({} scheduled), {} errors, publisher backlog max {}{}",
                self.published_ok,
                self.published_attempted,
                self.published_scheduled,
                self.publish_errors,
                self.publish_backlog_max,
                if self.pipelines > 0 {
                    format!(
                        ", {} pipelines (largest {})",
                        self.pipelines, self.largest_pipeline
                    )
                } else {
                    String::new()
                },
            );
            let achieved = self
                .achieved_rate()
                .map_or("–".to_owned(), |r| format!("{r:.0}/s"));
            let span = self.publish_span().unwrap_or_default().as_secs_f64();
            if args.bursting() {
                println!(
                    "  burst       {} events out in {:.0} ms ({achieved}){}",
                    self.published_ok,
                    span * 1000.0,
                    if self.held() {
                        String::new()
                    } else {
                        format!(
                            " — NOT as asked: {} of {} acknowledged",
                            self.published_ok, args.burst
                        )
                    },
                );
                let readers = self.readers();
                match self.since_first_send(c.burst_last_complete_nanos) {
                    Some(last) if c.burst_complete == readers => println!(
                        "  burst       every reading client ({readers}) had all {} events {last:.0} ms after the first send (the first client after {:.0} ms)",
                        args.burst,
                        self.since_first_send(c.burst_first_complete_nanos)
                            .unwrap_or(0.0),
                    ),
                    _ => println!(
                        "  burst       only {} of {readers} reading clients had all {} events by the end of the drain ({:.0} s)",
                        c.burst_complete,
                        args.burst,
                        args.drain.as_secs_f64(),
                    ),
                }
            } else {
                println!(
                    "  rate        asked {}/s, achieved {achieved} (first send to last reply {span:.2} s), schedule lag max {}{}",
                    args.rate,
                    ms(self.publish_lag_max.as_micros() as u64),
                    if self.held() {
                        " — held".to_owned()
                    } else {
                        format!(
                            " — NOT held: {:.1}% of the schedule acknowledged; the publisher (or Redis) was the limit, the figures below are for the rate achieved",
                            self.published_ok as f64 * 100.0
                                / self.published_scheduled.max(1) as f64
                        )
                    },
                );
            }
            println!(
                "  delivered   {} to {} reading clients (expected {}); {:.0}/s in the window",
                c.delivered,
                self.readers(),
                self.published_ok * self.readers(),
                self.window_delivered as f64 / self.window.as_secs_f64().max(1e-9),
            );
            println!(
                "  lost        {}   duplicated {}   out of order {}{}   disconnected {}{}",
                c.lost,
                c.duplicated,
                c.order_violations,
                if self.pipelines == 0 {
                    format!(" (not ordered: {} publish workers)", args.inflight)
                } else {
                    String::new()
                },
                c.disconnected,
                if c.close_reasons.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", c.close_reasons.join("; "))
                }
            );
            if c.latency.is_empty() {
                println!("  latency     no samples");
            } else {
                println!(
                    "  latency     p50 {}  p90 {}  p99 {}  p999 {}  max {}  ({} samples, publish → receive)",
                    ms(c.latency.value_at_quantile(0.5)),
                    ms(c.latency.value_at_quantile(0.9)),
                    ms(c.latency.value_at_quantile(0.99)),
                    ms(c.latency.value_at_quantile(0.999)),
                    ms(c.latency.max()),
                    c.latency.len(),
                );
            }
            if args.churning() {
                println!(
                    "  churn       {}/s asked: {} clients left ({} dropped the socket without a close, {} closed cleanly, {} went silent for {:.0} s); {} replacements connected, {} failed",
                    args.churn_per_sec,
                    c.churned(),
                    c.churned_drop,
                    c.churned_close,
                    c.churned_silent,
                    args.churn_silent_hold.as_secs_f64(),
                    c.late_connected,
                    c.late_connect_failed,
                );
                if !c.late_connect_time.is_empty() {
                    println!(
                        "  replaced    handshake+greeting under load p50 {} p99 {} max {}",
                        ms(c.late_connect_time.value_at_quantile(0.5)),
                        ms(c.late_connect_time.value_at_quantile(0.99)),
                        ms(c.late_connect_time.max()),
                    );
                }
                println!(
                    "  steady      {} of the first clients were never churned: the delivered/lost/duplicated lines above count them only",
                    self.readers(),
                );
                println!(
                    "  replacements {} alive at the end: lost {} (of the events handed to the publisher after each one's greeting), duplicated {}, {} delivered",
                    c.late_alive, c.late_lost, c.late_duplicated, c.late_delivered,
                );
                println!(
                    "  churned     {} events reached clients before they left, {} duplicated (not counted for loss)",
                    c.churned_delivered, c.churned_duplicated,
                );
            }
            if c.slow_clients > 0 {
                println!(
                    "  slow        {} clients stopped reading after {:.0} s (excluded above); {} events reached them; {} closed by the server",
                    c.slow_clients,
                    args.slow_after.as_secs_f64(),
                    c.slow_delivered,
                    c.slow_closed,
                );
            }
        } else if c.disconnected > 0 {
            println!(
                "  disconnected {} ({})",
                c.disconnected,
                c.close_reasons.join("; ")
            );
        }
        println!(
            "  wire        wire bytes received {} (all clients, from the sockets{}; {} of them handshakes and greetings), {} per delivered event after those (event text {} each)",
            c.wire_bytes,
            if args.deflate {
                ", before inflating"
            } else {
                ""
            },
            c.wire_bytes_connect,
            self.wire_per_event()
                .map_or("–".to_owned(), |b| format!("{b:.1} B")),
            if c.received() > 0 {
                format!("{:.1} B", c.bytes as f64 / c.received() as f64)
            } else {
                "–".to_owned()
            },
        );
        if args.filtered_clients > 0 {
            println!(
                "  filtered    {} clients on ?types={}: {} connected, {} failed; {} closed by the server during the run, {} frames received after the greeting (both should be 0)",
                args.filtered_clients,
                args.filtered_types.join(","),
                c.filtered_connected,
                c.filtered_connect_failed,
                c.filtered_closed,
                c.filtered_received,
            );
        }
        for p in &self.processes {
            let mut line = format!("  {:<11} pid {}:", p.name, p.pid);
            if let Some((user, system)) = p.cpu {
                let cpu = user + system;
                line += &format!(
                    " cpu {:.2} s ({:.2} user + {:.2} sys) in {:.1} s ({:.0}%)",
                    cpu.as_secs_f64(),
                    user.as_secs_f64(),
                    system.as_secs_f64(),
                    self.window.as_secs_f64(),
                    cpu.as_secs_f64() / self.window.as_secs_f64().max(1e-9) * 100.0
                );
                if let Some(rate) = self.per_cpu_second(p) {
                    line += &format!(", {rate:.0} deliveries per CPU-second");
                }
            }
            if let (Some(a), Some(b), Some(e)) = (p.rss_before, p.rss_connected, p.rss_end) {
                line += &format!("; rss {} → {} connected → {} end", mib(a), mib(b), mib(e));
                if let Some(per) = self.rss_per_conn(p) {
                    line += &format!(" ({:.2} KiB per connection)", per / 1024.0);
                }
            }
            println!("{line}");
        }
        let busy = self.thread_busy();
        if let Some(per) = self.client_micros_per_delivery() {
            let shares: Vec<String> = busy
                .iter()
                .map(|b| b.map_or("–".to_owned(), |b| format!("{:.0}%", b * 100.0)))
                .collect();
            let saturated = busy.iter().flatten().any(|&b| b > SATURATED);
            println!(
                "  clients     {} thread(s) busy {} of the window; {per:.2} µs of client-thread CPU per delivery (one thread with a core to itself reads ~{:.0}/s){}",
                busy.len(),
                shares.join(", "),
                1e6 / per.max(1e-9),
                if saturated {
                    " — a client thread was saturated: the figures may be the generator's limit; use more --threads"
                } else {
                    ""
                },
            );
        }
        if let Some(busy) = self.machine_busy {
            println!(
                "  machine     {:.0}% of all cores busy in the window",
                busy * 100.0
            );
        }
        if let Some(series) = &self.series {
            series.print(args.series_every);
        }
    }

    pub fn json(&self, args: &Args) -> Value {
        let c = &self.counts;
        json!({
            "label": args.label,
            "config": {
                "urls": args.url,
                "clients": args.clients,
                "rate": args.rate,
                "payload_bytes": args.payload_bytes,
                "via": args.via.name(),
                "duration_s": args.duration.as_secs_f64(),
                "warmup_s": args.warmup.as_secs_f64(),
                "threads": args.threads,
                "burst": args.burst,
                "filtered_clients": args.filtered_clients,
                "filtered_types": args.filtered_types,
                "slow_share": args.slow_share,
                "slow_after_s": args.slow_after.as_secs_f64(),
                "deflate": args.deflate,
            },
            "deflate": {
                "offered": args.deflate,
                "negotiated": c.deflate_negotiated,
                "connected": self.greeted(),
            },
            "wire": {
                "bytes": c.wire_bytes,
                "handshake_and_greeting_bytes": c.wire_bytes_connect,
                "per_event": self.wire_per_event(),
            },
            "connect": {
                "connected": c.connected,
                "failed": c.connect_failed,
                "elapsed_s": self.connect_elapsed.as_secs_f64(),
                "rate_per_s": self.connect_rate(),
                "time": quantiles(&c.connect_time),
            },
            "published": {
                "ok": self.published_ok,
                "attempted": self.published_attempted,
                "errors": self.publish_errors,
                "backlog_max": self.publish_backlog_max,
                "scheduled": self.published_scheduled,
                "rate_asked": (!args.bursting()).then_some(args.rate),
                "rate_achieved": self.achieved_rate(),
                "span_s": self.publish_span().map(|d| d.as_secs_f64()),
                "held": self.held(),
                "lag_max_ms": self.publish_lag_max.as_secs_f64() * 1000.0,
                "pipelines": self.pipelines,
                "largest_pipeline": self.largest_pipeline,
            },
            "burst": args.bursting().then(|| json!({
                "events": args.burst,
                "readers": self.readers(),
                "complete": c.burst_complete,
                "first_complete_ms": self.since_first_send(c.burst_first_complete_nanos),
                "last_complete_ms": (c.burst_complete == self.readers())
                    .then(|| self.since_first_send(c.burst_last_complete_nanos))
                    .flatten(),
            })),
            "filtered": {
                "clients": args.filtered_clients,
                "types": args.filtered_types,
                "connected": c.filtered_connected,
                "connect_failed": c.filtered_connect_failed,
                "closed": c.filtered_closed,
                "received": c.filtered_received,
            },
            "delivered": c.delivered,
            "expected": self.published_ok * self.readers(),
            "lost": c.lost,
            "duplicated": c.duplicated,
            "order_violations": c.order_violations,
            "disconnected": c.disconnected,
            "close_reasons": c.close_reasons,
            "other_frames": c.other_frames,
            "bytes": c.bytes,
            "latency": quantiles(&c.latency),
            "slow": {
                "clients": c.slow_clients,
                "delivered": c.slow_delivered,
                "closed_by_server": c.slow_closed,
            },
            "window": {
                "seconds": self.window.as_secs_f64(),
                "delivered": self.window_delivered,
                "per_second": self.window_delivered as f64 / self.window.as_secs_f64().max(1e-9),
            },
            "processes": self.processes.iter().map(|p| json!({
                "name": p.name,
                "pid": p.pid,
                "cpu_s": p.cpu.map(|(u, s)| (u + s).as_secs_f64()),
                "cpu_user_s": p.cpu.map(|(u, _)| u.as_secs_f64()),
                "cpu_sys_s": p.cpu.map(|(_, s)| s.as_secs_f64()),
                "deliveries_per_cpu_s": self.per_cpu_second(p),
                "rss_before": p.rss_before,
                "rss_connected": p.rss_connected,
                "rss_end": p.rss_end,
                "rss_per_connection": self.rss_per_conn(p),
            })).collect::<Vec<_>>(),
            "churn": {
                "per_sec": args.churn_per_sec,
                "close_share": args.churn_close_share,
                "silent_share": args.churn_silent_share,
                "silent_hold_s": args.churn_silent_hold.as_secs_f64(),
                "exempt_share": args.churn_exempt,
                "churned": c.churned(),
                "dropped": c.churned_drop,
                "closed": c.churned_close,
                "silent": c.churned_silent,
                "churned_initial": c.churned_initial,
                "churned_delivered": c.churned_delivered,
                "churned_duplicated": c.churned_duplicated,
                "replacements": c.late_connected,
                "replacements_failed": c.late_connect_failed,
                "replacement_connect_time": quantiles(&c.late_connect_time),
                "replacements_alive": c.late_alive,
                "replacements_lost": c.late_lost,
                "replacements_duplicated": c.late_duplicated,
                "replacements_delivered": c.late_delivered,
            },
            "series": self.series.as_ref().map(SeriesReport::json),
            "client_threads": {
                "busy": self.thread_busy(),
                "micros_per_delivery": self.client_micros_per_delivery(),
                "saturated": self.thread_busy().iter().flatten().any(|&b| b > SATURATED),
            },
            "run_elapsed_s": self.run_elapsed.as_secs_f64(),
            "machine_busy": self.machine_busy,
        })
    }
}
