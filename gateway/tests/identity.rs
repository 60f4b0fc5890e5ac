//! Identity through a real node: tokens signed by RSA, EC and Ed25519 keys made
//! for the test (openssl), every claim refusal, the `types` claim on live events
//! and replays, the per-user cap, and expiry closing a connection with 4001.

mod common;

use common::identity::{KeyPair, SECRET, b64url, claims, hs256, now, status, temp_dir};
use common::{Node, config};
use gateway::Config;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use system_tests::{Client, Closed, get, metric};

#[tokio::test]
async fn tokens_signed_by_rsa_ec_and_ed25519_public_keys_are_accepted() {
    let dir = temp_dir("pem");
    for alg in [
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let pair = KeyPair::generate(&dir, &format!("{alg:?}"), alg);
        let stranger = KeyPair::generate(&dir, &format!("{alg:?}-other"), alg);
        let node = Node::start(Config {
            auth_jwt_public_key_file: Some(pair.public_file.clone()),
            ..config()
        })
        .await;
        let good = pair.sign(None, &claims(300.0));
        assert_eq!(
            status(&node, &format!("?token={good}")).await,
            101,
            "{alg:?}"
        );
        let forged = stranger.sign(None, &claims(300.0));
        assert_eq!(
            status(&node, &format!("?token={forged}")).await,
            401,
            "{alg:?} other key"
        );
        // The public key used as an HMAC secret: the classic confusion.
        let public = std::fs::read(&pair.public_file).unwrap();
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims(300.0),
            &EncodingKey::from_secret(&public),
        )
        .unwrap();
        assert_eq!(
            status(&node, &format!("?token={confused}")).await,
            401,
            "{alg:?} as HS256"
        );
        node.shutdown.cancel();
    }
    // `alg: none`, unsigned.
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        ..config()
    })
    .await;
    let b64 = |v: &Value| b64url(&serde_json::to_vec(v).unwrap());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(300.0))
    );
    assert_eq!(
        status(&node, &format!("?token={none}")).await,
        401,
        "alg none"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn claims_are_checked_as_configured_with_fractional_dates() {
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        auth_jwt_audience: vec!["other".into(), "dashboards".into()],
        auth_jwt_issuer: Some("login".into()),
        ..config()
    })
    .await;
    let t = now();
    let with = |extra: Value| {
        let mut c =
            json!({"sub": "ana", "exp": t + 300.5, "aud": ["api", "dashboards"], "iss": "login"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        hs256(&c)
    };
    let cases = [
        ("good, fractional exp", with(json!({})), 101),
        ("aud as a string", with(json!({"aud": "dashboards"})), 101),
        ("another audience", with(json!({"aud": "api"})), 401),
        ("no aud", with(json!({"aud": null})), 401),
        ("another issuer", with(json!({"iss": "login2"})), 401),
        ("no iss", with(json!({"iss": null})), 401),
        ("nbf an hour ahead", with(json!({"nbf": t + 3600.0})), 401),
        ("nbf within the leeway", with(json!({"nbf": t + 5.0})), 101),
        (
            "expired past the leeway",
            with(json!({"exp": t - 11.0})),
            401,
        ),
        (
            "expired within the leeway",
            with(json!({"exp": t - 5.0})),
            101,
        ),
        ("exp as a string", with(json!({"exp": "soon"})), 401),
        ("exp past any clock", with(json!({"exp": 1e300})), 101),
    ];
    for (what, token, expected) in cases {
        assert_eq!(
            status(&node, &format!("?token={token}")).await,
            expected,
            "{what}"
        );
    }
    // An empty ?token= does not hide a good Authorization header.
    let bearer = format!("Bearer {}", with(json!({})));
    let client =
        Client::connect_with_headers(&node.url("?token="), &[("Authorization", &bearer)]).await;
    assert!(client.is_ok(), "empty ?token= falls back to the header");
    let metrics = node.metrics().await;
    for cause in [
        "audience",
        "issuer",
        "not_yet_valid",
        "expired",
        "malformed",
    ] {
        let series =
            format!("gateway_handshakes_rejected_total{{reason=\"auth\",cause=\"{cause}\"}}");
        assert!(metric(&metrics, &series) >= 1.0, "{series}");
    }
}

#[tokio::test]
async fn the_types_claim_limits_live_events_and_replays() {
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        ..config()
    })
    .await;
    let token = hs256(&json!({"sub": "ana", "exp": now() + 300.0, "types": ["alert"]}));
    assert_eq!(
        status(&node, &format!("?token={token}&types=alert,metrics_update")).await,
        403
    );
    assert_eq!(
        status(&node, &format!("?token={token}&types=alert")).await,
        101
    );

    let mut live = Client::connect(&node.url(&format!("?token={token}")))
        .await
        .unwrap();
    let greeting = live.next_json().await;
    node.publish("metrics_update", json!({"n": 1})).await;
    let alert = node.publish("alert", json!({"n": 2})).await;
    let got = live.next_json().await;
    assert_eq!(
        (got["type"].as_str(), got["id"].as_str()),
        (Some("alert"), Some(alert.as_str()))
    );

    let since = greeting["id"].as_str().expect("the greeting's position");
    let mut resumed = Client::connect(&node.url(&format!("?token={token}&since={since}")))
        .await
        .unwrap();
    resumed.next_json().await; // greeting
    let replayed = resumed.next_json().await;
    assert_eq!(
        replayed["type"], "alert",
        "the metrics_update is not replayed"
    );
    let recovery = resumed.next_json().await;
    assert_eq!(recovery["type"], "recovery");
    assert_eq!(recovery["data"]["replayed"], 1);
    let metrics = node.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "gateway_handshakes_rejected_total{reason=\"forbidden_type\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn a_token_without_analytics_is_greeted_with_an_empty_snapshot_and_its_position() {
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        ..config()
    })
    .await;
    let analytics = node
        .publish("analytics_update", json!({"total_tutors": 42}))
        .await;
    let alerts_only = hs256(&json!({"sub": "ana", "exp": now() + 300.0, "types": ["alert"]}));
    let mut restricted = Client::connect(&node.url(&format!("?token={alerts_only}")))
        .await
        .unwrap();
    let greeting = restricted.next_json().await;
    assert_eq!(greeting["type"], "analytics_update");
    assert_eq!(
        greeting["data"],
        json!({}),
        "the snapshot is not theirs to see"
    );
    assert_eq!(greeting["id"], analytics.as_str(), "still the position");

    let everything = hs256(&json!({"sub": "bo", "exp": now() + 300.0}));
    let mut full = Client::connect(&node.url(&format!("?token={everything}&types=alert")))
        .await
        .unwrap();
    assert_eq!(
        full.next_json().await["data"]["total_tutors"],
        42,
        "?types= alone does not hide the greeting"
    );
}

