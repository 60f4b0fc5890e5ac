//! Several real gateway processes on one real `redis-server`: they behave as
//! one gateway (issue: scale out over Redis, and the publisher).

use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{
    Client, GatewayProcess, RedisServer, eventually, get, metric, publisher_cli, send,
};

const KEY: &str = "cluster-publish-key";

async fn nodes(redis: &RedisServer, count: usize) -> Vec<GatewayProcess> {
    let url = redis.url();
    let mut nodes = Vec::new();
    for i in 0..count {
        let id = format!("node-{i}");
        let node = GatewayProcess::start(&[
            ("REDIS_URL", &url),
            ("NODE_ID", &id),
            ("PUBLISH_API_KEY", KEY),
        ])
        .await;
        node.wait_ready(200).await;
        nodes.push(node);
    }
    nodes
}

async fn client(node: &GatewayProcess) -> Client {
    let mut client = Client::connect(&node.ws_url("")).await.unwrap();
    assert_eq!(client.next_json().await["type"], "analytics_update");
    client
}

async fn active_connections(node: &GatewayProcess) -> Value {
    get(node.addr, "/ws/status").await.json()
}

#[tokio::test]
async fn a_broadcast_from_the_publisher_reaches_clients_on_every_node() {
    let redis = RedisServer::start();
    let nodes = nodes(&redis, 3).await;
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(client(node).await);
        clients.push(client(node).await);
    }
    let id = send(
        &redis,
        "alert",
        &json!({"tutor_id": "t-17", "severity": "critical"}),
        &[],
    );
    for client in &mut clients {
        let alert = client.next_json().await;
        assert_eq!(alert["type"], "alert");
        assert_eq!(alert["data"]["severity"], "critical");
        assert_eq!(alert["id"], id.as_str());
    }
    // Any type a publisher picks, also by hand from any language (raw PUBLISH).
    let raw = r#"{"type":"test_message","data":{"hello":"world"},"timestamp":"2026-11-25T10:00:00.123Z"}"#;
    assert_eq!(
        redis.cli(&["PUBLISH", "ws:events:test_message", raw]),
        "3",
        "one subscriber per node"
    );
    for client in &mut clients {
        let message = client.next_json().await;
        assert_eq!(message["type"], "test_message");
        assert_eq!(message["data"]["hello"], "world");
        assert!(message.get("id").is_none(), "raw PUBLISH is live-only");
    }
    // A malformed raw payload is dropped and counted, and nobody sees garbage.
    redis.cli(&["PUBLISH", "ws:events:alert", "{not json"]);
    send(&redis, "intervention", &json!({"after": "garbage"}), &[]);
    for client in &mut clients {
        assert_eq!(client.next_json().await["data"]["after"], "garbage");
    }
    let metrics = get(nodes[0].addr, "/metrics").await.body;
    assert_eq!(metric(&metrics, "gateway_bus_invalid_payloads_total"), 1.0);
    assert!(metric(&metrics, "gateway_bus_messages_received_total") >= 3.0);
}

