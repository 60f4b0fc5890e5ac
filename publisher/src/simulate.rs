//! A realistic, endless stream of dashboard events for demos and load, in
//! the shape TutorMax's backend publishes.
//!
//! [`Generator`] keeps a small model of a tutoring floor and turns it into
//! events:
//! - a fixed roster of [`TUTORS`] tutors in four performance tiers, whose
//!   7-day and 30-day figures wander around each tutor's own baseline and
//!   always come back (module `roster`), as `metrics_update`s, one tutor and
//!   window after another;
//! - `alert`s raised from those figures and resolved later, and
//!   `intervention`s that move pending → in_progress → completed, each change
//!   re-published under the record's `id` (module `cases`);
//! - an `analytics_update` about once a second, computed from the same model:
//!   its `alerts_count` is the open alerts by severity, its
//!   `open_interventions` the interventions not completed, its
//!   `performance_distribution` the roster's tiers.
//!
//! It does no I/O and keeps its own clock: [`Generator::next_event`] steps it
//! by one interval, [`Generator::next_event_at`] sets it (the CLI passes the
//! wall clock). So a test can run an hour of generator time in a moment.
//! The gateway's `--demo` feeds the events to its own bus, the
//! `publisher simulate` CLI to Redis.
//!
//! Every change of an alert, an intervention or a tier is emitted before
//! the next analytics snapshot, so a dashboard that has seen the stream from
//! the start (the generator opens with the open alerts and interventions
//! it warmed up with) finds the tiles and its lists in agreement.

mod cases;
mod roster;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use shared::kind;

pub use cases::{MAX_ALERT_AGE, MAX_OPEN_ALERTS, MAX_OPEN_INTERVENTIONS, SEVERITIES};
pub use roster::{TUTORS, Tier, WINDOWS};
use roster::{Tutor, round};

/// The model advances in steps of this much generator time.
const STEP: Duration = Duration::from_secs(1);
/// Model time run before the first event, so the demo opens mid-shift with
/// alerts and interventions already open.
const WARM_UP: Duration = Duration::from_secs(20 * 60);
/// The most generator time one call catches up on: after a longer pause the
/// rest is skipped rather than replayed as a burst.
const MAX_CATCH_UP: Duration = Duration::from_secs(5 * 60);
/// Analytics come every second, or every this many events at low rates.
const ANALYTICS_EVERY_EVENTS: u32 = 10;

/// One event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEvent {
    pub kind: &'static str,
    pub data: Value,
}

#[derive(Debug)]
pub struct Generator {
    rng: fastrand::Rng,
    rate: u32,
    tutors: Vec<Tutor>,
    cases: cases::Cases,
    /// Generator time zero (the start of the warm-up).
    epoch: DateTime<Utc>,
    /// Now, since `epoch`.
    clock: Duration,
    /// How far the model has been advanced, since `epoch`.
    model: Duration,
    /// Changes not yet emitted; they go before anything else.
    outbox: VecDeque<SimEvent>,
    next_analytics: Duration,
    /// The next (tutor, window) whose metrics go out, as `tutor * 2 + window`.
    next_metrics: usize,
}

impl Generator {
    /// `rate`: events per second the caller will draw. Starts at the wall
    /// clock's now (its only reading of it); see [`Generator::starting_at`].
    pub fn new(rate: u32, seed: u64) -> Self {
        Self::starting_at(rate, seed, Utc::now())
    }