#[tokio::test]
async fn one_user_may_hold_at_most_max_connections_per_user() {
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        max_connections_per_user: 2,
        ..config()
    })
    .await;
    let ana = hs256(&json!({"sub": "ana", "exp": now() + 300.0}));
    let bo = hs256(&json!({"sub": "bo", "exp": now() + 300.0}));
    let url = |token: &str| node.url(&format!("?token={token}"));
    let first = Client::connect(&url(&ana)).await.unwrap();
    let _second = Client::connect(&url(&ana)).await.unwrap();
    match Client::connect_with_headers(&url(&ana), &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert!(response.headers().contains_key("retry-after"));
        }
        _ => panic!("a third connection for ana is refused"),
    }
    let _other = Client::connect(&url(&bo)).await.unwrap();
    first.close().await;
    system_tests::eventually("ana's place is given back", || async {
        Client::connect(&url(&ana)).await.ok()
    })
    .await;
    let metrics = get(node.addr, "/metrics").await.body;
    assert!(
        metric(
            &metrics,
            "gateway_handshakes_rejected_total{reason=\"user_limit\"}"
        ) >= 1.0
    );
}

#[tokio::test]
async fn a_connection_is_closed_with_4001_when_its_token_expires() {
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        auth_jwt_leeway_secs: 0,
        ..config()
    })
    .await;
    let short = hs256(&claims(1.5));
    let long = hs256(&claims(300.0));
    let mut expiring = Client::connect(&node.url(&format!("?token={short}")))
        .await
        .unwrap();
    let mut staying = Client::connect(&node.url(&format!("?token={long}")))
        .await
        .unwrap();
    expiring.next_json().await;
    staying.next_json().await;
    assert_eq!(expiring.closed().await, Closed::Code(4001));
    staying.send_text("ping").await;
    assert_eq!(
        staying.next_json().await["data"]["pong"],
        true,
        "the other stays"
    );
    let metrics = node.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "gateway_connections_closed_total{reason=\"token_expired\"}"
        ),
        1.0
    );
}
