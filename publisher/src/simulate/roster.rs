//! The tutors: a fixed roster in four performance tiers, and their figures.
//!
//! Every figure is a mean-reverting random walk (an Ornstein–Uhlenbeck
//! process) around the tutor's own baseline, so it wanders but never drifts:
//! its spread after an hour is the spread after a minute of warm-up. The
//! 7-day figures move faster and further than the 30-day ones, as rolling
//! windows do. A tutor's tier follows the 30-day figures, with a margin so
//! one near a boundary does not flap.

use serde_json::{Value, json};

use super::normal;

pub const TUTORS: usize = 40;

/// TutorMax's performance tiers, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    NeedsSupport,
    Developing,
    Strong,
    Exemplary,
}

impl Tier {
    pub const ALL: [Tier; 4] = [
        Tier::NeedsSupport,
        Tier::Developing,
        Tier::Strong,
        Tier::Exemplary,
    ];

    /// The name on the wire (`performance_tier`, `performance_distribution`).
    pub fn name(self) -> &'static str {
        match self {
            Tier::NeedsSupport => "Needs Support",
            Tier::Developing => "Developing",
            Tier::Strong => "Strong",
            Tier::Exemplary => "Exemplary",
        }
    }

    /// The tier of a composite score in 0..1 (see [`Window::score`]).
    fn of(score: f64) -> Tier {
        match score {
            s if s < 0.632 => Tier::NeedsSupport,
            s if s < 0.748 => Tier::Developing,
            s if s < 0.855 => Tier::Strong,
            _ => Tier::Exemplary,
        }
    }

    /// The roster's tier at hire: 6 need support, 12 develop, 14 are strong,
    /// 8 exemplary.
    fn at_hire(index: usize) -> Tier {
        match index % 20 {
            0..3 => Tier::NeedsSupport,
            3..9 => Tier::Developing,
            9..16 => Tier::Strong,
            _ => Tier::Exemplary,
        }
    }
}

/// How far inside a new tier's band a score must be before a tutor moves.
const TIER_MARGIN: f64 = 0.01;

const FIRST_NAMES: [&str; 20] = [
    "Ada",
    "Alan",
    "Grace",
    "Marie",
    "Rosalind",
    "Emmy",
    "Richard",
    "Katherine",
    "Chien-Shiung",
    "Toni",
    "Carl",
    "Hypatia",
    "Srinivasa",
    "Dorothy",
    "Niels",
    "Lise",
    "Benjamin",
    "Barbara",
    "Mae",
    "Tu",
];
const LAST_NAMES: [&str; 8] = [
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Alvarez",
    "Nakamura",
    "Osei",
    "Fischer",
];
const SUBJECTS: [&str; 8] = [
    "Algebra",
    "Geometry",
    "Calculus",
    "Chemistry",
    "Biology",
    "Physics",
    "English",
    "Computer Science",
];

/// One window's figures, or a tutor's baseline for them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// 1–5.
    pub avg_rating: f64,
    /// 0–100.
    pub engagement_score: f64,
    /// 0–1: first sessions after which the student booked again.
    pub first_session_success_rate: f64,
    /// 0–1.
    pub reschedule_rate: f64,
    /// 0–1: share of sessions the tutor missed.
    pub no_show_rate: f64,
    /// Sessions a week.
    pub weekly_sessions: f64,
}

impl Window {
    /// 0–1, the weighted figures the tier is read from.
    pub fn score(&self) -> f64 {
        0.4 * (self.avg_rating - 1.0) / 4.0
            + 0.3 * self.engagement_score / 100.0
            + 0.3 * self.first_session_success_rate
    }

    /// Sessions completed in a window of `days`.
    pub fn sessions(&self, days: f64) -> u32 {
        (self.weekly_sessions * days / 7.0).round() as u32
    }

    pub fn no_shows(&self, days: f64) -> u32 {
        (f64::from(self.sessions(days)) * self.no_show_rate).round() as u32
    }

