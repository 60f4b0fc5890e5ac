//! One gateway node on the in-process bus, exercised over real sockets the
//! way a dashboard and a backend job use it.

mod common;

use std::time::Duration;

use common::{KEY, Node, config};
use gateway::Config;
use serde_json::json;
use system_tests::{Client, Closed, eventually, get, http, metric, publish};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_new_client_gets_the_latest_analytics_at_once() {
    let node = Node::default().await;
    let mut first = Client::connect(&node.url("")).await.unwrap();
    let greeting = first
        .try_next_json(Duration::from_millis(500))
        .await
        .expect("greeting well under 1 s");
    assert_eq!(greeting["type"], "analytics_update");
    assert_eq!(
        greeting["data"],
        json!({}),
        "nothing published yet: an empty object"
    );
    assert!(greeting["timestamp"].as_str().unwrap().ends_with('Z'));

    node.publish(
        "analytics_update",
        json!({"total_tutors": 24, "active_tutors": 17}),
    )
    .await;
    let mut second = Client::connect(&node.url("")).await.unwrap();
    let greeting = second.next_json().await;
    assert_eq!(greeting["type"], "analytics_update");
    assert_eq!(greeting["data"]["total_tutors"], 24);
}

#[tokio::test]
async fn ping_gets_a_pong_for_that_client_alone() {
    let node = Node::default().await;
    let mut asker = node.client().await;
    let mut other = node.client().await;
    asker.send_text("ping").await;
    let pong = asker.next_json().await;
    assert_eq!(pong["type"], "analytics_update");
    assert_eq!(pong["data"], json!({"pong": true}));
    assert_eq!(
        other.try_next_json(Duration::from_millis(300)).await,
        None,
        "others get no pong"
    );
}

#[tokio::test]
async fn unknown_text_or_binary_gets_an_error_and_the_connection_stays() {
    let node = Node::default().await;
    let mut client = node.client().await;
    client.send_text("{\"hello\": 1}").await;
    let error = client.next_json().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["data"]["code"], "unknown_message");
    client.send(Message::binary(vec![1u8, 2, 3])).await;
    let error = client.next_json().await;
    assert_eq!(error["data"]["code"], "binary_not_supported");
    client.send_text("ping").await;
    assert_eq!(
        client.next_json().await["data"]["pong"],
        true,
        "still connected and served"
    );
}

#[tokio::test]
async fn a_frame_over_the_inbound_limit_closes_with_1009_and_spares_others() {
    let node = Node::start(Config {
        max_message_bytes: 1024,
        ..config()
    })
    .await;
    let mut abuser = node.client().await;
    let mut bystander = node.client().await;
    abuser.send_text(&"x".repeat(2048)).await;
    assert_eq!(abuser.closed().await, Closed::Code(1009));
    node.publish("alert", json!({"n": 1})).await;
    assert_eq!(bystander.next_json().await["type"], "alert");
}

