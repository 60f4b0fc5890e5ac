//! `/sse/dashboard`: the same stream as Server-Sent Events, on a real node:
//! the greeting, events with their ids, resume by `Last-Event-ID`, the same
//! admission as the WebSocket, heartbeats, and how a stream ends.

mod common;

use std::time::Duration;

use common::identity::{SECRET, hs256, now};
use common::{Node, config};
use gateway::Config;
use serde_json::{Value, json};
use system_tests::sse::{Record, SseStream};
use system_tests::{eventually, http, metric};

const PATH: &str = "/sse/dashboard";

async fn open(node: &Node, query: &str, headers: &[(&str, &str)]) -> SseStream {
    SseStream::open(node.addr, &format!("{PATH}{query}"), headers)
        .await
        .expect("open the stream")
}

#[tokio::test]
async fn a_stream_opens_with_the_greeting_and_carries_each_event_with_its_id() {
    let node = Node::default().await;
    node.publish("analytics_update", json!({"total_tutors": 12}))
        .await;
    let mut stream = open(&node, "", &[]).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-cache");
    assert_eq!(
        stream.headers["x-accel-buffering"], "no",
        "tells nginx not to buffer the stream"
    );
    let (greeting_id, greeting) = stream.next_json().await;
    assert_eq!(greeting["type"], "analytics_update");
    assert_eq!(greeting["data"]["total_tutors"], 12);
    assert_eq!(
        greeting_id.as_deref(),
        greeting["id"].as_str(),
        "the greeting's position is its SSE id"
    );

    let id = node
        .publish("alert", json!({"tutor_id": "t-1", "note": "two\nlines"}))
        .await;
    let (sse_id, alert) = stream.next_json().await;
    assert_eq!(alert["type"], "alert");
    assert_eq!(alert["data"]["note"], "two\nlines");
    assert_eq!(alert["id"], id.as_str());
    assert_eq!(sse_id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn last_event_id_resumes_with_nothing_lost_or_doubled() {
    let node = Node::default().await;
    let mut first = open(&node, "", &[]).await;
    first.next_json().await;
    let seen = node.publish("alert", json!({"n": 1})).await;
    assert_eq!(first.next_json().await.0.as_deref(), Some(seen.as_str()));
    drop(first);
    // Published while the client was away.
    let missed = [
        node.publish("alert", json!({"n": 2})).await,
        node.publish("intervention", json!({"n": 3})).await,
    ];

    // What an EventSource sends when it reconnects.
    let mut again = open(&node, "", &[("last-event-id", &seen)]).await;
    let (_, greeting) = again.next_json().await;
    assert_eq!(greeting["type"], "analytics_update");
    for id in &missed {
        let (sse_id, event) = again.next_json().await;
        assert_eq!(sse_id.as_deref(), Some(id.as_str()));
        assert_eq!(event["id"], id.as_str());
    }
    let (_, recovery) = again.next_json().await;
    assert_eq!(recovery["type"], "recovery");
    assert_eq!(recovery["data"], json!({"recovered": true, "replayed": 2}));
    let live = node.publish("alert", json!({"n": 4})).await;
    assert_eq!(again.next_json().await.1["id"], live.as_str());
}

#[tokio::test]
async fn the_websocket_checks_apply_and_the_token_comes_as_a_bearer_header() {
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        ..config()
    })
    .await;
    let refused = open(&node, "", &[]).await;
    assert_eq!(refused.status, 401, "no token");
    let body: Value = serde_json::from_str(&refused.text().await).unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let token = hs256(&json!({"sub": "ana", "exp": now() + 300.0, "types": ["alert"]}));
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    assert_eq!(open(&node, "?types=intervention", &auth).await.status, 403);
    assert_eq!(
        open(&node, "?auth=frame", &auth).await.status,
        400,
        "a stream has no first frame to carry a token"
    );
    assert_eq!(open(&node, "?types=a%20b", &auth).await.status, 400);

    let mut stream = open(&node, "", &auth).await;
    assert_eq!(stream.status, 200);
    let (_, greeting) = stream.next_json().await;
    assert_eq!(
        greeting["data"],
        json!({}),
        "the claim excludes analytics: an empty greeting"
    );
    node.publish("intervention", json!({})).await;
    let alert = node.publish("alert", json!({})).await;
    assert_eq!(
        stream.next_json().await.1["id"],
        alert.as_str(),
        "only the claim's types"
    );
    // `?token=`, for a plain EventSource.
    let mut by_query = open(&node, &format!("?token={token}"), &[]).await;
    assert_eq!(by_query.status, 200);
    by_query.next_json().await;
}