    /// The centre of a tier's band, moved by `jitter` (−1..1) toward its
    /// edges: tutors of one tier differ, and some sit near a boundary.
    fn baseline(tier: Tier, jitter: f64) -> Window {
        // (centre, half-width) of each figure per tier.
        let (rating, engagement, first, reschedule, no_show, weekly) = match tier {
            Tier::NeedsSupport => (
                (3.35, 0.15),
                (56.0, 5.0),
                (0.56, 0.05),
                (0.20, 0.04),
                (0.07, 0.02),
                (9.0, 2.0),
            ),
            Tier::Developing => (
                (3.85, 0.12),
                (68.0, 4.0),
                (0.68, 0.04),
                (0.13, 0.03),
                (0.04, 0.01),
                (13.0, 3.0),
            ),
            Tier::Strong => (
                (4.3, 0.1),
                (79.0, 4.0),
                (0.79, 0.04),
                (0.08, 0.02),
                (0.02, 0.01),
                (16.0, 3.0),
            ),
            Tier::Exemplary => (
                (4.7, 0.1),
                (90.0, 3.0),
                (0.89, 0.03),
                (0.04, 0.015),
                (0.01, 0.005),
                (18.0, 3.0),
            ),
        };
        let up = |(c, w): (f64, f64)| c + jitter * w;
        let down = |(c, w): (f64, f64)| c - jitter * w;
        Window {
            avg_rating: up(rating),
            engagement_score: up(engagement),
            first_session_success_rate: up(first),
            reschedule_rate: down(reschedule),
            no_show_rate: down(no_show),
            weekly_sessions: up(weekly),
        }
    }

    /// One step of `dt` seconds toward `mean`, each figure with its own
    /// noise; `pace` scales the reversion rate and the spread.
    fn walk(&mut self, mean: &Window, pace: &Pace, dt: f64, rng: &mut fastrand::Rng) {
        let mut step = |x: &mut f64, m: f64, spread: f64, lo: f64, hi: f64| {
            *x = revert(*x, m, pace.reversion, spread * pace.spread, dt, rng).clamp(lo, hi);
        };
        step(&mut self.avg_rating, mean.avg_rating, 0.12, 1.0, 5.0);
        step(
            &mut self.engagement_score,
            mean.engagement_score,
            3.5,
            0.0,
            100.0,
        );
        step(
            &mut self.first_session_success_rate,
            mean.first_session_success_rate,
            0.04,
            0.0,
            1.0,
        );
        step(
            &mut self.reschedule_rate,
            mean.reschedule_rate,
            0.025,
            0.0,
            1.0,
        );
        step(&mut self.no_show_rate, mean.no_show_rate, 0.012, 0.0, 1.0);
        step(
            &mut self.weekly_sessions,
            mean.weekly_sessions,
            2.0,
            0.0,
            60.0,
        );
    }
}

/// How fast a window's figures revert (per second) and how far they spread
/// (a factor on each figure's base spread).
struct Pace {
    reversion: f64,
    spread: f64,
}

/// The 7-day window: back to the baseline within ten minutes or so.
const WEEK: Pace = Pace {
    reversion: 1.0 / 600.0,
    spread: 1.0,
};
/// The 30-day window: slower and steadier.
const MONTH: Pace = Pace {
    reversion: 1.0 / 1800.0,
    spread: 0.5,
};

/// An exact Ornstein–Uhlenbeck step: `x` pulled toward `mean` at `rate` per
/// second, with stationary standard deviation `spread`.
fn revert(x: f64, mean: f64, rate: f64, spread: f64, dt: f64, rng: &mut fastrand::Rng) -> f64 {
    let keep = (-rate * dt).exp();
    mean + (x - mean) * keep + spread * (1.0 - keep * keep).sqrt() * normal(rng)
}

/// Most sessions a tutor runs at once.
const MAX_LIVE_SESSIONS: u32 = 4;

#[derive(Debug, Clone)]
pub struct Tutor {
    pub id: String,
    pub name: String,
    pub subject: &'static str,
    pub tier: Tier,
    baseline: Window,
    pub week: Window,
    pub month: Window,
    /// Live figures for the built-in page's table.
    pub online: bool,
    pub active_sessions: u32,
    pub response_ms: f64,
    baseline_response_ms: f64,
}