#[tokio::test]
async fn a_broadcast_of_any_type_reaches_every_client_untouched() {
    let node = Node::default().await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(node.client().await);
    }
    let data = json!({"z": 1, "a": {"nested": [1, 2, 3]}, "text": "é ✓"});
    for kind in [
        "metrics_update",
        "alert",
        "intervention",
        "analytics_update",
        "test_message",
    ] {
        node.publish(kind, data.clone()).await;
    }
    for client in &mut clients {
        for kind in [
            "metrics_update",
            "alert",
            "intervention",
            "analytics_update",
            "test_message",
        ] {
            let message = client.next_json().await;
            assert_eq!(message["type"], kind);
            assert_eq!(message["data"], data);
            assert!(message["id"].is_string(), "published events carry an id");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_never_delays_the_others() {
    let node = Node::start(Config {
        client_buffer_bytes: 512 * 1024,
        write_timeout_ms: 500,
        ..config()
    })
    .await;
    // The stalled client: a small receive buffer and no reads after the greeting.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(node.addr).await.unwrap();
    let (mut stalled, _) = tokio_tungstenite::client_async(node.url(""), stream)
        .await
        .unwrap();
    let _ = futures_util::StreamExt::next(&mut stalled).await;

    let events: i64 = 3000;
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut reader = node.client().await;
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(events as usize);
            for expected in 0..events {
                let message = reader.next_json().await;
                assert_eq!(message["data"]["n"], expected, "in order, none missing");
                let at: chrono::DateTime<chrono::Utc> =
                    message["timestamp"].as_str().unwrap().parse().unwrap();
                latencies.push((chrono::Utc::now() - at).num_milliseconds());
            }
            latencies.sort_unstable();
            (events, latencies[latencies.len() * 9 / 10], reader)
        }));
    }
    // 24 MB in all: more than the kernel buffers (4 MB send buffer) can hide.
    let payload = "x".repeat(8000);
    for n in 0..events {
        node.publish("metrics_update", json!({"n": n, "pad": payload}))
            .await;
        if n % 20 == 0 {
            // A steady publisher (about 20k events/s), not one giant burst.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut kept = Vec::new();
    for reader in readers {
        let (seen, p90_ms, client) = reader.await.unwrap();
        assert_eq!(seen, events, "every reader got every event");
        // Had fan-out waited on the stalled client, the others would wait
        // out its write timeout (500 ms) again and again.
        assert!(
            p90_ms < 250,
            "the others were delayed: p90 {p90_ms} ms from publish to receipt"
        );
        kept.push(client);
    }
    eventually("the stalled client to be dropped", || async {
        (node.local_connections().await == 2).then_some(())
    })
    .await;
    let metrics = node.metrics().await;
    assert!(
        metric(&metrics, "gateway_slow_client_disconnects_total") >= 1.0,
        "{metrics}"
    );
    drop(stalled);
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_is_dropped() {
    let node = Node::start(Config {
        // Short enough for a test, long enough that a loaded CI machine's
        // live client still answers in time.
        ping_interval_ms: 200,
        pong_timeout_ms: 1000,
        ..config()
    })
    .await;
    // A raw handshake, then silence: this peer never reads, so never pongs.
    let mut raw = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let request = format!(
        "GET /ws/dashboard HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        node.addr
    );
    raw.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    raw.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    // A live client: reading keeps it answering the server's pings.
    let mut alive = node.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.local_connections().await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the silent peer was not dropped"
        );
        let _ = alive.try_next_json(Duration::from_millis(50)).await;
    }
    let metrics = node.metrics().await;
    assert!(
        metric(
            &metrics,
            "gateway_connections_closed_total{reason=\"ping_timeout\"}"
        ) >= 1.0
    );
    // Keep the live client answering for several more ping rounds.
    let _ = alive.try_next_json(Duration::from_millis(600)).await;
    alive.send_text("ping").await;
    assert_eq!(
        alive.next_json().await["data"]["pong"],
        true,
        "a client that answers pings stays"
    );
    assert_eq!(node.local_connections().await, 1);
}

#[tokio::test]
async fn handshakes_from_other_origins_are_refused_with_403() {
    let node = Node::start(Config {
        cors_origins: vec!["https://ops.example.com".into()],
        ..config()
    })
    .await;
    let refused = Client::connect_with_origin(&node.url(""), "https://evil.example").await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        Err(other) => panic!("expected an HTTP 403, got {other}"),
        Ok(_) => panic!("a foreign origin was let in"),
    }
    let mut allowed = Client::connect_with_origin(&node.url(""), "https://ops.example.com")
        .await
        .unwrap();
    assert_eq!(allowed.next_json().await["type"], "analytics_update");
}