#[tokio::test]
async fn a_batch_posted_to_one_node_reaches_every_node_in_order_in_one_round_trip() {
    let redis = RedisServer::start();
    let nodes = nodes(&redis, 2).await;
    let mut clients = vec![client(&nodes[0]).await, client(&nodes[1]).await];
    let events: Vec<Value> = (0..300)
        .map(|n| json!({"type": "metrics_update", "data": {"tutor_id": format!("t-{n}"), "n": n}}))
        .collect();
    let runs = |redis: &RedisServer| -> u64 {
        let stats = redis.cli(&["INFO", "commandstats"]);
        stats
            .lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| {
                let field = |name: &str| {
                    l.split([',', ':'])
                        .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
                        .and_then(|v| v.parse::<u64>().ok())
                };
                Some(field("calls")? - field("failed_calls")?)
            })
            .sum()
    };
    let before = runs(&redis);
    let auth = format!("Bearer {KEY}");
    let accepted = system_tests::http(
        nodes[0].addr,
        "POST",
        "/api/publish",
        &[("Authorization", &auth)],
        &Value::Array(events.clone()).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let ids = accepted.json()["ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 300);
    assert_eq!(runs(&redis) - before, 1, "one bus round trip for the batch");
    for client in &mut clients {
        for (n, id) in ids.iter().enumerate() {
            let event = client.next_json().await;
            assert_eq!(event["data"]["n"], n, "in the batch's order on every node");
            assert_eq!(&event["id"], id);
        }
    }
    let epoch = redis.cli(&["GET", "{ws:history}:epoch"]);
    let stored = redis.cli(&["XRANGE", "ws:history", "-", "+", "COUNT", "1"]);
    let first = ids[0].as_str().unwrap();
    assert!(
        first.starts_with(&format!("{epoch}:")) && stored.contains(&first[epoch.len() + 1..]),
        "the history's first entry is the batch's first event: {stored}"
    );
}

#[tokio::test]
async fn a_new_client_on_any_node_gets_the_latest_analytics() {
    let redis = RedisServer::start();
    send(
        &redis,
        "analytics_update",
        &json!({"total_tutors": 42}),
        &[],
    );
    let nodes = nodes(&redis, 2).await;
    for node in &nodes {
        let mut client = Client::connect(&node.ws_url("")).await.unwrap();
        let greeting = client.next_json().await;
        assert_eq!(greeting["type"], "analytics_update");
        assert_eq!(greeting["data"]["total_tutors"], 42);
    }
}

#[tokio::test]
async fn status_sums_every_node_and_drops_a_killed_or_drained_one() {
    let redis = RedisServer::start();
    let mut nodes = nodes(&redis, 3).await;
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for _ in 0..=i {
            clients.push(client(node).await);
        }
    }
    for node in &nodes {
        let addr = node.addr;
        let status = eventually("status to sum 1 + 2 + 3", || async move {
            let status = get(addr, "/ws/status").await.json();
            (status["active_connections"] == 6).then_some(status)
        })
        .await;
        assert_eq!(status["nodes"].as_array().unwrap().len(), 3);
    }
    let status = active_connections(&nodes[1]).await;
    assert_eq!(status["local_connections"], 2);
    assert_eq!(status["node_id"], "node-1");

    // SIGKILL: no goodbye; the node's entry expires within seconds.
    let killed_at = std::time::Instant::now();
    nodes[2].signal("KILL");
    let first = nodes[0].addr;
    eventually("the killed node to drop out", || async move {
        let status = get(first, "/ws/status").await.json();
        (status["active_connections"] == 3).then_some(())
    })
    .await;
    assert!(
        killed_at.elapsed() < Duration::from_secs(15),
        "took {:?}",
        killed_at.elapsed()
    );

    // SIGTERM: the node drains and removes itself at once.
    nodes[1].signal("TERM");
    let status = active_connections(&nodes[0]).await;
    assert_eq!(status["active_connections"], 1, "{status}");
    assert_eq!(status["nodes"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn nodes_ride_out_a_redis_restart_and_broadcasts_reach_everyone_after() {
    let mut redis = RedisServer::start();
    let nodes = nodes(&redis, 2).await;
    let mut clients = vec![client(&nodes[0]).await, client(&nodes[1]).await];

    redis.kill();
    for node in &nodes {
        node.wait_ready(503).await;
    }
    for client in &mut clients {
        client.send_text("ping").await;
        assert_eq!(
            client.next_json().await["data"]["pong"],
            true,
            "local clients stay served"
        );
    }

    redis.restart();
    for node in &nodes {
        node.wait_ready(200).await;
    }
    send(&redis, "alert", &json!({"after": "restart"}), &[]);
    for client in &mut clients {
        assert_eq!(client.next_of("alert").await["data"]["after"], "restart");
    }
    let metrics = get(nodes[0].addr, "/metrics").await.body;
    assert!(metric(&metrics, "gateway_bus_reconnects_total") >= 1.0);
    assert_eq!(metric(&metrics, "gateway_bus_connected"), 1.0);
}

#[tokio::test]
async fn the_publisher_cli_exits_non_zero_with_a_clear_message() {
    let redis = RedisServer::start();
    let env = [("REDIS_URL", redis.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bad_json = publisher_cli(&["send", "--type", "alert", "--data", "{oops"], &env);
    assert!(!bad_json.status.success());
    assert!(String::from_utf8_lossy(&bad_json.stderr).contains("--data is not valid JSON"));

    let bad_type = publisher_cli(&["send", "--type", "no spaces", "--data", "{}"], &env);
    assert!(!bad_type.status.success());
    assert!(String::from_utf8_lossy(&bad_type.stderr).contains("--type"));

    let port = system_tests::free_port().to_string();
    let nowhere = format!("redis://127.0.0.1:{port}");
    let unreachable = publisher_cli(
        &["send", "--type", "alert", "--data", "{}"],
        &[("REDIS_URL", &nowhere)],
    );
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains("cannot reach Redis at 127.0.0.1:"),
        "{stderr}"
    );

    let ok = publisher_cli(&["simulate", "--rate", "500", "--count", "50"], &env);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(redis.cli(&["XLEN", "ws:history"]), "50");
}
