//! `?state=1` on one node with the in-process bus: keys and removals
//! through `/api/publish`, the bounds, the token's `types` claim, a resume
//! that cannot recover, and the state over SSE and permessage-deflate.

mod common;

use common::identity::{SECRET, claims, hs256};
use common::{Node, config};
use gateway::Config;
use serde_json::{Value, json};
use system_tests::Client;
use system_tests::deflate::DeflateClient;
use system_tests::sse::SseStream;
use system_tests::state::{Table, read_state};

async fn post(node: &Node, body: &Value) -> system_tests::HttpResponse {
    node.post(&body.to_string()).await
}

fn keys(table: &Table) -> Vec<(String, String)> {
    table.rows.keys().cloned().collect()
}

async fn table_at_open(node: &Node, query: &str) -> (Table, Value) {
    let mut client = Client::connect(&node.url(query)).await.unwrap();
    let read = read_state(&mut client).await;
    let mut table = Table::default();
    read.events.iter().for_each(|e| table.apply(e));
    (table, read.marker)
}

#[tokio::test]
async fn api_publish_takes_explicit_keys_and_removals_and_derives_the_rest() {
    let node = Node::default().await;
    let batch = json!([
        {"type": "metrics_update", "data": {"tutor_id": "t-1", "window": "7day"}},
        {"type": "alert", "data": {"id": "a-1", "status": "open"}},
        {"type": "shift", "key": "desk-4", "data": {"who": "ana"}},
        {"type": "shift", "key": "desk-5", "data": {"who": "bo"}},
        {"type": "shift", "key": "desk-5", "removed": true, "data": null},
        {"type": "alert", "data": {"id": "a-1", "status": "resolved"}},
    ]);
    let accepted = post(&node, &batch).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let (table, marker) = table_at_open(&node, "?state=1").await;
    assert_eq!(
        keys(&table),
        [
            ("metrics_update".into(), "t-1|7day".into()),
            ("shift".into(), "desk-4".into()),
        ]
    );
    assert_eq!(marker["data"]["count"], 2);
    let ids = accepted.json()["ids"].clone();
    assert_eq!(marker["id"], ids[5], "current to the last event");

    let bad = post(&node, &json!({"type": "shift", "key": "", "data": 1})).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("bad_key"), "{}", bad.body);
    let orphan = post(&node, &json!({"type": "shift", "removed": true, "data": 1})).await;
    assert_eq!(orphan.status, 400, "a removal needs a key: {}", orphan.body);
    let reserved = post(&node, &json!({"type": "state", "data": 1})).await;
    assert_eq!(reserved.status, 400, "`state` is the server's own type");
}

#[tokio::test]
async fn the_in_process_bus_bounds_keys_as_redis_does() {
    let mut config = config();
    config.wire.state_max_keys = 2;
    let node = Node::start(config).await;
    let mut live = Client::connect(&node.url("?state=1")).await.unwrap();
    read_state(&mut live).await;
    let mut table = Table::default();
    for key in ["a", "b", "a", "c"] {
        node.publish("alert", json!({"id": key})).await;
        table.apply(&live.next_json().await);
    }
    let expected = vec![
        ("alert".to_owned(), "a".to_owned()),
        ("alert".into(), "c".into()),
    ];
    assert_eq!(keys(&table), expected, "b was the least recently updated");
    assert_eq!(keys(&table_at_open(&node, "?state=1").await.0), expected);
}

#[tokio::test]
async fn a_token_limited_to_some_types_gets_only_their_state() {
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        ..config()
    })
    .await;
    node.publish("alert", json!({"id": "a-1"})).await;
    node.publish("intervention", json!({"id": "i-1"})).await;
    let mut claim = claims(60.0);
    claim["types"] = json!(["intervention"]);
    let token = hs256(&claim);
    let (table, _) = table_at_open(&node, &format!("?state=1&token={token}")).await;
    assert_eq!(keys(&table), [("intervention".into(), "i-1".into())]);
    // Asking for more than the claim is refused, state or not.
    let refused = Client::connect(&node.url(&format!("?state=1&types=alert&token={token}"))).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn a_resume_that_cannot_recover_gets_the_state_instead() {
    let node = Node::default().await;
    node.publish("alert", json!({"id": "a-1"})).await;
    let foreign = "00000001:1-0";
    let mut client = Client::connect(&node.url(&format!("?since={foreign}&state=1")))
        .await
        .unwrap();
    assert_eq!(client.next_json().await["type"], "analytics_update");
    let recovery = client.next_json().await;
    assert_eq!(recovery["data"]["recovered"], false);
    let state = client.next_json().await;
    assert_eq!(state["key"], "a-1");
    let marker = client.next_json().await;
    assert_eq!(marker["data"], json!({"complete": true, "count": 1}));

    // A resume that recovers gets no state: it has it.
    let position = marker["id"].as_str().unwrap();
    let mut back = Client::connect(&node.url(&format!("?since={position}&state=1")))
        .await
        .unwrap();
    back.next_json().await;
    assert_eq!(back.next_json().await["data"]["recovered"], true);
    let live = node.publish("alert", json!({"id": "a-2"})).await;
    assert_eq!(back.next_json().await["id"], live.as_str());
}

#[tokio::test]
async fn over_sse_the_state_events_carry_no_id_and_the_marker_does() {
    let node = Node::default().await;
    node.publish("alert", json!({"id": "a-1"})).await;
    let last = node.publish("alert", json!({"id": "a-2"})).await;
    let mut stream = SseStream::open(node.addr, "/sse/dashboard?state=1", &[])
        .await
        .unwrap();
    let (greeting_id, greeting) = stream.next_json().await;
    assert_eq!(greeting["type"], "analytics_update");
    assert_eq!(
        greeting_id, None,
        "no position before the state is complete"
    );
    for _ in 0..2 {
        let (id, event) = stream.next_json().await;
        assert_eq!(event["type"], "alert");
        assert_eq!(id, None, "a state event's id is no place to resume from");
    }
    let (marker_id, marker) = stream.next_json().await;
    assert_eq!(marker["type"], "state");
    assert_eq!(marker_id.as_deref(), Some(last.as_str()));
}

#[tokio::test]
async fn a_deflate_client_gets_the_same_state() {
    let node = Node::default().await;
    let blob = "x".repeat(2000);
    node.publish("alert", json!({"id": "a-1", "blob": blob}))
        .await;
    let offer = Some("permessage-deflate; client_max_window_bits");
    let mut client = DeflateClient::connect(node.addr, "/ws/dashboard?state=1", offer)
        .await
        .unwrap();
    assert_eq!(
        client.next_json().await.unwrap().1["type"],
        "analytics_update"
    );
    let (compressed, event) = client.next_json().await.unwrap();
    assert_eq!(event["data"]["blob"], blob.as_str());
    assert!(compressed, "the event's shared compressed frame");
    assert_eq!(client.next_json().await.unwrap().1["type"], "state");
}