#[tokio::test]
async fn the_publish_api_answers_each_case_as_the_spec_says() {
    let off = Node::start(Config::default()).await;
    assert_eq!(
        publish(off.addr, KEY, "alert", &json!({})).await.status,
        404
    );

    let node = Node::default().await;
    let mut client = node.client().await;
    let wrong = publish(node.addr, "nope", "alert", &json!({})).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"]["code"], "unauthorized");
    let auth = format!("Bearer {KEY}");
    for body in [
        "not json",
        "{\"data\": 1}",
        "{\"type\": \"bad type\", \"data\": 1}",
        "{\"type\": \"error\"}",
    ] {
        let response = http(
            node.addr,
            "POST",
            "/api/publish",
            &[("Authorization", &auth)],
            body,
        )
        .await
        .unwrap();
        assert_eq!(response.status, 400, "{body}: {}", response.body);
        assert!(
            response.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let accepted = publish(
        node.addr,
        KEY,
        "alert",
        &json!({"tutor_id": "t-17", "severity": "critical"}),
    )
    .await;
    assert_eq!(accepted.status, 202);
    let id = accepted.json()["id"].as_str().unwrap().to_owned();
    let alert = client.next_json().await;
    assert_eq!(alert["type"], "alert");
    assert_eq!(alert["data"]["tutor_id"], "t-17");
    assert_eq!(alert["id"], id.as_str());
}

#[tokio::test]
async fn status_health_readiness_and_metrics_answer() {
    let node = Node::start(Config {
        node_id: Some("node-a".into()),
        ..config()
    })
    .await;
    let _a = node.client().await;
    let _b = node.client().await;
    let status = get(node.addr, "/ws/status").await.json();
    assert_eq!(status["active_connections"], 2);
    assert_eq!(
        status["status"], "operational",
        "what the FastAPI route said"
    );
    assert_eq!(status["local_connections"], 2);
    assert_eq!(status["node_id"], "node-a");
    assert_eq!(status["nodes"][0]["node_id"], "node-a");
    assert_eq!(status["nodes"][0]["active_connections"], 2);
    assert_eq!(get(node.addr, "/healthz").await.status, 200);
    assert_eq!(get(node.addr, "/readyz").await.status, 200);
    let page = get(node.addr, "/dashboard").await;
    assert_eq!(page.status, 200, "the page at /dashboard too");
    assert_eq!(page.body, get(node.addr, "/").await.body);

    node.publish("alert", json!({})).await;
    let metrics = eventually("metrics to show the delivery", || async {
        let text = node.metrics().await;
        (metric(&text, "gateway_messages_sent_total{type=\"alert\"}") >= 2.0).then_some(text)
    })
    .await;
    for name in [
        "gateway_connections_active",
        "gateway_connections_opened_total",
        "gateway_broadcast_latency_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "missing {name} in:\n{metrics}");
    }
}

#[tokio::test]
async fn the_page_and_its_assets_tell_the_browser_to_send_no_referer() {
    // The page's URL may carry ?token=: no Referer may copy it into the asset
    // requests (or anywhere else).
    let node = Node::default().await;
    for path in [
        "/",
        "/dashboard",
        "/assets/dashboard.css",
        "/assets/ws-client.js",
        "/assets/dashboard.js",
    ] {
        let response = get(node.addr, path).await;
        assert_eq!(response.status, 200, "{path}");
        assert!(
            response
                .headers
                .to_ascii_lowercase()
                .contains("referrer-policy: no-referrer\r\n"),
            "{path}: {}",
            response.headers
        );
    }
}

#[tokio::test]
async fn types_limit_what_a_client_receives() {
    let node = Node::default().await;
    let mut alerts_only = Client::connect(&node.url("?types=alert,intervention"))
        .await
        .unwrap();
    assert_eq!(
        alerts_only.next_json().await["type"],
        "analytics_update",
        "the greeting always comes"
    );
    for kind in [
        "metrics_update",
        "alert",
        "analytics_update",
        "intervention",
        "test_message",
    ] {
        node.publish(kind, json!({"kind": kind})).await;
    }
    assert_eq!(alerts_only.next_json().await["type"], "alert");
    assert_eq!(alerts_only.next_json().await["type"], "intervention");
    assert_eq!(
        alerts_only.try_next_json(Duration::from_millis(300)).await,
        None
    );
    alerts_only.send_text("ping").await;
    assert_eq!(
        alerts_only.next_json().await["data"]["pong"],
        true,
        "pongs always come"
    );
}

#[tokio::test]
async fn a_bad_query_is_refused_with_400_in_the_json_error_shape() {
    let node = Node::default().await;
    let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let too_many = format!("?types={}", many.join(","));
    for (query, code) in [
        ("?types=al*rt", "bad_types"),
        (too_many.as_str(), "bad_types"),
        ("?types=alert&types=intervention", "bad_query"),
        ("?since=a&since=b", "bad_query"),
    ] {
        let refused = tokio_tungstenite::connect_async(node.url(query)).await;
        let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
            panic!("{query}: not refused at the handshake");
        };
        assert_eq!(response.status().as_u16(), 400, "{query}");
        let body: serde_json::Value =
            serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
        assert_eq!(body["error"]["code"], code, "{query}");
    }
    let metrics = node.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "gateway_handshakes_rejected_total{reason=\"bad_request\"}"
        ),
        4.0
    );
}

