//! A realistic, endless stream of dashboard events for demos and load.
//!
//! [`Generator`] keeps a small model of a tutoring floor (tutors with
//! sessions, response times and satisfaction that drift) and turns it into
//! events: mostly `metrics_update`s, an `analytics_update` computed from the
//! same model about once a second, and now and then an `alert` or
//! `intervention` when a tutor's numbers turn bad. It does no I/O: the
//! gateway's `--demo` feeds it to its own bus, the `publisher simulate` CLI
//! to Redis.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};
use shared::kind;

const TUTORS: [(&str, &str); 12] = [
    ("Ada Lovelace", "Mathematics"),
    ("Alan Turing", "Computer Science"),
    ("Grace Hopper", "Computer Science"),
    ("Marie Curie", "Chemistry"),
    ("Rosalind Franklin", "Biology"),
    ("Emmy Noether", "Mathematics"),
    ("Richard Feynman", "Physics"),
    ("Katherine Johnson", "Mathematics"),
    ("Chien-Shiung Wu", "Physics"),
    ("Toni Morrison", "Literature"),
    ("Carl Sagan", "Astronomy"),
    ("Hypatia", "Philosophy"),
];

#[derive(Debug, Clone)]
struct Tutor {
    id: String,
    name: &'static str,
    subject: &'static str,
    active_sessions: u32,
    avg_response_time_ms: f64,
    satisfaction: f64,
    sessions_completed: u32,
    online: bool,
}

/// One event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEvent {
    pub kind: &'static str,
    pub data: Value,
}

#[derive(Debug)]
pub struct Generator {
    rng: fastrand::Rng,
    tutors: Vec<Tutor>,
    rate: u32,
    emitted: u64,
    alerts: u64,
    /// Event numbers of recent alerts, for `alerts_last_hour`.
    recent_alerts: VecDeque<u64>,
    interventions: u64,
    open_interventions: u64,
}

impl Generator {
    /// `rate`: events per second the caller will draw; analytics come once
    /// every `rate` events, so about once a second.
    pub fn new(rate: u32, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let tutors = TUTORS
            .iter()
            .enumerate()
            .map(|(i, (name, subject))| Tutor {
                id: format!("t-{:02}", i + 1),
                name,
                subject,
                active_sessions: rng.u32(0..4),
                avg_response_time_ms: 600.0 + rng.f64() * 900.0,
                satisfaction: 4.0 + rng.f64(),
                sessions_completed: rng.u32(10..80),
                online: rng.f64() < 0.85,
            })
            .collect();
        Self {
            rng,
            tutors,
            rate: rate.max(1),
            emitted: 0,
            alerts: 0,
            recent_alerts: VecDeque::new(),
            interventions: 0,
            open_interventions: 0,
        }
    }

