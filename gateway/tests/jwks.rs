//! An identity provider's keys through a real node: a JWKS served by a local
//! HTTP server whose keys rotate (and that fails), one served over TLS by a test
//! CA, and HS256 service tokens beside them.

mod common;

use std::sync::atomic::Ordering;

use common::identity::{
    JwksServer, KeyPair, SECRET, claims, https_server, now, status, temp_dir, test_ca,
};
use common::{Node, config};
use gateway::Config;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use system_tests::{Client, get, metric, refused_status};

#[tokio::test]
async fn a_jwks_is_followed_through_key_rotation_without_hammering_the_idp() {
    let dir = temp_dir("jwks");
    let first = KeyPair::generate(&dir, "first", Algorithm::RS256);
    let second = KeyPair::generate(&dir, "second", Algorithm::ES256);
    let idp = JwksServer::start(vec![first.jwk("k1")]).await;
    let node = Node::start(Config {
        auth_jwks_url: Some(idp.url.clone()),
        auth_jwt_audience: vec!["dashboards".into()],
        auth_jwt_issuer: Some("https://idp.example.com/".into()),
        ..config()
    })
    .await;
    let idp_claims = |exp_in: f64| json!({"sub": "ana", "exp": now() + exp_in, "aud": "dashboards", "iss": "https://idp.example.com/"});
    let t1 = first.sign(Some("k1"), &idp_claims(300.0));
    assert_eq!(
        status(&node, &format!("?token={t1}")).await,
        101,
        "the first key"
    );
    assert_eq!(idp.hits(), 1, "fetched once at start");

    // The IdP rotates: k1 out, k2 in. A token naming k2 makes the node refetch.
    idp.serve(vec![second.jwk("k2")]);
    let t2 = second.sign(Some("k2"), &idp_claims(300.0));
    assert_eq!(
        status(&node, &format!("?token={t2}")).await,
        101,
        "the rotated-in key"
    );
    assert_eq!(idp.hits(), 2);
    let t1_again = first.sign(Some("k1"), &idp_claims(300.0));
    assert_eq!(
        status(&node, &format!("?token={t1_again}")).await,
        401,
        "k1 was rotated out"
    );

    // Made-up kids: refused, and the IdP is not asked again within 30 s.
    for kid in ["bogus-1", "bogus-2", "bogus-3"] {
        let bogus = second.sign(Some(kid), &idp_claims(300.0));
        assert_eq!(
            status(&node, &format!("?token={bogus}")).await,
            401,
            "{kid}"
        );
    }
    assert_eq!(idp.hits(), 2, "no refetch storm");

    let metrics = node.metrics().await;
    assert!(metric(&metrics, "gateway_jwks_refresh_total{result=\"ok\"}") >= 2.0);
    assert!(
        metric(
            &metrics,
            "gateway_handshakes_rejected_total{reason=\"auth\",cause=\"unknown_key\"}"
        ) >= 4.0,
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_failed_jwks_fetch_keeps_the_keys_already_held() {
    let dir = temp_dir("jwks-down");
    let pair = KeyPair::generate(&dir, "held", Algorithm::EdDSA);
    let idp = JwksServer::start(vec![pair.jwk("k1")]).await;
    let node = Node::start(Config {
        auth_jwks_url: Some(idp.url.clone()),
        ..config()
    })
    .await;
    let held = pair.sign(Some("k1"), &claims(300.0));
    assert_eq!(status(&node, &format!("?token={held}")).await, 101);
    idp.failing.store(true, Ordering::SeqCst);
    let unknown = pair.sign(Some("k9"), &claims(300.0));
    assert_eq!(status(&node, &format!("?token={unknown}")).await, 401);
    assert_eq!(idp.hits(), 2, "the unknown kid made the node ask");
    assert_eq!(
        status(&node, &format!("?token={held}")).await,
        101,
        "k1 still held"
    );
    let metrics = node.metrics().await;
    assert!(metric(&metrics, "gateway_jwks_refresh_total{result=\"error\"}") >= 1.0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_https_jwks_is_fetched_over_tls_trusting_the_os_roots() {
    let dir = temp_dir("https");
    let (ca, cert, key) = test_ca(&dir);
    let pair = KeyPair::generate(&dir, "idp", Algorithm::RS256);
    let set = serde_json::to_string(&JwkSet {
        keys: vec![pair.jwk("k1")],
    })
    .unwrap();
    let port = https_server(&cert, &key, set).await;
    // The real binary: SSL_CERT_FILE is how the OS trust store is widened, and a
    // test process may not set its own environment.
    let url = format!("https://localhost:{port}/.well-known/jwks.json");
    let node = system_tests::GatewayProcess::start(&[
        ("AUTH_JWKS_URL", url.as_str()),
        ("SSL_CERT_FILE", ca.to_str().unwrap()),
    ])
    .await;
    let token = pair.sign(Some("k1"), &claims(300.0));
    let mut client = system_tests::eventually("a token the https JWKS vouches for", || {
        let url = node.ws_url(&format!("?token={token}"));
        async move { Client::connect(&url).await.ok() }
    })
    .await;
    assert_eq!(client.next_json().await["type"], "analytics_update");
    let metrics = get(node.addr, "/metrics").await.body;
    assert_eq!(
        metric(&metrics, "gateway_jwks_refresh_total{result=\"ok\"}"),
        1.0
    );

    // A node that does not trust that CA gets no keys from it: the token is refused.
    let stranger_dir = dir.join("other-ca");
    std::fs::create_dir_all(&stranger_dir).unwrap();
    let (other_ca, _, _) = test_ca(&stranger_dir);
    let wary = system_tests::GatewayProcess::start(&[
        ("AUTH_JWKS_URL", url.as_str()),
        ("SSL_CERT_FILE", other_ca.to_str().unwrap()),
    ])
    .await;
    system_tests::eventually("the failed TLS fetch is counted", || async {
        let metrics = get(wary.addr, "/metrics").await.body;
        (metric(&metrics, "gateway_jwks_refresh_total{result=\"error\"}") >= 1.0).then_some(())
    })
    .await;
    let refused = Client::connect_with_headers(&wary.ws_url(&format!("?token={token}")), &[]).await;
    assert_eq!(refused_status(&refused), Some(401));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn service_tokens_and_idp_tokens_work_side_by_side() {
    let dir = temp_dir("both");
    let pair = KeyPair::generate(&dir, "idp", Algorithm::ES256);
    let idp = JwksServer::start(vec![pair.jwk("k1")]).await;
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        auth_jwks_url: Some(idp.url.clone()),
        ..config()
    })
    .await;
    let from_idp = pair.sign(Some("k1"), &claims(300.0));
    assert_eq!(status(&node, &format!("?token={from_idp}")).await, 101);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("svc".into());
    let service = encode(
        &header,
        &claims(300.0),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(status(&node, &format!("?token={service}")).await, 101);
    assert_eq!(
        idp.hits(),
        1,
        "an HS256 token's kid never sends the node to the IdP"
    );
    let _ = std::fs::remove_dir_all(dir);
}
