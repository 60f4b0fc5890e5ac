//! Bursts and fast streams: what a bulk job (a nightly recompute publishing
//! 20,000 events at once) or a Redis that cuts the node off must not do to
//! the dashboards. Real gateway processes on a real redis-server.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use system_tests::{Client, GatewayProcess, RedisServer, eventually, get, metric, publisher_cli};

/// Publishes `payloads` on `channel` as fast as Redis takes them: one
/// pipeline of raw `PUBLISH` commands (`redis-cli --pipe`), as a bulk job
/// in any language would.
fn publish_raw(redis: &RedisServer, channel: &str, payloads: &[String]) {
    let port = redis.url().rsplit(':').next().unwrap().to_owned();
    let mut pipe = Command::new("redis-cli")
        .args(["-p", &port, "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-cli");
    let mut resp = Vec::new();
    for payload in payloads {
        resp.extend_from_slice(b"*3\r\n");
        for part in ["PUBLISH", channel, payload] {
            write!(resp, "${}\r\n{part}\r\n", part.len()).unwrap();
        }
    }
    let mut stdin = pipe.stdin.take().unwrap();
    stdin.write_all(&resp).unwrap();
    drop(stdin);
    assert!(pipe.wait().unwrap().success());
}

fn metrics_update(n: usize) -> String {
    format!(
        r#"{{"type":"metrics_update","data":{{"tutor_id":"t-{n}","window":"7day","n":{n},"avg_rating":4.5,"sessions_completed":12}},"timestamp":"2026-12-01T10:00:00.000Z"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_20000_events_reaches_every_reader_in_order_and_spares_filtered_clients() {
    const BURST: usize = 20_000;
    let redis = RedisServer::start();
    let node = GatewayProcess::on_redis(&redis, &[]).await;
    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut client = Client::connect(&node.ws_url("")).await.unwrap();
        client.next_json().await;
        readers.push(client);
    }
    let mut filtered = Vec::new();
    for _ in 0..40 {
        let mut client = Client::connect(&node.ws_url("?types=intervention"))
            .await
            .unwrap();
        client.next_json().await;
        filtered.push(client);
    }
    let payloads: Vec<String> = (0..BURST).map(metrics_update).collect();
    publish_raw(&redis, "ws:events:metrics_update", &payloads);

    let reads = readers.into_iter().map(|mut client| {
        tokio::spawn(async move {
            let mut seen = Vec::with_capacity(BURST);
            while seen.len() < BURST {
                let event: Value = client.next_json().await;
                seen.push(event["data"]["n"].as_u64().unwrap() as usize);
            }
            seen
        })
    });
    for seen in futures_util::future::join_all(reads).await {
        assert_eq!(
            seen.unwrap(),
            (0..BURST).collect::<Vec<_>>(),
            "every event, once, in order"
        );
    }
    for client in &mut filtered {
        client.send_text("ping").await;
        let reply = client.next_json().await;
        assert_eq!(
            reply["data"]["pong"], true,
            "still connected, and sent nothing of the burst: {reply}"
        );
    }
    let text = get(node.addr, "/metrics").await.body;
    assert_eq!(
        metric(&text, "gateway_slow_client_disconnects_total"),
        0.0,
        "nobody closed as too slow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_cuts_a_subscriber_over_its_output_buffer_the_node_catches_up_losing_nothing() {
    const EVENTS: usize = 10_000;
    let redis = RedisServer::start();
    // A tiny pub/sub output buffer: Redis drops a subscriber that falls
    // 64 KiB behind (the default hard limit is 32 MB).
    redis.cli(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 64kb 0 0",
    ]);
    let node = GatewayProcess::on_redis(&redis, &[]).await;
    let mut client = Client::connect(&node.ws_url("")).await.unwrap();
    client.next_json().await;

    // The node stops reading (stopped, as a starved process would be) while
    // a bulk job publishes through the history; Redis cuts its subscription.
    node.signal_only("STOP");
    let output = publisher_cli(
        &[
            "simulate",
            "--rate",
            "20000",
            "--count",
            &EVENTS.to_string(),
            "--seed",
            "7",
        ],
        &[("REDIS_URL", &redis.url())],
    );
    assert!(output.status.success());
    eventually("Redis to drop the stalled subscriber", || async {
        let clients = redis.cli(&["CLIENT", "LIST", "TYPE", "pubsub"]);
        clients.trim().is_empty().then_some(())
    })
    .await;
    node.signal_only("CONT");

    let mut ids = Vec::new();
    while ids.len() < EVENTS {
        let event = client.next_json().await;
        if let Some(id) = event["id"].as_str() {
            ids.push(id.to_owned());
        }
    }
    let history = redis.cli(&["XLEN", "ws:history"]);
    assert_eq!(history.trim(), EVENTS.to_string());
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| {
        let (ms, seq) = id.split_once(':').unwrap().1.split_once('-').unwrap();
        (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
    });
    sorted.dedup();
    assert_eq!(ids, sorted, "every event once, in order");
    let text = get(node.addr, "/metrics").await.body;
    assert!(metric(&text, "gateway_bus_reconnects_total") >= 1.0);
    assert_eq!(metric(&text, "gateway_slow_client_disconnects_total"), 0.0);
    assert!(
        client
            .try_next_json(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing more, nothing twice"
    );
}