    /// The pause between two events at this generator's rate.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.rate))
    }

    /// The next event. The very first one is an analytics snapshot, so a
    /// dashboard has numbers at once.
    pub fn next_event(&mut self) -> SimEvent {
        let n = self.emitted;
        self.emitted += 1;
        if n.is_multiple_of(u64::from(self.rate)) {
            // An hour at this rate, in events (the generator has no clock).
            let hour = u64::from(self.rate) * 3600;
            while self.recent_alerts.front().is_some_and(|&at| at + hour < n) {
                self.recent_alerts.pop_front();
            }
            // Coaches work the queue: about one intervention closed every few seconds.
            if self.open_interventions > 0 && self.rng.f64() < 0.3 {
                self.open_interventions -= 1;
            }
            return self.analytics();
        }
        let i = self.rng.usize(..self.tutors.len());
        self.drift(i);
        let roll = self.rng.f64();
        let tutor = &self.tutors[i];
        if roll < 0.06 && (tutor.avg_response_time_ms > 1500.0 || tutor.satisfaction < 3.8) {
            self.alert(i)
        } else if roll < 0.09 && tutor.satisfaction < 4.1 {
            self.intervention(i)
        } else {
            self.metrics(i)
        }
    }

    fn drift(&mut self, i: usize) {
        let r = &mut self.rng;
        let t = &mut self.tutors[i];
        // Tutors log off rarely and come back soon: about 85% are online.
        let flip = if t.online { 0.02 } else { 0.12 };
        if r.f64() < flip {
            t.online = !t.online;
        }
        if !t.online {
            t.active_sessions = 0;
            return;
        }
        let delta = r.i32(-1..=1);
        t.active_sessions = t.active_sessions.saturating_add_signed(delta).min(6);
        if delta < 0 {
            t.sessions_completed += 1;
        }
        t.avg_response_time_ms =
            (t.avg_response_time_ms + (r.f64() - 0.48) * 250.0).clamp(200.0, 6000.0);
        t.satisfaction = (t.satisfaction + (r.f64() - 0.5) * 0.2).clamp(2.5, 5.0);
    }

    fn status(t: &Tutor) -> &'static str {
        match (t.online, t.active_sessions) {
            (false, _) => "offline",
            (true, 0) => "away",
            (true, 1..=3) => "online",
            _ => "busy",
        }
    }

    fn metrics(&self, i: usize) -> SimEvent {
        let t = &self.tutors[i];
        SimEvent {
            kind: kind::METRICS_UPDATE,
            data: json!({
                "tutor_id": t.id,
                "name": t.name,
                "subject": t.subject,
                "active_sessions": t.active_sessions,
                "avg_response_time_ms": t.avg_response_time_ms.round(),
                "satisfaction_score": (t.satisfaction * 100.0).round() / 100.0,
                "sessions_completed": t.sessions_completed,
                "status": Self::status(t),
            }),
        }
    }

    fn alert(&mut self, i: usize) -> SimEvent {
        self.alerts += 1;
        self.recent_alerts.push_back(self.emitted);
        let t = &self.tutors[i];
        let (severity, alert_kind, message) = if t.avg_response_time_ms > 1500.0 {
            let secs = t.avg_response_time_ms / 1000.0;
            let severity = if secs > 3.0 { "critical" } else { "warning" };
            (
                severity,
                "response_time",
                format!("{}: average response time {secs:.1} s", t.name),
            )
        } else {
            let score = t.satisfaction;
            let severity = if score < 3.2 { "critical" } else { "warning" };
            (
                severity,
                "satisfaction",
                format!("{}: satisfaction down to {score:.2}", t.name),
            )
        };
        SimEvent {
            kind: kind::ALERT,
            data: json!({
                "alert_id": format!("a-{}", self.alerts),
                "tutor_id": t.id,
                "severity": severity,
                "kind": alert_kind,
                "message": message,
            }),
        }
    }

    fn intervention(&mut self, i: usize) -> SimEvent {
        self.interventions += 1;
        self.open_interventions += 1;
        let actions = [
            "reassign_session",
            "coach_check_in",
            "review_transcript",
            "reduce_load",
        ];
        let t = &self.tutors[i];
        let action = actions[self.rng.usize(..actions.len())];
        let priority = if t.satisfaction < 3.5 {
            "high"
        } else {
            "medium"
        };
        SimEvent {
            kind: kind::INTERVENTION,
            data: json!({
                "intervention_id": format!("i-{}", self.interventions),
                "tutor_id": t.id,
                "action": action,
                "priority": priority,
                "reason": format!("{} ({}) satisfaction {:.2}", t.name, t.subject, t.satisfaction),
                "status": "pending",
            }),
        }
    }

    fn analytics(&self) -> SimEvent {
        let online: Vec<&Tutor> = self.tutors.iter().filter(|t| t.online).collect();
        let count = online.len().max(1) as f64;
        let avg = |f: fn(&Tutor) -> f64| online.iter().map(|t| f(t)).sum::<f64>() / count;
        SimEvent {
            kind: kind::ANALYTICS_UPDATE,
            data: json!({
                "total_tutors": self.tutors.len(),
                "active_tutors": online.len(),
                "sessions_in_progress": online.iter().map(|t| t.active_sessions).sum::<u32>(),
                "avg_satisfaction": (avg(|t| t.satisfaction) * 100.0).round() / 100.0,
                "avg_response_time_ms": avg(|t| t.avg_response_time_ms).round(),
                "alerts_last_hour": self.recent_alerts.len(),
                "open_interventions": self.open_interventions,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_has_every_dashboard_type_and_analytics_about_once_a_second() {
        let rate = 20;
        let mut generator = Generator::new(rate, 7);
        let events: Vec<SimEvent> = (0..4000).map(|_| generator.next_event()).collect();
        assert_eq!(events[0].kind, kind::ANALYTICS_UPDATE);
        for k in kind::KNOWN {
            assert!(events.iter().any(|e| e.kind == k), "no {k} in 4000 events");
        }
        let analytics = events
            .iter()
            .filter(|e| e.kind == kind::ANALYTICS_UPDATE)
            .count();
        assert_eq!(analytics, 4000 / rate as usize);
        assert_eq!(generator.interval(), Duration::from_millis(50));
    }

    #[test]
    fn most_tutors_stay_online_and_alerts_are_counted_over_the_last_hour() {
        let rate = 2; // an hour is 7200 events
        let mut generator = Generator::new(rate, 3);
        let analytics: Vec<SimEvent> = (0..30_000)
            .map(|_| generator.next_event())
            .filter(|e| e.kind == kind::ANALYTICS_UPDATE)
            .collect();
        let last = &analytics.last().unwrap().data;
        assert!(
            last["alerts_last_hour"].as_u64().unwrap() < generator.alerts,
            "a window, not a total"
        );
        let active: u64 = analytics
            .iter()
            .map(|a| a.data["active_tutors"].as_u64().unwrap())
            .sum();
        let share = active as f64 / (analytics.len() * TUTORS.len()) as f64;
        assert!(share > 0.6, "on average {share:.2} of tutors online");
    }

    #[test]
    fn analytics_agree_with_the_tutors() {
        let mut generator = Generator::new(5, 1);
        let first = generator.next_event();
        assert_eq!(first.data["total_tutors"], TUTORS.len());
        let active = first.data["active_tutors"].as_u64().unwrap();
        assert!(active <= TUTORS.len() as u64);
    }
}
