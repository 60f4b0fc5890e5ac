//! The once-a-second time series of a soak run: clients, churn, publishes,
//! deliveries, and RSS, open file descriptors and CPU of every watched
//! process. Written as CSV while the run goes (so a crashed or interrupted
//! run still leaves its series), and summarised in the report: a table
//! every `--series-every` seconds and a warm-vs-end comparison.
//!
//! Warm is the last sample of the publishing phase at or before one third
//! of `--duration`; end is the last sample of the publishing phase. Growth
//! is end vs warm, in %, and the least-squares slope over the samples from
//! warm to end (per minute), which one outlier moves less than two points.
//! Nothing is asserted: it is a report.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::cli::Args;
use crate::procfs;
use crate::stats::{PublishCounts, Shard};

#[derive(Debug, Clone)]
pub struct ProcPoint {
    pub rss: Option<u64>,
    pub fds: Option<u64>,
    /// CPU since the previous sample, % of one core.
    pub cpu_pct: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Point {
    /// Seconds since the series started (the start of the connect phase).
    pub t: f64,
    pub phase: &'static str,
    pub live: u64,
    pub churned: u64,
    pub replacements: u64,
    pub published: u64,
    pub received: u64,
    pub procs: Vec<ProcPoint>,
}

pub struct Series {
    start: Instant,
    last: Option<Instant>,
    watched: Vec<(String, u32)>,
    last_cpu: Vec<Option<Duration>>,
    file: Option<File>,
    path: Option<String>,
    points: Vec<Point>,
}

impl Series {
    pub fn new(args: &Args, watched: &[(String, u32)]) -> anyhow::Result<Self> {
        let mut file = match &args.series {
            Some(path) => Some(File::create(path).with_context(|| format!("cannot write {path}"))?),
            None => None,
        };
        if let Some(f) = file.as_mut() {
            let mut header =
                "t_s,phase,clients_live,churned_total,replacements_total,published_total,received_total"
                    .to_owned();
            for (name, _) in watched {
                header += &format!(",{name}_rss_kib,{name}_fds,{name}_cpu_pct");
            }
            writeln!(f, "{header}")?;
        }
        Ok(Self {
            start: Instant::now(),
            last: None,
            watched: watched.to_vec(),
            last_cpu: watched.iter().map(|(_, pid)| procfs::cpu(*pid)).collect(),
            file,
            path: args.series.clone(),
            points: Vec::new(),
        })
    }

    /// A sample if a second has passed since the last one.
    pub fn maybe_sample(&mut self, phase: &'static str, shards: &[Arc<Shard>], p: &PublishCounts) {
        if self
            .last
            .is_none_or(|last| last.elapsed() >= Duration::from_secs(1))
        {
            self.sample_now(phase, shards, p);
        }
    }

    fn sample_now(&mut self, phase: &'static str, shards: &[Arc<Shard>], p: &PublishCounts) {
        let now = Instant::now();
        let dt = self
            .last
            .map_or(now - self.start, |last| now - last)
            .as_secs_f64();
        self.last = Some(now);
        let mut c = crate::stats::Counts::default();
        for shard in shards {
            c.merge(&shard.lock());
        }
        let procs = self
            .watched
            .iter()
            .enumerate()
            .map(|(i, (_, pid))| {
                let cpu = procfs::cpu(*pid);
                let cpu_pct = match (self.last_cpu[i], cpu) {
                    (Some(a), Some(b)) if dt > 0.0 => {
                        Some(b.saturating_sub(a).as_secs_f64() / dt * 100.0)
                    }
                    _ => None,
                };
                self.last_cpu[i] = cpu;
                ProcPoint {
                    rss: procfs::rss(*pid),
                    fds: procfs::fds(*pid),
                    cpu_pct,
                }
            })
            .collect();
        let point = Point {
            t: (now - self.start).as_secs_f64(),
            phase,
            live: c.live(),
            churned: c.churned(),
            replacements: c.late_connected,
            published: p.ok.load(Ordering::Relaxed),
            received: c.received(),
            procs,
        };
        if let Some(f) = self.file.as_mut() {
            let mut row = format!(
                "{:.1},{},{},{},{},{},{}",
                point.t,
                point.phase,
                point.live,
                point.churned,
                point.replacements,
                point.published,
                point.received
            );
            for p in &point.procs {
                let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
                row += &format!(
                    ",{},{},{}",
                    opt(p.rss.map(|b| b / 1024)),
                    opt(p.fds),
                    p.cpu_pct.map_or(String::new(), |c| format!("{c:.1}"))
                );
            }
            // A failed write loses a row, not the run.
            let _ = writeln!(f, "{row}");
        }
        self.points.push(point);
    }

    /// The series for the report; `run_start` is when publishing started.
    pub fn finish(self, run_start: Instant, duration: Duration) -> SeriesReport {
        let run_start_t = run_start
            .saturating_duration_since(self.start)
            .as_secs_f64();
        SeriesReport {
            names: self.watched.into_iter().map(|(name, _)| name).collect(),
            path: self.path,
            run_start_t,
            warm_t: run_start_t + duration.as_secs_f64() / 3.0,
            points: self.points,
        }
    }
}

#[derive(Debug)]
pub struct SeriesReport {
    pub names: Vec<String>,
    pub path: Option<String>,
    /// When publishing started, on the series clock.
    pub run_start_t: f64,
    /// One third into the publishing phase.
    pub warm_t: f64,
    pub points: Vec<Point>,
}

/// Warm and end values of one measure and its slope from warm to end.
#[derive(Debug, Clone, Copy)]
pub struct Growth {
    pub warm: f64,
    pub end: f64,
    pub pct: f64,
    pub per_min: f64,
}

impl SeriesReport {
    fn run_points(&self) -> impl Iterator<Item = (usize, &Point)> {
        self.points
            .iter()
            .enumerate()
            .filter(|(_, p)| p.phase == "run")
    }

