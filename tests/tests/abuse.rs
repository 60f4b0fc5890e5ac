//! Hostile clients and publishers against a real node process: what they
//! send never forges a log line, and what they cost leaves a well-behaved
//! client's latency where it was (behavioural checks with generous margins,
//! not benchmarks: BENCHMARKS.md has the figures).

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use system_tests::{Client, GatewayProcess, RedisServer, bin_dir, free_port, publish};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The nodes' `PUBLISH_API_KEY` (at least 16 characters, or a node refuses it).
const KEY: &str = "abuse-test-publish-key";

#[tokio::test]
async fn a_payload_cannot_forge_a_log_line() {
    let redis = RedisServer::start();
    let port = free_port();
    let mut gateway = Command::new(bin_dir().join("gateway"))
        .env_clear()
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", redis.url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    system_tests::eventually("the node to be ready", || async {
        system_tests::http(addr, "GET", "/readyz", &[], "")
            .await
            .ok()
            .filter(|r| r.status == 200)
    })
    .await;
    let forged = "2026-11-25T10:00:00.000000Z  INFO gateway: FORGED admin logged in";
    redis.cli(&["PUBLISH", "ws:events:alert", &format!("not json\n{forged}")]);
    redis.cli(&[
        "PUBLISH",
        "ws:events:alert",
        &format!(r#"{{"id":"x\n{forged}","type":"alert","data":{{}}}}"#),
    ]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = gateway.kill();
    let mut log = String::new();
    gateway
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("FORGED"), "the payloads were logged: {log}");
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-11-25T10:00:00"),
            "a forged line: {line:?}"
        );
    }
    let _ = gateway.wait();
}

/// Median and worst publish-to-receive latency of `count` events published
/// through `/api/publish`, 20 ms apart.
async fn latency(node: &GatewayProcess, client: &mut Client, count: usize) -> (f64, f64) {
    let mut samples = Vec::with_capacity(count);
    for n in 0..count {
        publish(node.addr, KEY, "alert", &json!({"n": n})).await;
        let event = client.next_of("alert").await;
        let at: DateTime<Utc> = event["timestamp"].as_str().unwrap().parse().unwrap();
        samples.push((Utc::now() - at).num_microseconds().unwrap() as f64 / 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    samples.sort_by(f64::total_cmp);
    (samples[count / 2], samples[count * 9 / 10])
}

async fn calm_node() -> (GatewayProcess, Client) {
    let node = GatewayProcess::start(&[("PUBLISH_API_KEY", KEY)]).await;
    let mut client = Client::connect(&node.ws_url("?types=alert")).await.unwrap();
    client.next_json().await;
    (node, client)
}

fn assert_within_baseline(what: &str, base: (f64, f64), abused: (f64, f64)) {
    eprintln!("{what}: p50/p90 {base:.1?} ms → {abused:.1?} ms");
    assert!(
        abused.0 < base.0 + 10.0 && abused.1 < base.1 + 25.0,
        "{what}: a calm client's latency went from {base:.1?} to {abused:.1?} ms (p50, p90)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_type_lists_leave_other_clients_latency_alone() {
    let (node, mut client) = calm_node().await;
    let base = latency(&node, &mut client, 40).await;
    let stop = Arc::new(AtomicBool::new(false));
    let types = format!("?types={}", vec!["alert"; 10_000].join(","));
    let abusers: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (node.ws_url(&types), stop.clone());
            tokio::spawn(async move {
                // 50 a second each: 50 times what hurt before the fix.
                let mut sent = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let _ = tokio_tungstenite::connect_async(&url).await;
                    sent += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                sent
            })
        })
        .collect();
    let abused = latency(&node, &mut client, 40).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for abuser in abusers {
        sent += abuser.await.unwrap();
    }
    assert!(sent > 50, "the abuse ran: {sent} handshakes");
    assert_within_baseline("60 KB ?types= handshakes", base, abused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_floods_leave_other_clients_latency_alone() {
    let (node, mut client) = calm_node().await;
    let base = latency(&node, &mut client, 40).await;
    let stop = Arc::new(AtomicBool::new(false));
    let abusers: Vec<_> = (0..2)
        .map(|_| {
            let (addr, stop) = (node.addr, stop.clone());
            tokio::spawn(async move {
                let ping = [0x89u8, 0x80, 0, 0, 0, 0];
                let mut floods = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    // Opened by hand; flooded until the node closes it.
                    let Ok(mut socket) = TcpStream::connect(addr).await else {
                        continue;
                    };
                    let _ = socket
                        .write_all(
                            b"GET /ws/dashboard HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                              Sec-WebSocket-Version: 13\r\n\r\n",
                        )
                        .await;
                    floods += 1;
                    while !stop.load(Ordering::Relaxed) && socket.write_all(&ping).await.is_ok() {}
                }
                floods
            })
        })
        .collect();
    let abused = latency(&node, &mut client, 40).await;
    stop.store(true, Ordering::Relaxed);
    for abuser in abusers {
        assert!(abuser.await.unwrap() >= 1);
    }
    assert_within_baseline("ping floods", base, abused);
}

#[tokio::test]
async fn resumes_during_a_redis_outage_do_not_flood_the_log() {
    let mut redis = RedisServer::start();
    let node = GatewayProcess::logged(&[("REDIS_URL", &redis.url())]).await;
    node.wait_ready(200).await;
    let mut client = Client::connect(&node.ws_url("")).await.unwrap();
    let position = client.next_json().await["id"].as_str().unwrap().to_owned();
    redis.kill();
    node.wait_ready(503).await;
    let mut answered = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        let mut resumed = Client::connect(&node.ws_url(&format!("?since={position}")))
            .await
            .unwrap();
        let recovery = resumed.next_of("recovery").await;
        assert_eq!(
            recovery["data"]["recovered"], false,
            "the history cannot be read"
        );
        answered += 1;
    }
    assert!(answered > 20, "the resumes ran: {answered}");
    let warnings = node.logs().matches("replay failed").count();
    assert!(
        (1..=2).contains(&warnings),
        "{answered} failed resumes logged {warnings} warnings"
    );
}