    /// A generator whose clock reads `start`; the same seed and start give
    /// the same stream.
    pub fn starting_at(rate: u32, seed: u64, start: DateTime<Utc>) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let tutors = (0..TUTORS).map(|i| Tutor::hire(i, &mut rng)).collect();
        let run = format!("{:04x}", rng.u16(..));
        let mut generator = Self {
            rng,
            rate: rate.max(1),
            tutors,
            cases: cases::Cases::new(run),
            epoch: start - chrono::Duration::from_std(WARM_UP).expect("small"),
            clock: WARM_UP,
            model: Duration::ZERO,
            outbox: VecDeque::new(),
            next_analytics: WARM_UP,
            next_metrics: 0,
        };
        while generator.model < WARM_UP {
            generator.step_model();
        }
        // What happened during the warm-up is summed up by what is open now.
        generator.outbox = generator.cases.snapshot(&generator.tutors).into();
        generator
    }

    /// The pause between two events at this generator's rate.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.rate))
    }

    /// The generator's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.epoch + chrono::Duration::from_std(self.clock).expect("generator time fits")
    }

    /// The next event at the generator's clock, which then moves on by one
    /// [`interval`](Self::interval).
    pub fn next_event(&mut self) -> SimEvent {
        let event = self.emit();
        self.clock += self.interval();
        event
    }

    /// The next event at `at` (the clock never goes back; after a long pause
    /// only the last few minutes are simulated).
    pub fn next_event_at(&mut self, at: DateTime<Utc>) -> SimEvent {
        let since = (at - self.epoch).to_std().unwrap_or(Duration::ZERO);
        self.clock = self.clock.max(since);
        self.emit()
    }

    fn emit(&mut self) -> SimEvent {
        if self.clock > self.model + MAX_CATCH_UP {
            self.model = self.clock - MAX_CATCH_UP;
        }
        while self.model + STEP <= self.clock {
            self.step_model();
        }
        if let Some(event) = self.outbox.pop_front() {
            return event;
        }
        if self.clock >= self.next_analytics {
            let every = STEP.max(self.interval() * ANALYTICS_EVERY_EVENTS);
            self.next_analytics = self.clock + every;
            return self.analytics();
        }
        let i = self.next_metrics;
        self.next_metrics = (i + 1) % (TUTORS * WINDOWS.len());
        SimEvent {
            kind: kind::METRICS_UPDATE,
            data: self.tutors[i / 2].metrics(WINDOWS[i % 2]),
        }
    }

    /// One [`STEP`] of the floor; its changes go to the outbox.
    fn step_model(&mut self) {
        self.model += STEP;
        let now = self.epoch + chrono::Duration::from_std(self.model).expect("generator time fits");
        let dt = STEP.as_secs_f64();
        for t in &mut self.tutors {
            if t.step(dt, &mut self.rng) {
                // A new tier is news: both windows say so at once.
                for window in WINDOWS {
                    self.outbox.push_back(SimEvent {
                        kind: kind::METRICS_UPDATE,
                        data: t.metrics(window),
                    });
                }
            }
        }
        let mut changes = Vec::new();
        self.cases
            .step(&self.tutors, now, dt, &mut self.rng, &mut changes);
        self.outbox.extend(changes);
    }

    fn analytics(&self) -> SimEvent {
        let tutors = &self.tutors;
        let n = tutors.len() as f64;
        let online: Vec<&Tutor> = tutors.iter().filter(|t| t.online).collect();
        let avg_rating = tutors.iter().map(|t| t.month.avg_rating).sum::<f64>() / n;
        let mut distribution = Map::new();
        for tier in Tier::ALL {
            let count = tutors.iter().filter(|t| t.tier == tier).count();
            distribution.insert(tier.name().to_owned(), count.into());
        }
        let by_severity = self.cases.alerts_by_severity();
        let mut alerts_count = Map::new();
        for (severity, count) in SEVERITIES.iter().zip(by_severity) {
            alerts_count.insert((*severity).to_owned(), count.into());
        }
        let response = if online.is_empty() {
            0.0
        } else {
            online.iter().map(|t| t.response_ms).sum::<f64>() / online.len() as f64
        };
        SimEvent {
            kind: kind::ANALYTICS_UPDATE,
            data: json!({
                "total_tutors": tutors.len(),
                "active_tutors": online.len(),
                "performance_distribution": distribution,
                "avg_rating": round(avg_rating, 2),
                "avg_engagement_score":
                    round(tutors.iter().map(|t| t.month.engagement_score).sum::<f64>() / n, 1),
                "total_sessions_7day": tutors.iter().map(|t| t.week.sessions(7.0)).sum::<u32>(),
                "total_sessions_30day": tutors.iter().map(|t| t.month.sessions(30.0)).sum::<u32>(),
                "alerts_count": alerts_count,
                "open_alerts": by_severity.iter().sum::<usize>(),
                "open_interventions": self.cases.open_interventions(),
                // What the built-in page's tiles and chart read.
                "sessions_in_progress": online.iter().map(|t| t.active_sessions).sum::<u32>(),
                "avg_satisfaction": round(avg_rating, 2),
                "avg_response_time_ms": response.round() as u32,
                "alerts_last_hour": self.cases.alerts_last_hour(),
            }),
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u = 1.0 - rng.f64(); // (0, 1]: ln(0) is not a number
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * rng.f64()).cos()
}
