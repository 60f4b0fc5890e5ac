//! `POST /api/publish` as a backend job and an attacker meet it: batches
//! (in order, one answer with every id, all or nothing), the key checked
//! before any body byte is read, and bodies that stop arriving cut off,
//! by the request timeout and by a drain.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{KEY, Node, config};
use gateway::Config;
use serde_json::{Value, json};
use system_tests::{GatewayProcess, HttpResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

async fn post(node: &Node, body: &str) -> HttpResponse {
    node.post(body).await
}

/// Sends `head` (a request head, maybe a part of a body) on a raw socket.
async fn raw(addr: SocketAddr, head: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// What the node answers on `stream` within `wait`: the bytes up to the end
/// of the response head (or whatever came before the connection closed).
async fn answer(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// Whether the node closes `stream` within `wait` (after what it answered).
async fn closes(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn a_batch_is_published_in_order_and_answered_with_every_id() {
    let node = Node::default().await;
    let mut live = node.client().await;
    let batch = json!([
        {"type": "metrics_update", "data": {"tutor_id": "t-1", "window": "7day"}},
        {"type": "alert", "data": {"id": "a-1", "severity": "critical"}},
        {"type": "nightly.done"},
    ]);
    let accepted = post(&node, &batch.to_string()).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let ids: Vec<String> = accepted.json()["ids"]
        .as_array()
        .expect(r#"an array body is answered {"ids": [...]}"#)
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);

    for (expected, id) in batch.as_array().unwrap().iter().zip(&ids) {
        let event = live.next_json().await;
        assert_eq!(event["type"], expected["type"]);
        assert_eq!(
            event["data"],
            expected.get("data").cloned().unwrap_or(Value::Null)
        );
        assert_eq!(event["id"], id.as_str(), "live in the batch's order");
    }
    // The history holds them in the same order.
    let mut resumed = system_tests::Client::connect(&node.url(&format!("?since={}", ids[0])))
        .await
        .unwrap();
    assert_eq!(resumed.next_json().await["type"], "analytics_update");
    assert_eq!(resumed.next_json().await["id"], ids[1].as_str());
    assert_eq!(resumed.next_json().await["id"], ids[2].as_str());
    assert_eq!(resumed.next_json().await["type"], "recovery");

    // One object keeps its answer.
    let one = post(&node, r#"{"type":"alert","data":{}}"#).await;
    assert_eq!(one.status, 202);
    assert!(one.json()["id"].is_string(), "{}", one.body);
}

#[tokio::test]
async fn a_bad_event_refuses_the_whole_batch_and_the_answer_names_it() {
    let node = Node::start(Config {
        wire: publisher::WireConfig {
            max_event_bytes: 1024,
            ..config().wire
        },
        ..config()
    })
    .await;
    let mut live = node.client().await;
    let ok = r#"{"type":"alert","data":{"n":1}}"#;
    let big = format!(r#"{{"type":"alert","data":"{}"}}"#, "x".repeat(2000));
    let cases = [
        (format!("[{ok},{{\"data\":1}}]"), 400, "events[1]: "),
        (
            format!("[{ok},{ok},{{\"type\":\"no spaces\"}}]"),
            400,
            "events[2]: ",
        ),
        (
            format!("[{ok},{big}]"),
            413,
            "events[1]: event is 2065 bytes encoded",
        ),
        (format!("[{ok},]"), 400, "expected an array"),
        // One object is refused as itself, not as a batch's event.
        (big.clone(), 413, "event is 2065 bytes encoded"),
        (
            r#"{"type":"x","key":"","data":1}"#.to_owned(),
            400,
            "invalid state key: a state key is empty",
        ),
        (
            format!("[{}]", vec![ok; 1001].join(",")),
            413,
            "at most 1000 events",
        ),
    ];
    for (body, status, message) in cases {
        let refused = post(&node, &body).await;
        assert_eq!(refused.status, status, "{message}: {}", refused.body);
        let said = refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(said.contains(message), "{said:?} should say {message:?}");
        if !body.starts_with('[') {
            assert!(!said.contains("events["), "{said:?}");
        }
    }
    assert_eq!(
        live.try_next_json(Duration::from_millis(300)).await,
        None,
        "nothing of a refused batch was published"
    );
    let empty = post(&node, "[]").await;
    assert_eq!((empty.status, empty.json()), (202, json!({"ids": []})));
}

#[tokio::test]
async fn without_the_key_a_publish_is_refused_before_its_body_is_read() {
    let off = Node::start(Config::default()).await;
    let on = Node::default().await;
    let head = |auth: &str, extra: &str| {
        format!(
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 140000\r\n{auth}{extra}\r\n"
        )
    };
    let cases = [
        (
            off.addr,
            head(&format!("Authorization: Bearer {KEY}\r\n"), ""),
            "404",
        ),
        (
            on.addr,
            head("Authorization: Bearer wrong-key-wrong-key\r\n", ""),
            "401",
        ),
        (on.addr, head("", ""), "401"),
        // A client that waits for `100 Continue` before its body never gets it.
        (on.addr, head("", "Expect: 100-continue\r\n"), "401"),
    ];
    for (addr, head, status) in cases {
        let started = Instant::now();
        let mut stream = raw(addr, &head).await;
        let answered = answer(&mut stream, Duration::from_secs(2))
            .await
            .unwrap_or_else(|| panic!("no answer without a body: {head}"));
        assert!(
            answered.starts_with(&format!("HTTP/1.1 {status} ")),
            "{head}\n→ {answered}"
        );
        assert!(started.elapsed() < Duration::from_secs(1), "at once");
        assert!(
            closes(&mut stream, Duration::from_secs(2)).await,
            "the unread body is not waited for"
        );
    }
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_cut_off_within_the_request_timeout() {
    let node = Node::start(Config {
        handshake_timeout_ms: 500,
        ..config()
    })
    .await;
    let started = Instant::now();
    let mut stream = raw(
        node.addr,
        &format!(
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Length: 100\r\n\r\n{{\"type\":"
        ),
    )
    .await;
    let answered = answer(&mut stream, Duration::from_secs(5))
        .await
        .expect("an answer, not a connection held open");
    let took = started.elapsed();
    assert!(answered.starts_with("HTTP/1.1 408 "), "{answered}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "cut off at HANDSHAKE_TIMEOUT_MS (500 ms), after {took:?}"
    );
    assert!(closes(&mut stream, Duration::from_secs(2)).await);
    let still = post(&node, r#"{"type":"alert","data":{}}"#).await;
    assert_eq!(still.status, 202, "the node serves others meanwhile");
}

#[tokio::test]
async fn sigterm_is_not_held_by_a_stalled_body() {
    let key = "a-publish-key-for-the-drain-test";
    let mut node = GatewayProcess::start(&[
        ("PUBLISH_API_KEY", key),
        ("DRAIN_TIMEOUT_SECS", "10"),
        // The request timeout alone would not end the stall before the drain's.
        ("HANDSHAKE_TIMEOUT_MS", "60000"),
    ])
    .await;
    let mut stalled = raw(
        node.addr,
        &format!(
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Length: 100\r\n\r\n[{{\"type\":"
        ),
    )
    .await;
    // The node is reading the body when the signal comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || node.signal("TERM"))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(3),
        "exited {took:?} after SIGTERM; DRAIN_TIMEOUT_SECS is 10"
    );
    let answered = timeout(
        Duration::from_secs(2),
        answer(&mut stalled, Duration::from_secs(2)),
    )
    .await
    .unwrap()
    .unwrap_or_default();
    assert!(
        answered.is_empty() || answered.starts_with("HTTP/1.1 503 "),
        "closed, or told the node is draining: {answered}"
    );
}
