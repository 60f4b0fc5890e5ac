//! No lost events: history, resume on reconnect (to any node), and type
//! subscriptions, with real processes on a real Redis.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use system_tests::{Client, GatewayProcess, RedisServer, publisher_cli, send};

async fn node(redis: &RedisServer) -> GatewayProcess {
    GatewayProcess::on_redis(redis, &[]).await
}

#[tokio::test]
async fn a_client_resumes_on_another_node_with_exactly_what_it_missed_then_live() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut client = Client::connect(&a.ws_url("")).await.unwrap();
    client.next_json().await;
    send(&redis, "alert", &json!({"n": 0}), &[]);
    let last_seen = client.next_json().await["id"].as_str().unwrap().to_owned();
    client.close().await;

    let missed: Vec<String> = (1..=3)
        .map(|n| {
            send(
                &redis,
                if n == 2 { "intervention" } else { "alert" },
                &json!({"n": n}),
                &[],
            )
        })
        .collect();
    let mut back = Client::connect(&b.ws_url(&format!("?since={last_seen}")))
        .await
        .unwrap();
    assert_eq!(back.next_json().await["type"], "analytics_update");
    for (n, id) in missed.iter().enumerate() {
        let event = back.next_json().await;
        assert_eq!(event["id"], id.as_str());
        assert_eq!(event["data"]["n"], n + 1);
    }
    let recovery = back.next_json().await;
    assert_eq!(
        recovery,
        json!({"type": "recovery", "data": {"recovered": true, "replayed": 3}, "timestamp": recovery["timestamp"]})
    );
    send(&redis, "alert", &json!({"n": 4}), &[]);
    assert_eq!(
        back.next_json().await["data"]["n"],
        4,
        "then live, nothing twice"
    );
    assert_eq!(back.try_next_json(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn a_fresh_client_can_resume_from_its_greeting_even_if_it_saw_nothing_else() {
    let redis = RedisServer::start();
    send(&redis, "alert", &json!({"before": true}), &[]);
    let node = node(&redis).await;
    let mut client = Client::connect(&node.ws_url("")).await.unwrap();
    let position = client.next_json().await["id"].as_str().unwrap().to_owned();
    client.close().await;
    send(&redis, "alert", &json!({"while_away": true}), &[]);
    let mut back = Client::connect(&node.ws_url(&format!("?since={position}")))
        .await
        .unwrap();
    back.next_json().await;
    let missed = back.next_json().await;
    assert_eq!(
        missed["data"],
        json!({"while_away": true}),
        "only what came after it connected"
    );
    assert_eq!(back.next_json().await["data"]["recovered"], true);
}

#[tokio::test]
async fn an_id_older_than_the_history_is_not_recovered() {
    let redis = RedisServer::start();
    let node = node(&redis).await;
    let small = [("HISTORY_SIZE", "5")];
    let oldest = send(&redis, "alert", &json!({"n": 0}), &small);
    for n in 1..10 {
        send(&redis, "alert", &json!({"n": n}), &small);
    }
    let mut client = Client::connect(&node.ws_url(&format!("?since={oldest}")))
        .await
        .unwrap();
    client.next_json().await;
    let recovery = client.next_json().await;
    assert_eq!(recovery["type"], "recovery");
    assert_eq!(recovery["data"], json!({"recovered": false, "replayed": 0}));
    send(&redis, "alert", &json!({"n": "live"}), &small);
    assert_eq!(
        client.next_json().await["data"]["n"],
        "live",
        "the live stream still follows"
    );
}

#[tokio::test]
async fn a_node_that_loses_its_redis_connection_catches_its_clients_up_once_in_order() {
    let redis = RedisServer::start();
    let node = node(&redis).await;
    let mut alerts = Client::connect(&node.ws_url("?types=alert")).await.unwrap();
    let mut everything = Client::connect(&node.ws_url("")).await.unwrap();
    alerts.next_json().await;
    everything.next_json().await;

    // Publish steadily while the node's subscription is cut, three times.
    let url = redis.url();
    let publishing = std::thread::spawn(move || {
        publisher_cli(
            &["simulate", "--rate", "400", "--count", "800", "--seed", "7"],
            &[("REDIS_URL", &url)],
        )
    });
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    }
    let output = publishing.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The cuts really cut: the node re-subscribed (and so caught up).
    let metrics = system_tests::get(node.addr, "/metrics").await.body;
    assert!(
        system_tests::metric(&metrics, "gateway_bus_reconnects_total") >= 1.0,
        "the subscription was never cut:\n{metrics}"
    );

    // The history holds every event published (800 < HISTORY_SIZE); a
    // position is the history's epoch and the stream id.
    let history = redis.cli(&["XRANGE", "ws:history", "-", "+"]);
    let epoch = redis.cli(&["GET", "{ws:history}:epoch"]);
    let ids: Vec<String> = history
        .lines()
        .filter(|l| l.contains('-') && !l.starts_with('{'))
        .map(|id| format!("{}:{id}", epoch.trim()))
        .collect();
    assert_eq!(ids.len(), 800, "800 events in the history");

    let mut got = Vec::new();
    while got.len() < ids.len() {
        let event = everything.next_json().await;
        got.push(event["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, ids, "every event once, in publish order");
    assert_eq!(
        everything.try_next_json(Duration::from_millis(300)).await,
        None,
        "and no extra"
    );

    let alert_count = history
        .lines()
        .filter(|l| l.contains("\"type\":\"alert\""))
        .count();
    let mut seen = HashSet::new();
    for _ in 0..alert_count {
        let event = alerts.next_json().await;
        assert_eq!(event["type"], "alert", "only the type it asked for");
        assert!(
            seen.insert(event["id"].as_str().unwrap().to_owned()),
            "no duplicates"
        );
    }
}

#[tokio::test]
async fn a_client_that_connected_before_anything_was_published_resumes_from_the_start() {
    let redis = RedisServer::start();
    let node = node(&redis).await;
    let mut client = Client::connect(&node.ws_url("")).await.unwrap();
    let greeting = client.next_json().await;
    let position = greeting["id"]
        .as_str()
        .expect("a position even before any event");
    client.close().await;
    let first = send(&redis, "alert", &json!({"n": 1}), &[]);
    let second = send(&redis, "intervention", &json!({"n": 2}), &[]);
    let mut back = Client::connect(&node.ws_url(&format!("?since={position}")))
        .await
        .unwrap();
    back.next_json().await;
    assert_eq!(back.next_json().await["id"], first.as_str());
    assert_eq!(back.next_json().await["id"], second.as_str());
    assert_eq!(
        back.next_json().await["data"],
        json!({"recovered": true, "replayed": 2})
    );
}