    /// Indexes of the warm and end samples.
    fn warm_end(&self) -> Option<(usize, usize)> {
        let end = self.run_points().last()?.0;
        let warm = self
            .run_points()
            .filter(|(_, p)| p.t <= self.warm_t)
            .last()
            .or_else(|| self.run_points().next())?
            .0;
        (warm < end).then_some((warm, end))
    }

    fn growth(&self, value: impl Fn(&Point) -> Option<f64>) -> Option<Growth> {
        let (w, e) = self.warm_end()?;
        let (warm, end) = (value(&self.points[w])?, value(&self.points[e])?);
        let xy: Vec<(f64, f64)> = self.points[w..=e]
            .iter()
            .filter(|p| p.phase == "run")
            .filter_map(|p| Some((p.t, value(p)?)))
            .collect();
        let n = xy.len() as f64;
        let (mx, my) = (
            xy.iter().map(|p| p.0).sum::<f64>() / n,
            xy.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        Some(Growth {
            warm,
            end,
            pct: if warm > 0.0 {
                (end - warm) / warm * 100.0
            } else {
                0.0
            },
            per_min: if sxx > 0.0 { sxy / sxx * 60.0 } else { 0.0 },
        })
    }

    fn rss(&self, i: usize) -> Option<Growth> {
        self.growth(|p| p.procs[i].rss.map(|b| b as f64 / 1048576.0))
    }

    fn fds(&self, i: usize) -> Option<Growth> {
        self.growth(|p| p.procs[i].fds.map(|n| n as f64))
    }

    pub fn print(&self, every: Duration) {
        let every = every.as_secs_f64().max(1.0);
        println!(
            "  series      t = seconds since the first connect; publishing from t = {:.0} s{}",
            self.run_start_t,
            self.path
                .as_ref()
                .map_or(String::new(), |p| format!("; every second in {p}"))
        );
        let mut header = format!(
            "  {:>7} {:<7} {:>7} {:>8} {:>8}",
            "t s", "phase", "clients", "churned", "recv/s"
        );
        for name in &self.names {
            header += &format!(" {:>13} {:>8} {:>7}", format!("{name} MiB"), "fds", "cpu%");
        }
        println!("{header}");
        // Rows at multiples of `every` on the publishing clock, plus the
        // first and last samples and the warm and end samples.
        let marks = self.warm_end();
        let mut next_mark = self.run_start_t;
        for (i, p) in self.points.iter().enumerate() {
            let marked = matches!(marks, Some((w, e)) if i == w || i == e);
            let due = p.phase == "run" && p.t >= next_mark;
            if !(i == 0 || i + 1 == self.points.len() || marked || due) {
                continue;
            }
            if due {
                while next_mark <= p.t {
                    next_mark += every;
                }
            }
            let recv_s = if i > 0 {
                let q = &self.points[i - 1];
                (p.received - q.received) as f64 / (p.t - q.t).max(1e-9)
            } else {
                0.0
            };
            let mut row = format!(
                "  {:>7.0} {:<7} {:>7} {:>8} {:>8.0}",
                p.t, p.phase, p.live, p.churned, recv_s
            );
            for pp in &p.procs {
                row += &format!(
                    " {:>13} {:>8} {:>7}",
                    pp.rss
                        .map_or("–".to_owned(), |b| format!("{:.1}", b as f64 / 1048576.0)),
                    pp.fds.map_or("–".to_owned(), |n| n.to_string()),
                    pp.cpu_pct.map_or("–".to_owned(), |c| format!("{c:.0}"))
                );
            }
            if let Some((w, e)) = marks {
                if i == w {
                    row += "  ← warm";
                } else if i == e {
                    row += "  ← end";
                }
            }
            println!("{row}");
        }
        let Some((w, e)) = marks else {
            println!("  warm → end  too few samples in the publishing phase");
            return;
        };
        println!(
            "  warm → end  t = {:.0} s → {:.0} s (from one third of the publishing phase to its end):",
            self.points[w].t, self.points[e].t
        );
        for (i, name) in self.names.iter().enumerate() {
            let mut line = format!("  {name:<11}");
            if let Some(g) = self.rss(i) {
                line += &format!(
                    " rss {:.1} → {:.1} MiB ({:+.1}%, slope {:+.2} MiB/min)",
                    g.warm, g.end, g.pct, g.per_min
                );
            }
            if let Some(g) = self.fds(i) {
                line += &format!(
                    "; fds {:.0} → {:.0} ({:+.1}%, slope {:+.1}/min)",
                    g.warm, g.end, g.pct, g.per_min
                );
            }
            println!("{line}");
        }
    }

    pub fn json(&self) -> Value {
        let growth = |g: Option<Growth>| {
            g.map_or(
                Value::Null,
                |g| json!({"warm": g.warm, "end": g.end, "pct": g.pct, "slope_per_min": g.per_min}),
            )
        };
        json!({
            "csv": self.path,
            "run_start_t": self.run_start_t,
            "warm_t": self.warm_end().map(|(w, _)| self.points[w].t),
            "end_t": self.warm_end().map(|(_, e)| self.points[e].t),
            "processes": self.names.iter().enumerate().map(|(i, name)| json!({
                "name": name,
                "rss_mib": growth(self.rss(i)),
                "fds": growth(self.fds(i)),
            })).collect::<Vec<_>>(),
            "samples": self.points.len(),
        })
    }
}
