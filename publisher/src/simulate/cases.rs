//! Alerts and interventions: raised from the tutors' figures, worked by
//! coaches, closed.
//!
//! An alert is raised at most once per tutor and alert type while it is
//! open, resolved after a few minutes (sooner once its cause is gone), and
//! not raised again for that tutor and type for a cool-down; a high or
//! critical alert often opens an intervention, which moves pending →
//! in_progress → completed. Every change is one event carrying the whole
//! record under the same `id`, so a dashboard that keeps the latest record
//! per id has exactly the open set. Both sets are capped, so however long the
//! demo runs the feed stays readable.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use shared::kind;

use super::SimEvent;
use super::roster::Tutor;

/// Most alerts open at once.
pub const MAX_OPEN_ALERTS: usize = 20;
/// Most interventions not yet completed at once.
pub const MAX_OPEN_INTERVENTIONS: usize = 12;

/// Chance per second that a tutor's standing condition becomes an alert.
const RAISE_PER_SECOND: f64 = 1.0 / 300.0;
/// Chance per second that a coach resolves an open alert (about 4 minutes)...
const RESOLVE_PER_SECOND: f64 = 1.0 / 240.0;
/// ...and once the figure is back in range (about a minute).
const RESOLVE_CLEARED_PER_SECOND: f64 = 1.0 / 60.0;
/// An alert nobody resolved is closed as stale after this long.
pub const MAX_ALERT_AGE: Duration = Duration::from_secs(30 * 60);
/// After a resolution, the same tutor and type stay quiet this long.
const COOL_DOWN: Duration = Duration::from_secs(600);
/// pending → in_progress takes about 2 minutes, in_progress → completed 5.
const START_PER_SECOND: f64 = 1.0 / 120.0;
const COMPLETE_PER_SECOND: f64 = 1.0 / 300.0;

pub const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];

/// What an alert is about, each read from the tutor's recent figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlertType {
    LowRating,
    FirstSessionChurn,
    LowEngagement,
    HighRescheduleRate,
    NoShows,
    SlowResponse,
}

impl AlertType {
    const ALL: [AlertType; 6] = [
        AlertType::LowRating,
        AlertType::FirstSessionChurn,
        AlertType::LowEngagement,
        AlertType::HighRescheduleRate,
        AlertType::NoShows,
        AlertType::SlowResponse,
    ];

    fn name(self) -> &'static str {
        match self {
            AlertType::LowRating => "low_rating",
            AlertType::FirstSessionChurn => "first_session_churn",
            AlertType::LowEngagement => "low_engagement",
            AlertType::HighRescheduleRate => "high_reschedule_rate",
            AlertType::NoShows => "no_shows",
            AlertType::SlowResponse => "slow_response",
        }
    }

    /// The severity and message when the condition holds for `t` now.
    fn check(self, t: &Tutor) -> Option<(&'static str, String)> {
        let w = &t.week;
        let name = &t.name;
        match self {
            AlertType::LowRating if w.avg_rating < 3.6 => Some((
                match w.avg_rating {
                    r if r < 3.2 => "critical",
                    r if r < 3.4 => "high",
                    _ => "medium",
                },
                format!(
                    "{name}: 7-day average rating {:.2} (below 3.6)",
                    w.avg_rating
                ),
            )),
            AlertType::FirstSessionChurn if w.first_session_success_rate < 0.6 => Some((
                if w.first_session_success_rate < 0.5 {
                    "critical"
                } else {
                    "high"
                },
                format!(
                    "{name}: only {:.0}% of first sessions led to a second (7 days)",
                    w.first_session_success_rate * 100.0
                ),
            )),
            AlertType::LowEngagement if w.engagement_score < 60.0 => Some((
                if w.engagement_score < 50.0 {
                    "high"
                } else {
                    "medium"
                },
                format!(
                    "{name}: engagement score {:.1} (below 60)",
                    w.engagement_score
                ),
            )),
            AlertType::HighRescheduleRate if w.reschedule_rate > 0.18 => Some((
                if w.reschedule_rate > 0.25 {
                    "medium"
                } else {
                    "low"
                },
                format!(
                    "{name}: {:.0}% of sessions rescheduled this week",
                    w.reschedule_rate * 100.0
                ),
            )),
            AlertType::NoShows if w.no_shows(7.0) >= 2 => Some((
                if w.no_shows(7.0) >= 3 {
                    "medium"
                } else {
                    "low"
                },
                format!("{name}: {} no-shows in 7 days", w.no_shows(7.0)),
            )),
            AlertType::SlowResponse if t.online && t.response_ms > 2000.0 => Some((
                "low",
                format!(
                    "{name}: responding in {:.1} s on average",
                    t.response_ms / 1000.0
                ),
            )),
            _ => None,
        }
    }

    /// The intervention a coach opens for it, and how likely that is for a
    /// high or critical alert (medium: a quarter of that; low: never).
    fn intervention(self) -> (&'static str, f64) {
        match self {
            AlertType::LowRating => ("coaching_session", 0.7),
            AlertType::FirstSessionChurn => ("training_module", 0.7),
            AlertType::LowEngagement => ("peer_mentoring", 0.5),
            AlertType::HighRescheduleRate => ("check_in", 0.4),
            AlertType::NoShows => ("performance_review", 0.4),
            AlertType::SlowResponse => ("check_in", 0.0),
        }
    }
}