impl Tutor {
    /// The `index`th tutor of the roster (names and subjects are fixed;
    /// where in its tier a tutor sits depends on the seed).
    pub fn hire(index: usize, rng: &mut fastrand::Rng) -> Tutor {
        let tier = Tier::at_hire(index);
        let jitter = rng.f64() * 1.6 - 0.8;
        let baseline = Window::baseline(tier, jitter);
        let baseline_response_ms = match tier {
            Tier::NeedsSupport => 1600.0,
            Tier::Developing => 1200.0,
            Tier::Strong => 950.0,
            Tier::Exemplary => 750.0,
        } * (1.0 - 0.15 * jitter);
        Tutor {
            id: format!("t-{:02}", index + 1),
            name: format!(
                "{} {}",
                FIRST_NAMES[index % FIRST_NAMES.len()],
                LAST_NAMES[(index * 3 + index / FIRST_NAMES.len()) % LAST_NAMES.len()]
            ),
            subject: SUBJECTS[(index * 5) % SUBJECTS.len()],
            tier: Tier::of(baseline.score()),
            baseline,
            week: baseline,
            month: baseline,
            online: rng.f64() < 0.8,
            active_sessions: 0,
            response_ms: baseline_response_ms,
            baseline_response_ms,
        }
    }

    /// Advances `dt` seconds; true when the tutor's tier changed.
    pub fn step(&mut self, dt: f64, rng: &mut fastrand::Rng) -> bool {
        let chance = |per_second: f64| 1.0 - (-per_second * dt).exp();
        self.week.walk(&self.baseline, &WEEK, dt, rng);
        self.month.walk(&self.baseline, &MONTH, dt, rng);
        self.response_ms = revert(
            self.response_ms,
            self.baseline_response_ms,
            1.0 / 300.0,
            150.0,
            dt,
            rng,
        )
        .clamp(250.0, 6000.0);
        // About 80% online: a shift lasts ~20 minutes, a break ~5.
        if rng.f64()
            < chance(if self.online {
                1.0 / 1200.0
            } else {
                1.0 / 300.0
            })
        {
            self.online = !self.online;
        }
        if !self.online {
            self.active_sessions = 0;
        } else {
            if self.active_sessions < MAX_LIVE_SESSIONS && rng.f64() < chance(1.0 / 300.0) {
                self.active_sessions += 1;
            }
            if rng.f64() < chance(f64::from(self.active_sessions) / 600.0) {
                self.active_sessions -= 1;
            }
        }
        let tier = self.retier();
        let changed = tier != self.tier;
        self.tier = tier;
        changed
    }

    fn retier(&self) -> Tier {
        let score = self.month.score();
        let tier = Tier::of(score);
        if tier == self.tier
            || (Tier::of(score - TIER_MARGIN) == tier && Tier::of(score + TIER_MARGIN) == tier)
        {
            tier
        } else {
            self.tier
        }
    }

    pub fn status(&self) -> &'static str {
        match (self.online, self.active_sessions) {
            (false, _) => "offline",
            (true, 0) => "away",
            (true, 1..=2) => "online",
            _ => "busy",
        }
    }

    /// The `metrics_update` of one window (`7day` or `30day`).
    pub fn metrics(&self, window: &'static str) -> Value {
        let (w, days) = if window == WINDOW_7DAY {
            (&self.week, 7.0)
        } else {
            (&self.month, 30.0)
        };
        json!({
            "tutor_id": self.id,
            "tutor_name": self.name,
            "window": window,
            "avg_rating": round(w.avg_rating, 2),
            "engagement_score": round(w.engagement_score, 1),
            "sessions_completed": w.sessions(days),
            "first_session_success_rate": round(w.first_session_success_rate, 3),
            "reschedule_rate": round(w.reschedule_rate, 3),
            "no_show_count": w.no_shows(days),
            "performance_tier": self.tier.name(),
            "subject": self.subject,
            // What the tutor is doing now, the same in both windows; the
            // built-in page's table reads these.
            "name": self.name,
            "status": self.status(),
            "active_sessions": self.active_sessions,
            "avg_response_time_ms": self.response_ms.round() as u32,
            "satisfaction_score": round(self.month.avg_rating, 2),
        })
    }
}

pub const WINDOW_7DAY: &str = "7day";
pub const WINDOW_30DAY: &str = "30day";
pub const WINDOWS: [&str; 2] = [WINDOW_7DAY, WINDOW_30DAY];

pub fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}
