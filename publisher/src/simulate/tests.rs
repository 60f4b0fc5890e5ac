//! The generator over an hour of its own time (a moment of ours): figures
//! stay in realistic ranges, open alerts and interventions stay bounded,
//! and the tiles agree with what a dashboard's lists hold.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use chrono::{DateTime, TimeZone, Utc};

use super::*;

const RATE: u32 = 20;
const HOUR_EVENTS: usize = RATE as usize * 3600;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap()
}

/// One hour of generator time at 20 events a second, drawn once.
fn an_hour() -> &'static [SimEvent] {
    static HOUR: OnceLock<Vec<SimEvent>> = OnceLock::new();
    HOUR.get_or_init(|| {
        let mut generator = Generator::starting_at(RATE, 42, start());
        let events: Vec<SimEvent> = (0..HOUR_EVENTS).map(|_| generator.next_event()).collect();
        assert_eq!(generator.now(), start() + chrono::Duration::hours(1));
        events
    })
}

fn analytics(events: &[SimEvent]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e.kind == kind::ANALYTICS_UPDATE)
        .map(|e| &e.data)
        .collect()
}

fn num(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

fn mean(values: &[&Value], field: &str) -> f64 {
    values.iter().map(|v| num(v, field)).sum::<f64>() / values.len() as f64
}

/// What a dashboard holds after reading the stream: the latest record per
/// alert and intervention id, the latest 30-day tier per tutor.
#[derive(Default)]
struct Dashboard {
    alerts: HashMap<String, Value>,
    interventions: HashMap<String, Value>,
    tiers: HashMap<String, String>,
}

impl Dashboard {
    fn read(&mut self, event: &SimEvent) {
        let d = &event.data;
        let id = || d["id"].as_str().unwrap().to_owned();
        match event.kind {
            kind::ALERT => {
                self.alerts.insert(id(), d.clone());
            }
            kind::INTERVENTION => {
                self.interventions.insert(id(), d.clone());
            }
            kind::METRICS_UPDATE if d["window"] == "30day" => {
                let tier = d["performance_tier"].as_str().unwrap().to_owned();
                self.tiers
                    .insert(d["tutor_id"].as_str().unwrap().to_owned(), tier);
            }
            _ => {}
        }
    }

    fn open_alerts(&self, severity: &str) -> usize {
        self.alerts
            .values()
            .filter(|a| a["resolved"] == false && a["severity"] == severity)
            .count()
    }

    fn open_interventions(&self) -> usize {
        self.interventions
            .values()
            .filter(|i| i["status"] != "completed")
            .count()
    }
}

#[test]
fn the_stream_has_every_dashboard_type_and_analytics_about_once_a_second() {
    let events = &an_hour()[..RATE as usize * 600]; // ten minutes
    for k in kind::KNOWN {
        assert!(events.iter().any(|e| e.kind == k), "no {k} in ten minutes");
    }
    let count = analytics(events).len();
    assert!((590..=600).contains(&count), "{count} analytics in 600 s");
    let first = events
        .iter()
        .position(|e| e.kind == kind::ANALYTICS_UPDATE)
        .unwrap();
    assert!(first <= 40, "the first analytics is event {first}");
    assert_eq!(
        Generator::new(RATE, 1).interval(),
        Duration::from_millis(50)
    );
}

#[test]
fn an_hour_later_the_figures_are_where_they_started() {
    let all = analytics(an_hour());
    let (first, last) = (&all[..600], &all[all.len() - 600..]);
    for (field, lo, hi, drift) in [
        ("avg_rating", 3.8, 4.5, 0.1),
        ("avg_satisfaction", 3.8, 4.5, 0.1),
        ("avg_engagement_score", 68.0, 82.0, 3.0),
        ("avg_response_time_ms", 800.0, 1500.0, 200.0),
        ("total_sessions_7day", 450.0, 720.0, 60.0),
        ("total_sessions_30day", 1900.0, 3100.0, 250.0),
        ("active_tutors", 22.0, 40.0, 8.0),
        ("sessions_in_progress", 15.0, 80.0, 25.0),
    ] {
        let (before, after) = (mean(first, field), mean(last, field));
        assert!(
            (lo..=hi).contains(&after),
            "{field}: {after:.2} in the last ten minutes, outside {lo}..{hi}"
        );
        assert!(
            (after - before).abs() <= drift,
            "{field} drifted from {before:.2} to {after:.2}"
        );
    }
    for a in &all {
        assert!(num(a, "open_alerts") <= MAX_OPEN_ALERTS as f64);
        assert!(num(a, "open_interventions") <= MAX_OPEN_INTERVENTIONS as f64);
        assert!(num(a, "alerts_last_hour") < 300.0, "{a}");
    }
    let open = last.iter().map(|a| num(a, "open_alerts")).sum::<f64>() / 600.0;
    assert!(
        (2.0..=18.0).contains(&open),
        "{open:.1} alerts open on average"
    );
}

#[test]
fn each_tutors_figures_stay_in_range() {
    let mut tutors = HashSet::new();
    for e in an_hour().iter().filter(|e| e.kind == kind::METRICS_UPDATE) {
        let d = &e.data;
        tutors.insert(d["tutor_id"].as_str().unwrap().to_owned());
        assert!(WINDOWS.contains(&d["window"].as_str().unwrap()), "{d}");
        assert!((1.0..=5.0).contains(&num(d, "avg_rating")), "{d}");
        assert!((0.0..=100.0).contains(&num(d, "engagement_score")), "{d}");
        for rate in ["first_session_success_rate", "reschedule_rate"] {
            assert!((0.0..=1.0).contains(&num(d, rate)), "{d}");
        }
        assert!(
            num(d, "no_show_count") <= num(d, "sessions_completed"),
            "{d}"
        );
        assert!(Tier::ALL.iter().any(|t| d["performance_tier"] == t.name()));
    }
    assert_eq!(tutors.len(), TUTORS, "a fixed roster");
}

#[test]
fn the_tiles_agree_with_the_lists() {
    let mut dashboard = Dashboard::default();
    let mut checked = 0;
    for event in an_hour() {
        dashboard.read(event);
        if event.kind != kind::ANALYTICS_UPDATE {
            continue;
        }
        let a = &event.data;
        for severity in SEVERITIES {
            assert_eq!(
                a["alerts_count"][severity],
                dashboard.open_alerts(severity),
                "{severity} alerts open"
            );
        }
        assert_eq!(a["open_interventions"], dashboard.open_interventions());
        let distribution = a["performance_distribution"].as_object().unwrap();
        let sum: u64 = distribution.values().map(|n| n.as_u64().unwrap()).sum();
        assert_eq!(sum, num(a, "total_tutors") as u64);
        assert_eq!(a["total_tutors"], TUTORS);
        if dashboard.tiers.len() == TUTORS {
            let mut listed = BTreeMap::new();
            for tier in dashboard.tiers.values() {
                *listed.entry(tier.clone()).or_insert(0u64) += 1;
            }
            let tiles: BTreeMap<String, u64> = distribution
                .iter()
                .filter(|(_, n)| n.as_u64() != Some(0))
                .map(|(t, n)| (t.clone(), n.as_u64().unwrap()))
                .collect();
            assert_eq!(tiles, listed, "tiers by the tutors' latest metrics");
            checked += 1;
        }
    }
    assert!(
        checked > 3000,
        "{checked} snapshots compared with the roster"
    );
}

#[test]
fn an_alert_is_raised_once_per_tutor_and_type_and_resolved_in_time() {
    let mut alerts: HashMap<String, (bool, DateTime<Utc>)> = HashMap::new();
    let mut open_by_cause = HashSet::new();
    let mut resolved = 0;
    for e in an_hour().iter().filter(|e| e.kind == kind::ALERT) {
        let d = &e.data;
        let id = d["id"].as_str().unwrap().to_owned();
        let cause = (
            d["tutor_id"].clone().to_string(),
            d["alert_type"].to_string(),
        );
        assert!(SEVERITIES.contains(&d["severity"].as_str().unwrap()), "{d}");
        assert_eq!(d["alert_id"], d["id"]);
        let triggered: DateTime<Utc> = d["triggered_at"].as_str().unwrap().parse().unwrap();
        if d["resolved"] == false {
            assert!(
                alerts.insert(id, (true, triggered)).is_none(),
                "a new alert has a new id: {d}"
            );
            assert!(open_by_cause.insert(cause), "a second open {d}");
        } else {
            assert_eq!(d["status"], "resolved");
            let (open, at) = alerts.get_mut(&id).expect("resolved after raised");
            assert!(*open, "resolved twice: {d}");
            assert_eq!(*at, triggered, "the same alert");
            *open = false;
            let closed: DateTime<Utc> = d["resolved_at"].as_str().unwrap().parse().unwrap();
            assert!(closed - triggered <= chrono::Duration::from_std(MAX_ALERT_AGE).unwrap());
            open_by_cause.remove(&cause);
            resolved += 1;
        }
    }
    assert!(resolved > 30, "{resolved} alerts resolved in an hour");
    for severity in SEVERITIES {
        assert!(
            an_hour()
                .iter()
                .any(|e| e.kind == kind::ALERT && e.data["severity"] == severity),
            "no {severity} alert in an hour"
        );
    }
}

#[test]
fn an_interventions_status_only_moves_forward() {
    let order = ["pending", "in_progress", "completed"];
    let mut last: HashMap<String, usize> = HashMap::new();
    let mut completed = 0;
    for e in an_hour().iter().filter(|e| e.kind == kind::INTERVENTION) {
        let d = &e.data;
        let status = order
            .iter()
            .position(|s| d["status"] == *s)
            .unwrap_or_else(|| panic!("status of {d}"));
        assert_eq!(d["intervention_id"], d["id"]);
        if let Some(before) = last.insert(d["id"].as_str().unwrap().to_owned(), status) {
            assert!(status > before, "{} went back to {}", order[before], d);
        }
        completed += usize::from(status == 2);
    }
    assert!(
        completed > 10,
        "{completed} interventions completed in an hour"
    );
}

#[test]
fn a_seed_gives_one_stream_and_ids_differ_between_runs() {
    let draw = |seed| {
        let mut g = Generator::starting_at(RATE, seed, start());
        (0..2000).map(|_| g.next_event()).collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    let ids = |events: &[SimEvent]| -> HashSet<String> {
        events
            .iter()
            .filter_map(|e| e.data["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(
        ids(&draw(7)).is_disjoint(&ids(&draw(8))),
        "another run, other ids"
    );
}

#[test]
fn the_wall_clock_drives_it_and_a_long_pause_is_no_burst() {
    let mut g = Generator::starting_at(RATE, 3, start());
    let later = start() + chrono::Duration::hours(3);
    g.next_event_at(later);
    assert_eq!(g.now(), later);
    g.next_event_at(start()); // the clock never goes back
    assert_eq!(g.now(), later);
    // Five minutes caught up at most: a few dozen changes, not three hours' worth.
    let burst = (0..400)
        .map(|_| g.next_event_at(later))
        .take_while(|e| e.kind != kind::METRICS_UPDATE)
        .count();
    assert!(burst < 100, "{burst} changes after a 3-hour pause");
}

#[test]
fn at_one_event_a_second_tutors_still_get_most_of_the_stream() {
    let mut g = Generator::starting_at(1, 5, start());
    let events: Vec<SimEvent> = (0..3600).map(|_| g.next_event()).collect();
    let metrics = events
        .iter()
        .filter(|e| e.kind == kind::METRICS_UPDATE)
        .count();
    let analytics = analytics(&events).len();
    assert!(metrics > 2500, "{metrics} metrics of 3600 events");
    assert!((300..=360).contains(&analytics), "{analytics} analytics");
}

#[test]
fn a_tutor_who_changes_tier_says_so_before_the_next_snapshot() {
    let mut g = Generator::starting_at(RATE, 9, start());
    let t = g
        .tutors
        .iter()
        .position(|t| t.tier == Tier::NeedsSupport)
        .unwrap();
    let id = g.tutors[t].id.clone();
    // A month of excellent work: the 30-day figures jump to the top tier.
    let star = g.tutors[t].month;
    g.tutors[t].month = roster::Window {
        avg_rating: 4.9,
        engagement_score: 95.0,
        first_session_success_rate: 0.95,
        ..star
    };
    let mut dashboard = Dashboard::default();
    for _ in 0..(RATE as usize * 120) {
        let event = g.next_event();
        dashboard.read(&event);
        if event.kind == kind::ANALYTICS_UPDATE
            && event.data["performance_distribution"]["Exemplary"] == 9
        {
            assert_eq!(dashboard.tiers[&id], "Exemplary", "announced first");
            assert_eq!(event.data["performance_distribution"]["Needs Support"], 5);
            return;
        }
    }
    panic!("{id} never moved up");
}