const COACHES: [&str; 4] = ["Coach Rivera", "Coach Chen", "Coach Adeyemi", "Coach Novak"];

#[derive(Debug, Clone)]
struct Alert {
    id: String,
    tutor: usize,
    alert_type: AlertType,
    severity: &'static str,
    message: String,
    triggered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pending,
    InProgress,
    Completed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
        }
    }
}

#[derive(Debug, Clone)]
struct Intervention {
    id: String,
    tutor: usize,
    kind: &'static str,
    status: Status,
    priority: &'static str,
    reason: String,
    alert_id: String,
    assigned_to: &'static str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// The open alerts and interventions (in the order they were opened, so a
/// seed gives one stream), and what closed recently.
#[derive(Debug)]
pub struct Cases {
    /// Distinguishes this run's ids from another run's (`a-<run>-<n>`).
    run: String,
    alerts: Vec<Alert>,
    alerts_raised: u64,
    /// Until when a (tutor, type) stays quiet after a resolution.
    cool_down: Vec<(usize, AlertType, DateTime<Utc>)>,
    /// When alerts were raised, oldest first, for `alerts_last_hour`.
    raised_at: VecDeque<DateTime<Utc>>,
    interventions: Vec<Intervention>,
    interventions_opened: u64,
}

impl Cases {
    pub fn new(run: String) -> Self {
        Self {
            run,
            alerts: Vec::new(),
            alerts_raised: 0,
            cool_down: Vec::new(),
            raised_at: VecDeque::new(),
            interventions: Vec::new(),
            interventions_opened: 0,
        }
    }

    /// One second of the floor at `now`: coaches resolve and work, new
    /// conditions raise alerts. Each change goes to `out`.
    pub fn step(
        &mut self,
        tutors: &[Tutor],
        now: DateTime<Utc>,
        dt: f64,
        rng: &mut fastrand::Rng,
        out: &mut Vec<SimEvent>,
    ) {
        let chance = |per_second: f64| 1.0 - (-per_second * dt).exp();

        // Coaches resolve alerts.
        let mut i = 0;
        while i < self.alerts.len() {
            let a = &self.alerts[i];
            let cleared = a.alert_type.check(&tutors[a.tutor]).is_none();
            let rate = if cleared {
                RESOLVE_CLEARED_PER_SECOND
            } else {
                RESOLVE_PER_SECOND
            };
            let stale =
                now - a.triggered_at >= chrono::Duration::from_std(MAX_ALERT_AGE).expect("small");
            if stale || rng.f64() < chance(rate) {
                let a = self.alerts.remove(i);
                self.cool_down.push((
                    a.tutor,
                    a.alert_type,
                    now + chrono::Duration::from_std(COOL_DOWN).expect("small"),
                ));
                out.push(alert_event(&a, &tutors[a.tutor], Some(now)));
            } else {
                i += 1;
            }
        }
        self.cool_down.retain(|&(_, _, until)| until > now);
        let hour_ago = now - chrono::Duration::hours(1);
        while self.raised_at.front().is_some_and(|&at| at <= hour_ago) {
            self.raised_at.pop_front();
        }

        // Coaches work the interventions.
        for item in &mut self.interventions {
            let next = match item.status {
                Status::Pending if rng.f64() < chance(START_PER_SECOND) => Status::InProgress,
                Status::InProgress if rng.f64() < chance(COMPLETE_PER_SECOND) => Status::Completed,
                _ => continue,
            };
            item.status = next;
            item.updated_at = now;
            out.push(intervention_event(item, &tutors[item.tutor]));
        }
        self.interventions.retain(|i| i.status != Status::Completed);

        // Standing conditions become alerts, one open per tutor and type,
        // none beyond the cap (this is the step's last part: it may stop here).
        for (t, tutor) in tutors.iter().enumerate() {
            for alert_type in AlertType::ALL {
                if self.alerts.len() >= MAX_OPEN_ALERTS {
                    return;
                }
                let Some((severity, message)) = alert_type.check(tutor) else {
                    continue;
                };
                let busy = self
                    .alerts
                    .iter()
                    .any(|a| a.tutor == t && a.alert_type == alert_type)
                    || self
                        .cool_down
                        .iter()
                        .any(|&(ct, ca, _)| ct == t && ca == alert_type);
                if busy || rng.f64() >= chance(RAISE_PER_SECOND) {
                    continue;
                }
                self.alerts_raised += 1;
                let alert = Alert {
                    id: format!("a-{}-{}", self.run, self.alerts_raised),
                    tutor: t,
                    alert_type,
                    severity,
                    message,
                    triggered_at: now,
                };
                self.raised_at.push_back(now);
                out.push(alert_event(&alert, tutor, None));
                self.maybe_intervene(&alert, tutor, now, rng, out);
                self.alerts.push(alert);
            }
        }
    }

