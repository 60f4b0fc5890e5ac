//! The promise, as a property: two nodes, 2,000 events published through the
//! crate while clients churn and resume (from greetings, mid-stream, across a
//! node SIGKILL and a Redis restart without persistence), with garbage and
//! forged payloads injected. Every connection told `recovered: true` (or
//! greeted fresh) receives, per history epoch, exactly the published events
//! after its start, once, in order; every `recovered: false` is for a
//! position whose history was really gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use system_tests::{Client, GatewayProcess, RedisServer};
use tokio::time::Instant;

const EVENTS: usize = 2000;
const CLIENTS: usize = 6;

/// What one connection saw.
#[derive(Debug, Default)]
struct Connection {
    /// `?since=` it resumed from, or the greeting's position.
    start: Option<String>,
    recovered: Option<bool>,
    ids: Vec<String>,
}

fn epoch_of(id: &str) -> &str {
    id.split(':').next().unwrap_or("")
}

async fn churn(urls: Arc<Mutex<Vec<String>>>, stop: Arc<Mutex<bool>>) -> Vec<Connection> {
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    while !*stop.lock().unwrap() {
        let base = {
            let urls = urls.lock().unwrap();
            urls[fastrand::usize(..urls.len())].clone()
        };
        let query = last
            .as_ref()
            .map(|id| format!("?since={id}"))
            .unwrap_or_default();
        let Ok(mut client) = Client::connect(&format!("{base}{query}")).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut conn = Connection {
            start: last.clone(),
            ..Connection::default()
        };
        let until = Instant::now() + Duration::from_millis(fastrand::u64(100..700));
        while Instant::now() < until {
            // None: nothing within the wait, or the connection ended (its
            // node was killed): the client moves on at `until`.
            let Some(frame) = client.try_next_json(Duration::from_millis(100)).await else {
                continue;
            };
            match frame["type"].as_str() {
                Some("recovery") => {
                    let ok = frame["data"]["recovered"] == json!(true);
                    conn.recovered = Some(ok);
                    if !ok {
                        // Refetch: start over from the greeting of a fresh connection.
                        last = None;
                    }
                }
                Some("analytics_update") if conn.start.is_none() && conn.ids.is_empty() => {
                    // The greeting of a fresh connection: its position.
                    conn.start = frame["id"].as_str().map(str::to_owned);
                }
                _ => {
                    if let Some(id) = frame["id"].as_str() {
                        conn.ids.push(id.to_owned());
                        if conn.recovered != Some(false) {
                            last = Some(id.to_owned());
                        }
                    }
                }
            }
        }
        if last.is_none() && conn.recovered != Some(false) {
            last = conn.start.clone();
        }
        seen.push(conn);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resumed_client_gets_every_event_once_in_order_through_faults() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let env = [("REDIS_URL", url.as_str()), ("HISTORY_SIZE", "100000")];
    let a = GatewayProcess::start(&env).await;
    a.wait_ready(200).await;
    let b_port = system_tests::free_port();
    let mut b = GatewayProcess::start_on(b_port, &env).await;
    b.wait_ready(200).await;
    let urls = Arc::new(Mutex::new(vec![a.ws_url(""), b.ws_url("")]));
    let stop = Arc::new(Mutex::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(churn(urls.clone(), stop.clone())))
        .collect();

    // Publish through the crate; the returned positions are the truth.
    let wire = publisher::WireFormat::new(
        "ws",
        publisher::HistoryPolicy {
            max_len: 100_000,
            ttl: Duration::ZERO,
        },
    );
    let mut published: Vec<String> = Vec::new();
    let mut restarted_at = None;
    let mut old_epoch = String::new();
    let mut publisher = publisher::Publisher::connect_with(&url, wire.clone())
        .await
        .unwrap();
    let forged = [
        "not json at all",
        r#"{"id":"99999999999999-0","type":"alert","data":{}}"#,
        r#"{"id":"0badbeef:99999999999999-0","type":"alert","data":{}}"#,
    ];
    while published.len() < EVENTS {
        let n = published.len();
        if n % 100 == 50 {
            redis.cli(&[
                "PUBLISH",
                "ws:events:alert",
                forged[(n / 100) % forged.len()],
            ]);
        }
        if n == 700 {
            b.signal("KILL");
            b = GatewayProcess::start_on(b_port, &env).await;
        }
        if n == 1300 && restarted_at.is_none() {
            old_epoch = epoch_of(&published[n - 1]).to_owned();
            redis.restart();
            restarted_at = Some(Instant::now());
            publisher = loop {
                match publisher::Publisher::connect_with(&url, wire.clone()).await {
                    Ok(p) => break p,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
        }
        match publisher.publish("alert", &json!({"n": n})).await {
            Ok(position) => published.push(position.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        if n.is_multiple_of(10) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    a.wait_ready(200).await;
    b.wait_ready(200).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    *stop.lock().unwrap() = true;

    let truth: HashMap<&str, usize> = published
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut checked = 0;
    let (mut resumed, mut not_recovered) = (0, 0);
    for client in clients {
        for conn in client.await.unwrap() {
            resumed += usize::from(conn.recovered == Some(true));
            not_recovered += usize::from(conn.recovered == Some(false));
            if conn.recovered == Some(false) {
                let start = conn.start.as_deref().unwrap();
                assert_eq!(
                    epoch_of(start),
                    old_epoch,
                    "recovered:false only for a position of the history Redis lost: {start}"
                );
                assert!(restarted_at.is_some());
                continue;
            }
            // Per epoch, the ids are one contiguous run of the truth, in order.
            let mut segments: Vec<Vec<usize>> = Vec::new();
            let mut epoch = conn.start.as_deref().map(epoch_of).unwrap_or("");
            let mut current = Vec::new();
            for id in &conn.ids {
                let &at = truth
                    .get(id.as_str())
                    .unwrap_or_else(|| panic!("an id nobody published: {id}"));
                if epoch_of(id) != epoch {
                    segments.push(std::mem::take(&mut current));
                    epoch = epoch_of(id);
                }
                current.push(at);
            }
            segments.push(current);
            for (i, segment) in segments.iter().enumerate() {
                let Some(&first) = segment.first() else {
                    continue;
                };
                assert!(
                    segment.windows(2).all(|w| w[1] == w[0] + 1),
                    "a gap, repeat or reorder in {:?}",
                    conn
                );
                let expected_first = if i == 0 {
                    // The first after where the connection started.
                    match conn.start.as_deref().and_then(|s| truth.get(s)) {
                        Some(&s) => s + 1,
                        // A start before any event of this epoch (a greeting
                        // on an empty history): its first event.
                        None => published
                            .iter()
                            .position(|id| epoch_of(id) == epoch_of(&published[first]))
                            .unwrap(),
                    }
                } else {
                    // A new history, followed from its start.
                    published
                        .iter()
                        .position(|id| epoch_of(id) == epoch_of(&published[first]))
                        .unwrap()
                };
                assert_eq!(
                    first, expected_first,
                    "the run starts where it should: {conn:?}"
                );
                checked += segment.len();
            }
        }
    }
    eprintln!("{checked} deliveries checked; {resumed} resumes recovered, {not_recovered} not");
    assert!(checked > EVENTS, "clients saw events: {checked}");
    assert!(resumed >= CLIENTS, "clients did resume: {resumed}");
}
