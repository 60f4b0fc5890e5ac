//! `publisher send` against a real `redis-server` on a free port: what a
//! subscriber and the history receive is the `--data` the caller wrote,
//! byte for byte.

use std::process::{Command, Output};

use futures_util::StreamExt;
use system_tests::{PATIENCE, RedisServer};

/// Key order, `1.50`, `1e3`, `-0.0`, an escape and inner spaces: everything a
/// parse-and-reserialize round trip would rewrite.
const DATA: &str = r#"{"z": 1.50, "a":[1e3,-0.0,"caf\u00e9"],"nested":{"b":2,"a":1},"n":null}"#;

fn send(redis_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_publisher"))
        .env_clear()
        .env("REDIS_URL", redis_url)
        .arg("send")
        .args(args)
        .output()
        .expect("publisher runs")
}

#[tokio::test]
async fn send_publishes_data_byte_for_byte_live_and_in_the_history() {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("ws:events:alert").await.unwrap();
    let mut messages = pubsub.on_message();

    let url = redis.url();
    let output =
        tokio::task::spawn_blocking(move || send(&url, &["--type", "alert", "--data", DATA]))
            .await
            .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = String::from_utf8(output.stdout).unwrap();
    let id = id.trim();

    let live = tokio::time::timeout(PATIENCE, messages.next())
        .await
        .expect("the live event arrives")
        .unwrap();
    let live = live.get_payload_bytes();
    let expected = format!(r#"{{"id":"{id}","type":"alert","data":{DATA},"timestamp":""#);
    assert!(
        live.starts_with(expected.as_bytes()),
        "live payload {}\ndoes not start with {expected}",
        String::from_utf8_lossy(live)
    );

    let history = redis.cli(&["XRANGE", "ws:history", "-", "+"]);
    let needle = format!(r#""type":"alert","data":{DATA},"timestamp":""#);
    assert!(
        history.contains(&needle),
        "history {history}\nlacks {needle}"
    );
}

#[test]
fn send_refuses_data_that_is_not_json_and_publishes_nothing() {
    let redis = RedisServer::start();
    let output = send(
        &redis.url(),
        &["--type", "alert", "--data", "{\"a\":1.50,}"],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--data is not valid JSON"), "{stderr}");
    assert_eq!(redis.cli(&["XLEN", "ws:history"]), "0");
}