    fn maybe_intervene(
        &mut self,
        alert: &Alert,
        tutor: &Tutor,
        now: DateTime<Utc>,
        rng: &mut fastrand::Rng,
        out: &mut Vec<SimEvent>,
    ) {
        let (kind, likelihood) = alert.alert_type.intervention();
        let (likelihood, priority) = match alert.severity {
            "critical" | "high" => (likelihood, "high"),
            "medium" => (likelihood / 4.0, "medium"),
            _ => return,
        };
        if self.interventions.len() >= MAX_OPEN_INTERVENTIONS
            || self.interventions.iter().any(|i| i.tutor == alert.tutor)
            || rng.f64() >= likelihood
        {
            return;
        }
        self.interventions_opened += 1;
        let item = Intervention {
            id: format!("i-{}-{}", self.run, self.interventions_opened),
            tutor: alert.tutor,
            kind,
            status: Status::Pending,
            priority,
            reason: alert.message.clone(),
            alert_id: alert.id.clone(),
            assigned_to: COACHES[rng.usize(..COACHES.len())],
            created_at: now,
            updated_at: now,
        };
        out.push(intervention_event(&item, tutor));
        self.interventions.push(item);
    }

    /// Every open alert and intervention as it stands: what a dashboard that
    /// joins now should be told first.
    pub fn snapshot(&self, tutors: &[Tutor]) -> Vec<SimEvent> {
        let alerts = self
            .alerts
            .iter()
            .map(|a| alert_event(a, &tutors[a.tutor], None));
        let interventions = self
            .interventions
            .iter()
            .map(|i| intervention_event(i, &tutors[i.tutor]));
        alerts.chain(interventions).collect()
    }

    /// Open alerts by severity, in [`SEVERITIES`] order.
    pub fn alerts_by_severity(&self) -> [usize; 4] {
        SEVERITIES.map(|s| self.alerts.iter().filter(|a| a.severity == s).count())
    }

    pub fn open_interventions(&self) -> usize {
        self.interventions.len()
    }

    pub fn alerts_last_hour(&self) -> usize {
        self.raised_at.len()
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An alert, open (`resolved_at` None) or resolved.
fn alert_event(a: &Alert, t: &Tutor, resolved_at: Option<DateTime<Utc>>) -> SimEvent {
    let mut data = json!({
        "id": a.id,
        "tutor_id": t.id,
        "tutor_name": t.name,
        "severity": a.severity,
        "alert_type": a.alert_type.name(),
        "message": a.message,
        "triggered_at": timestamp(a.triggered_at),
        "resolved": resolved_at.is_some(),
        "status": if resolved_at.is_some() { "resolved" } else { "open" },
        // The same, under the names the built-in page reads.
        "alert_id": a.id,
        "kind": a.alert_type.name(),
    });
    if let Some(at) = resolved_at {
        data["resolved_at"] = Value::from(timestamp(at));
    }
    SimEvent {
        kind: kind::ALERT,
        data,
    }
}

fn intervention_event(i: &Intervention, t: &Tutor) -> SimEvent {
    SimEvent {
        kind: kind::INTERVENTION,
        data: json!({
            "id": i.id,
            "tutor_id": t.id,
            "tutor_name": t.name,
            "type": i.kind,
            "status": i.status.name(),
            "priority": i.priority,
            "reason": i.reason,
            "alert_id": i.alert_id,
            "assigned_to": i.assigned_to,
            "created_at": timestamp(i.created_at),
            "updated_at": timestamp(i.updated_at),
            "due_date": (i.created_at + chrono::Duration::days(3)).date_naive().to_string(),
            // The same, under the names the built-in page reads.
            "intervention_id": i.id,
            "action": i.kind,
        }),
    }
}