#[tokio::test]
async fn a_client_resuming_with_since_gets_exactly_what_it_missed_then_live() {
    let node = Node::default().await;
    let mut client = node.client().await;
    node.publish("alert", json!({"n": 0})).await;
    let last_seen = client.next_json().await["id"].as_str().unwrap().to_owned();
    client.close().await;

    for n in 1..=3 {
        node.publish("alert", json!({"n": n})).await;
    }
    node.publish("metrics_update", json!({"n": 4})).await;
    let mut back = Client::connect(&node.url(&format!("?since={last_seen}&types=alert")))
        .await
        .unwrap();
    assert_eq!(back.next_json().await["type"], "analytics_update");
    for n in 1..=3 {
        let missed = back.next_json().await;
        assert_eq!(
            (missed["type"].as_str(), missed["data"]["n"].as_i64()),
            (Some("alert"), Some(n))
        );
    }
    let recovery = back.next_json().await;
    assert_eq!(recovery["type"], "recovery");
    assert_eq!(recovery["data"], json!({"recovered": true, "replayed": 3}));
    node.publish("alert", json!({"n": 5})).await;
    assert_eq!(
        back.next_json().await["data"]["n"],
        5,
        "then live, no duplicates"
    );
}

#[tokio::test]
async fn a_malformed_or_unknown_since_is_answered_with_recovered_false() {
    let node = Node::default().await;
    for since in ["garbage", "1-0"] {
        let mut client = Client::connect(&node.url(&format!("?since={since}")))
            .await
            .unwrap();
        assert_eq!(client.next_json().await["type"], "analytics_update");
        let recovery = client.next_json().await;
        assert_eq!(
            recovery["data"],
            json!({"recovered": false, "replayed": 0}),
            "since={since}"
        );
        node.publish("alert", json!({"after": since})).await;
        assert_eq!(
            client.next_json().await["data"]["after"],
            since,
            "the live stream still follows"
        );
    }
}

#[tokio::test]
async fn draining_closes_every_client_with_1001_and_stops_accepting() {
    let node = Node::default().await;
    let mut clients = vec![node.client().await, node.client().await];
    let url = node.url("");
    node.shutdown.cancel();
    for client in &mut clients {
        assert_eq!(client.closed().await, Closed::Code(1001));
    }
    let served = tokio::time::timeout(Duration::from_secs(5), node.served).await;
    assert!(
        matches!(served, Ok(Ok(Ok(())))),
        "run returns once drained: {served:?}"
    );
    assert!(Client::connect(&url).await.is_err(), "no longer accepting");
}
