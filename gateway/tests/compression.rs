//! permessage-deflate (RFC 7692) on a real node, seen on the wire: what is
//! negotiated, which events come compressed, compressed input (and bombs),
//! `COMPRESSION=off`.

mod common;

use common::{Node, config};
use gateway::Config;
use serde_json::json;
use system_tests::deflate::{DeflateClient, deflate};
use system_tests::metric;

/// What Chrome offers.
const CHROME: &str = "permessage-deflate; client_max_window_bits";
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

async fn connect(node: &Node, offer: Option<&str>) -> DeflateClient {
    let mut client = DeflateClient::connect(node.addr, "/ws/dashboard", offer)
        .await
        .expect("upgraded");
    let (_, greeting) = client.next_json().await.unwrap();
    assert_eq!(greeting["type"], "analytics_update");
    client
}

/// A tutor metrics row as TutorMax publishes it (about 600 bytes).
fn tutor_row(n: usize) -> serde_json::Value {
    json!({
        "tutor_id": format!("tutor-{n:05}"), "window": "7day",
        "sessions_completed": 42, "avg_rating": 4.72, "first_session_success_rate": 0.81,
        "reschedule_rate": 0.07, "no_show_count": 1, "engagement_score": 0.86,
        "learning_objectives_met_pct": 0.9, "response_time_avg_minutes": 12.5,
        "performance_tier": "Exemplary", "churn_risk": "low", "churn_probability": 0.04,
        "calculated_at": "2026-12-02T10:00:00Z", "subjects": ["algebra", "geometry", "physics"],
    })
}

#[tokio::test]
async fn an_offer_gets_no_context_takeover_and_only_large_events_come_compressed() {
    let node = Node::default().await;
    let mut client = connect(&node, Some(CHROME)).await;
    assert_eq!(client.extensions.as_deref(), Some(ANSWER));

    let row = node.publish("metrics_update", tutor_row(7)).await;
    let (compressed, event) = client.next_json().await.unwrap();
    assert!(compressed, "a tutor row is over COMPRESSION_MIN_BYTES");
    assert_eq!(event["id"], row.as_str());
    assert_eq!(event["data"], tutor_row(7), "inflates to the same envelope");

    let small = node.publish("alert", json!({"id": "a-1"})).await;
    let (compressed, event) = client.next_json().await.unwrap();
    assert!(!compressed, "a short envelope goes plain");
    assert_eq!(event["id"], small.as_str());

    // A client without the offer on the same node gets the same events plain.
    let mut plain = connect(&node, None).await;
    assert_eq!(plain.extensions, None);
    node.publish("metrics_update", tutor_row(8)).await;
    let (compressed, event) = plain.next_json().await.unwrap();
    assert!(!compressed);
    assert_eq!(event["data"], tutor_row(8));
    assert_eq!(client.next_json().await.unwrap().1["data"], tutor_row(8));

    let metrics = node.metrics().await;
    assert!(
        metric(
            &metrics,
            "gateway_connections_opened_total{transport=\"websocket_deflate\"}"
        ) >= 1.0
    );
}

#[tokio::test]
async fn compressed_messages_from_the_client_are_read_and_a_bomb_closes_only_its_connection() {
    let node = Node::default().await;
    let mut client = connect(&node, Some(CHROME)).await;
    client.send_text("ping", true).await.unwrap();
    let (_, pong) = client.next_json().await.unwrap();
    assert_eq!(pong["data"], json!({"pong": true}));

    let mut bystander = connect(&node, Some(CHROME)).await;
    // 4 KiB on the wire, 8 MiB inflated: far past MAX_MESSAGE_BYTES (64 KiB).
    let bomb = deflate(&vec![b' '; 8 * 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024);
    client.send_frame(0xC1, &bomb).await.unwrap();
    assert_eq!(client.closed().await, Some(1009), "too large once inflated");

    let mut corrupt = connect(&node, Some(CHROME)).await;
    corrupt.send_frame(0xC1, b"\xff\xff\xff\xff").await.unwrap();
    assert_eq!(corrupt.closed().await, Some(1002), "not deflate data");

    let id = node.publish("alert", json!({})).await;
    assert_eq!(bystander.next_json().await.unwrap().1["id"], id.as_str());
}

#[tokio::test]
async fn compression_off_declines_the_offer() {
    let node = Node::start(Config {
        compression: false,
        ..config()
    })
    .await;
    let mut client = connect(&node, Some(CHROME)).await;
    assert_eq!(client.extensions, None);
    node.publish("metrics_update", tutor_row(1)).await;
    let (compressed, event) = client.next_json().await.unwrap();
    assert!(!compressed);
    assert_eq!(event["data"], tutor_row(1));
}
