//! `?auth=frame`: the token as the first frame instead of in the URL, on a
//! real node with real tokens. Nothing comes before the auth frame is
//! accepted; a bad or missing one closes with 4001; the token's claims apply
//! as they do to a `?token=`.

mod common;

use std::time::{Duration, Instant};

use common::identity::{SECRET, hs256, now, status};
use common::{Node, config};
use gateway::Config;
use serde_json::{Value, json};
use system_tests::{Client, Closed, metric};

fn auth_frame(token: &str) -> String {
    json!({"type": "auth", "token": token}).to_string()
}

async fn secured(overrides: impl FnOnce(Config) -> Config) -> Node {
    Node::start(overrides(Config {
        auth_jwt_secret: Some(SECRET.into()),
        ..config()
    }))
    .await
}

/// A client on `?auth=frame` that has sent nothing yet.
async fn awaiting(node: &Node, query: &str) -> Client {
    Client::connect(&node.url(&format!("?auth=frame{query}")))
        .await
        .expect("upgraded without a token")
}

#[tokio::test]
async fn a_token_in_the_first_frame_is_accepted_and_nothing_comes_before_it() {
    let node = secured(|c| c).await;
    node.publish("analytics_update", json!({"total_tutors": 7}))
        .await;
    let token =
        hs256(&json!({"sub": "ana", "exp": now() + 300.0, "types": ["alert", "analytics_update"]}));
    let mut client = awaiting(&node, "").await;
    assert_eq!(
        client.try_next_json(Duration::from_millis(500)).await,
        None,
        "no greeting (nor anything else) before the auth frame"
    );
    client.send_text(&auth_frame(&token)).await;
    let greeting = client.next_json().await;
    assert_eq!(greeting["type"], "analytics_update");
    assert_eq!(greeting["data"]["total_tutors"], 7);

    // The token's `types` claim applies, as it would from ?token=.
    node.publish("metrics_update", json!({"tutor_id": "t-1"}))
        .await;
    let alert = node.publish("alert", json!({"tutor_id": "t-2"})).await;
    let got = client.next_json().await;
    assert_eq!(
        (got["type"].as_str(), got["id"].as_str()),
        (Some("alert"), Some(alert.as_str()))
    );
    client.send_text("ping").await;
    assert_eq!(client.next_json().await["data"]["pong"], true);

    // A claim without analytics_update: greeted with `data: {}`, as from ?token=.
    let alerts_only = hs256(&json!({"sub": "bo", "exp": now() + 300.0, "types": ["alert"]}));
    let mut limited = awaiting(&node, "").await;
    limited.send_text(&auth_frame(&alerts_only)).await;
    let greeting = limited.next_json().await;
    assert_eq!(greeting["type"], "analytics_update");
    assert_eq!(greeting["data"], json!({}));
}

#[tokio::test]
async fn a_bad_token_or_another_first_frame_closes_with_4001() {
    let node = secured(|c| c).await;
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "ana", "exp": now() + 300.0}),
        &jsonwebtoken::EncodingKey::from_secret(b"not the node's secret"),
    )
    .unwrap();
    let expired = hs256(&json!({"sub": "ana", "exp": now() - 3600.0}));
    for (what, first) in [
        ("a forged signature", auth_frame(&forged)),
        ("an expired token", auth_frame(&expired)),
        ("an empty token", auth_frame("")),
        ("not an auth frame", "ping".to_owned()),
        ("no token field", json!({"type": "auth"}).to_string()),
    ] {
        let mut client = awaiting(&node, "").await;
        client.send_text(&first).await;
        assert_eq!(client.closed().await, Closed::Code(4001), "{what}");
    }
    let metrics = node.metrics().await;
    let auth = |cause: &str| {
        metric(
            &metrics,
            &format!("gateway_handshakes_rejected_total{{reason=\"auth\",cause=\"{cause}\"}}"),
        )
    };
    assert_eq!(auth("bad_signature"), 1.0, "{metrics}");
    assert_eq!(auth("expired"), 1.0);
    assert_eq!(auth("missing"), 3.0);
}

#[tokio::test]
async fn no_auth_frame_by_the_handshake_timeout_closes_with_4001() {
    let node = secured(|c| Config {
        handshake_timeout_ms: 1000,
        ..c
    })
    .await;
    let opened = Instant::now();
    let mut silent = awaiting(&node, "").await;
    assert_eq!(
        silent.try_next_json(Duration::from_millis(700)).await,
        None,
        "nothing is sent while the node waits"
    );
    assert_eq!(silent.closed().await, Closed::Code(4001));
    let waited = opened.elapsed();
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(5)).contains(&waited),
        "closed at the timeout, after {waited:?}"
    );
    system_tests::eventually("its place is given back", || async {
        (node.local_connections().await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_claims_of_a_frame_token_bound_types_and_connections_per_user() {
    let node = secured(|c| Config {
        max_connections_per_user: 1,
        ..c
    })
    .await;
    let alerts_only = hs256(&json!({"sub": "bo", "exp": now() + 300.0, "types": ["alert"]}));
    // 403 at the handshake with ?token=; a policy close once the token
    // comes in a frame.
    let mut asks_more = awaiting(&node, "&types=alert,metrics_update").await;
    asks_more.send_text(&auth_frame(&alerts_only)).await;
    assert_eq!(asks_more.closed().await, Closed::Code(1008));

    let ana = hs256(&json!({"sub": "ana", "exp": now() + 300.0}));
    let mut first = awaiting(&node, "").await;
    first.send_text(&auth_frame(&ana)).await;
    assert_eq!(first.next_json().await["type"], "analytics_update");
    // 429 at the handshake with ?token=; "try again later" by frame.
    let mut second = awaiting(&node, "").await;
    second.send_text(&auth_frame(&ana)).await;
    assert_eq!(second.closed().await, Closed::Code(1013));
    assert_eq!(status(&node, &format!("?token={ana}")).await, 429);
    first.close().await;
    system_tests::eventually("ana's place is given back", || async {
        let mut again = awaiting(&node, "").await;
        again.send_text(&auth_frame(&ana)).await;
        let greeting: Option<Value> = again.try_next_json(Duration::from_secs(2)).await;
        greeting.filter(|g| g["type"] == "analytics_update")
    })
    .await;
    let metrics = node.metrics().await;
    for reason in ["forbidden_type", "user_limit"] {
        assert!(
            metric(
                &metrics,
                &format!("gateway_handshakes_rejected_total{{reason=\"{reason}\"}}")
            ) >= 1.0,
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test]
async fn without_auth_frame_a_handshake_with_no_token_is_still_refused() {
    let node = secured(|c| c).await;
    let token = hs256(&json!({"sub": "ana", "exp": now() + 300.0}));
    assert_eq!(status(&node, "").await, 401);
    assert_eq!(
        status(&node, "?auth=").await,
        401,
        "an empty ?auth= is none"
    );
    assert_eq!(status(&node, "?auth=frame").await, 101);
    assert_eq!(
        status(&node, &format!("?auth=frame&token={token}")).await,
        400,
        "a token in the URL and in a frame: which one?"
    );
    assert_eq!(status(&node, "?auth=cookie").await, 400);
}

#[tokio::test]
async fn with_auth_off_the_auth_frame_is_expected_and_not_judged() {
    let node = Node::default().await;
    let mut client = awaiting(&node, "").await;
    assert_eq!(client.try_next_json(Duration::from_millis(300)).await, None);
    client.send_text(&auth_frame("anything")).await;
    assert_eq!(client.next_json().await["type"], "analytics_update");
}
