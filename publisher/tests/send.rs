//! `publisher send` against a real `redis-server` on a free port: what a
//! subscriber and the history receive is the `--data` the caller wrote,
//! byte for byte.

use std::process::{Command, Output};

mod common;

use common::{history, script_runs};
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

/// `publisher send --stdin` with `input` on its standard input.
fn send_stdin(redis_url: &str, args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_publisher"))
        .env_clear()
        .env("REDIS_URL", redis_url)
        .envs(env.iter().copied())
        .args(["send", "--stdin"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("publisher runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    // Written from a thread while the output is read; a CLI that exits
    // early (no Redis) may close its end first.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let output = child.wait_with_output().expect("publisher exits");
    writer.join().unwrap();
    output
}

#[test]
fn send_stdin_publishes_every_line_in_order_in_batches_with_data_as_written() {
    let redis = RedisServer::start();
    let mut input = String::new();
    let mut expected = Vec::new();
    for n in 0..1200 {
        let data = format!(r#"{{"n": {n}, "score": 1.50, "z":[1e3]}}"#);
        input.push_str(&format!(r#"{{"type":"metrics_update","data":{data}}}"#));
        input.push('\n');
        if n == 600 {
            input.push('\n'); // a blank line is no event
        }
        expected.push(data);
    }
    let output = send_stdin(&redis.url(), &[], &[], &input);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let printed: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let history = history(&redis);
    assert_eq!(history.len(), 1200, "every line is in the history");
    let epoch = redis.cli(&["GET", "{ws:history}:epoch"]);
    let stored: Vec<String> = history
        .iter()
        .map(|(sid, _)| format!("{epoch}:{sid}"))
        .collect();
    assert_eq!(printed, stored, "one id per event, in input order");
    for ((_, envelope), data) in history.iter().zip(&expected) {
        let head = format!(r#"{{"type":"metrics_update","data":{data},"timestamp":""#);
        assert!(envelope.starts_with(&head), "{envelope} is not {head}…");
    }
    assert_eq!(
        script_runs(&redis),
        3,
        "1,200 events are three round trips of 500"
    );
}

#[test]
fn send_stdin_stops_at_a_bad_line_and_says_what_was_published() {
    let redis = RedisServer::start();
    let good = |n: u32| format!(r#"{{"type":"alert","data":{{"n":{n}}}}}"#);
    let cases = [
        (
            r#"{"type":"alert","data":{"a":1,}}"#.to_owned(),
            "not a {\"type\": \"...\", \"data\": ...} object",
        ),
        (
            r#"{"type":"no spaces","data":{}}"#.to_owned(),
            "invalid message type",
        ),
        (
            format!(r#"{{"type":"alert","data":"{}"}}"#, "x".repeat(300)),
            "over MAX_EVENT_BYTES (256)",
        ),
    ];
    for (bad, why) in cases {
        redis.cli(&["FLUSHALL"]);
        let input = [good(1), String::new(), good(2), good(3), bad, good(5)].join("\n");
        let output = send_stdin(&redis.url(), &[], &[("MAX_EVENT_BYTES", "256")], &input);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{why}: {stderr}");
        assert!(stderr.contains("line 5: "), "{why}: {stderr}");
        assert!(stderr.contains(why), "{why}: {stderr}");
        assert!(
            stderr.contains("lines 1-4 were published (3 events")
                && stderr.contains("nothing from line 5 on was published"),
            "{why}: {stderr}"
        );
        let history = history(&redis);
        assert_eq!(
            history.len(),
            3,
            "{why}: the lines before the bad one, not after"
        );
        assert!(history[2].1.contains(r#""data":{"n":3}"#));
        assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 3);
    }
}

#[test]
fn send_stdin_against_an_unreachable_redis_exits_1_having_published_nothing() {
    let closed = format!("redis://127.0.0.1:{}", system_tests::free_port());
    let output = send_stdin(&closed, &[], &[], "{\"type\":\"alert\",\"data\":{}}\n");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach Redis"), "{stderr}");
}