#[tokio::test]
async fn heartbeats_are_comment_lines_and_shutdown_says_why_the_stream_ends() {
    let node = Node::start(Config {
        ping_interval_ms: 100,
        ..config()
    })
    .await;
    let mut stream = open(&node, "", &[]).await;
    stream.next_json().await;
    // Several intervals with nothing to answer: an SSE client sends no
    // pong, and is not dropped for it.
    for _ in 0..3 {
        match stream.try_next(Duration::from_secs(2)).await {
            Some(Record::Comment(text)) => assert_eq!(text, "ping"),
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
    node.shutdown.cancel();
    let close = stream.ended().await.expect("a close record before the end");
    assert_eq!(close["code"], 1001);
}

#[tokio::test]
async fn a_stream_that_is_not_read_is_closed_as_slow_and_the_others_get_everything() {
    let node = Node::start(Config {
        client_buffer_bytes: 512 * 1024,
        write_timeout_ms: 2_000,
        ..config()
    })
    .await;
    let before = metric(
        &node.metrics().await,
        "gateway_slow_client_disconnects_total",
    );
    let mut stalled = open(&node, "", &[]).await;
    stalled.next_json().await;
    let mut reader = open(&node, "", &[]).await;
    reader.next_json().await;

    let blob = "x".repeat(8 * 1024);
    let events = 1000;
    let reading = tokio::spawn(async move {
        let mut got = 0;
        while got < events {
            let (_, event) = reader.next_json().await;
            if event["type"] == "alert" {
                got += 1;
            }
        }
        got
    });
    for n in 0..events {
        node.publish("alert", json!({"n": n, "blob": blob})).await;
    }
    assert_eq!(
        reading.await.unwrap(),
        events,
        "the reading client lost nothing"
    );
    eventually("the stalled stream to be closed as slow", || async {
        let now = metric(
            &node.metrics().await,
            "gateway_slow_client_disconnects_total",
        );
        (now > before).then_some(())
    })
    .await;
    drop(stalled);
}

#[tokio::test]
async fn a_page_on_another_origin_may_read_the_stream_with_its_bearer_header() {
    let node = Node::start(Config {
        cors_origins: vec!["https://ops.example.com".into()],
        ..config()
    })
    .await;
    let origin = [("origin", "https://ops.example.com")];
    let preflight = http(
        node.addr,
        "OPTIONS",
        PATH,
        &[
            origin[0],
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization"),
        ],
        "",
    )
    .await
    .unwrap();
    assert_eq!(preflight.status, 204);
    let headers = preflight.headers.to_ascii_lowercase();
    assert!(headers.contains("access-control-allow-origin: https://ops.example.com"));
    assert!(headers.contains("access-control-allow-headers: authorization, last-event-id"));

    let mut stream = open(&node, "", &origin).await;
    assert_eq!(stream.status, 200);
    assert_eq!(
        stream.headers["access-control-allow-origin"],
        "https://ops.example.com"
    );
    stream.next_json().await;
    let foreign = open(&node, "", &[("origin", "https://evil.example")]).await;
    assert_eq!(
        foreign.status, 403,
        "CORS_ORIGINS applies as to a WebSocket"
    );
}

#[tokio::test]
async fn many_streams_from_one_address_do_not_lock_it_out() {
    // A school's dashboards behind one NAT: more open streams than the
    // listener lets one address have unanswered requests (128).
    let node = Node::default().await;
    let mut streams = Vec::new();
    for _ in 0..140 {
        let mut stream = open(&node, "", &[]).await;
        assert_eq!(stream.status, 200);
        stream.next_json().await;
        streams.push(stream);
    }
    let mut ws = node.client().await;
    let id = node.publish("alert", json!({})).await;
    assert_eq!(ws.next_json().await["id"], id.as_str());
    for stream in &mut streams {
        assert_eq!(stream.next_json().await.0.as_deref(), Some(id.as_str()));
    }
}
