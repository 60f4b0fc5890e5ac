//! Who may connect, how many, how fast: each rule through a real node.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Node, config};
use gateway::Config;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use system_tests::{Client, Closed, get, metric, refused_status};

const SECRET: &str = "jwt-test-secret";

fn token(secret: &str, exp_from_now: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"sub": "ops-user", "exp": now + exp_from_now});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn with_a_jwt_secret_only_valid_unexpired_tokens_get_in() {
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        ..config()
    })
    .await;
    let no_exp = encode(
        &Header::default(),
        &json!({"sub": "x"}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let refused = [
        ("missing", String::new()),
        ("malformed", "?token=not.a.jwt".to_owned()),
        (
            "wrongly signed",
            format!("?token={}", token("another-secret", 300)),
        ),
        ("expired", format!("?token={}", token(SECRET, -120))),
        ("without exp", format!("?token={no_exp}")),
    ];
    for (what, query) in refused {
        let result = Client::connect_with_headers(&node.url(&query), &[]).await;
        assert_eq!(refused_status(&result), Some(401), "{what} token");
    }
    let mut client = Client::connect(&node.url(&format!("?token={}", token(SECRET, 300))))
        .await
        .unwrap();
    assert_eq!(client.next_json().await["type"], "analytics_update");
    let bearer = format!("Bearer {}", token(SECRET, 300));
    let mut service = Client::connect_with_headers(&node.url(""), &[("Authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(
        service.next_json().await["type"],
        "analytics_update",
        "a header works for non-browser clients"
    );
    let metrics = get(node.addr, "/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            "gateway_handshakes_rejected_total{reason=\"auth\""
        ),
        5.0
    );
}

#[tokio::test]
async fn a_full_node_refuses_with_503_until_a_place_frees_up() {
    let node = Node::start(Config {
        max_connections: 2,
        ..config()
    })
    .await;
    let first = node.client().await;
    let _second = node.client().await;
    let third = Client::connect_with_headers(&node.url(""), &[]).await;
    assert_eq!(refused_status(&third), Some(503));
    first.close().await;
    let mut retry = None;
    for _ in 0..50 {
        match Client::connect_with_headers(&node.url(""), &[]).await {
            Ok(client) => {
                retry = Some(client);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(retry.is_some(), "a freed place is given to the next client");
}

#[tokio::test]
async fn the_per_ip_limit_sees_through_trusted_proxies_only() {
    let behind_lb = Node::start(Config {
        max_connections_per_ip: 1,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..config()
    })
    .await;
    let url = behind_lb.url("");
    let _alice = Client::connect_with_headers(&url, &[("X-Forwarded-For", "203.0.113.7")])
        .await
        .unwrap();
    let _bob = Client::connect_with_headers(&url, &[("X-Forwarded-For", "198.51.100.9")])
        .await
        .unwrap();
    let alice_again =
        Client::connect_with_headers(&url, &[("X-Forwarded-For", "203.0.113.7")]).await;
    assert_eq!(refused_status(&alice_again), Some(429));

    let exposed = Node::start(Config {
        max_connections_per_ip: 1,
        ..config()
    })
    .await;
    let url = exposed.url("");
    let _first = Client::connect_with_headers(&url, &[("X-Forwarded-For", "203.0.113.7")])
        .await
        .unwrap();
    let forged = Client::connect_with_headers(&url, &[("X-Forwarded-For", "198.51.100.9")]).await;
    assert_eq!(
        refused_status(&forged),
        Some(429),
        "an untrusted peer cannot forge its address"
    );
}

#[tokio::test]
async fn handshakes_faster_than_the_rate_get_429() {
    let node = Node::start(Config {
        handshake_rate_per_ip: 1.0,
        ..config()
    })
    .await;
    let url = node.url("");
    let _a = Client::connect_with_headers(&url, &[]).await.unwrap();
    let _b = Client::connect_with_headers(&url, &[]).await.unwrap();
    let third = Client::connect_with_headers(&url, &[]).await;
    assert_eq!(
        refused_status(&third),
        Some(429),
        "burst of two, then one a second"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        Client::connect_with_headers(&url, &[]).await.is_ok(),
        "allowed again a second later"
    );
}

#[tokio::test]
async fn a_client_flooding_messages_is_closed_with_1008_and_others_are_untouched() {
    let node = Node::start(Config {
        message_rate: 5.0,
        ..config()
    })
    .await;
    let mut flooder = node.client().await;
    let mut calm = node.client().await;
    for _ in 0..30 {
        flooder.send_text("ping").await;
    }
    assert_eq!(flooder.closed().await, Closed::Code(1008));
    calm.send_text("ping").await;
    assert_eq!(calm.next_json().await["data"]["pong"], true);
    let metrics = get(node.addr, "/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            "gateway_connections_closed_total{reason=\"rate_limited\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn with_cors_origins_set_the_nodes_own_origin_still_connects() {
    let listed = Config {
        cors_origins: vec!["https://ops.example.com".into()],
        ..config()
    };
    let node = Node::start(listed.clone()).await;
    let own = format!("http://{}", node.addr);
    let status = |result: &Result<Client, _>| refused_status(result).unwrap_or(101);
    let ok = Client::connect_with_origin(&node.url(""), &own).await;
    assert_eq!(status(&ok), 101, "the node's own page");
    let tls_own = format!("https://{}", node.addr);
    let forged = Client::connect_with_headers(
        &node.url(""),
        &[("Origin", &tls_own), ("X-Forwarded-Proto", "https")],
    )
    .await;
    assert_eq!(
        status(&forged),
        403,
        "X-Forwarded-Proto from an untrusted peer"
    );
    let foreign = Client::connect_with_origin(&node.url(""), "http://evil.example").await;
    assert_eq!(status(&foreign), 403);

    // Behind a trusted TLS-terminating proxy the page's origin is https.
    let behind_lb = Node::start(Config {
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..listed
    })
    .await;
    let tls_own = format!("https://{}", behind_lb.addr);
    let proxied = Client::connect_with_headers(
        &behind_lb.url(""),
        &[("Origin", &tls_own), ("X-Forwarded-Proto", "https")],
    )
    .await;
    assert_eq!(
        status(&proxied),
        101,
        "own origin through the trusted proxy"
    );
}

/// The status line's code of a WebSocket handshake sent as a browser page
/// on `origin` would send it, with `host` as its `Host`.
async fn handshake_status(addr: std::net::SocketAddr, host: &str, origin: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /ws/dashboard HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    raw.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    raw.read_exact(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head);
    head["HTTP/1.1 ".len()..].parse().unwrap()
}

#[tokio::test]
async fn with_cors_origins_set_a_page_on_a_rebound_name_is_refused() {
    let node = Node::start(Config {
        cors_origins: vec!["https://ops.example.com".into()],
        ..config()
    })
    .await;
    let port = node.addr.port();
    // DNS rebinding: the attacker's page on http://evil.example:PORT, its
    // name re-pointed at the node, sends its own name as Host and Origin.
    let rebound = format!("evil.example:{port}");
    assert_eq!(
        handshake_status(node.addr, &rebound, &format!("http://{rebound}")).await,
        403,
        "a page on another name is not the node's own"
    );
    // The node's own page, opened by address or as localhost, still connects.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(
            handshake_status(node.addr, &host, &format!("http://{host}")).await,
            101,
            "{host}"
        );
    }
    // Reached by name, the node's origin is one of CORS_ORIGINS.
    assert_eq!(
        handshake_status(node.addr, "ops.example.com", "https://ops.example.com").await,
        101
    );
    let metrics = get(node.addr, "/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            "gateway_handshakes_rejected_total{reason=\"origin\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn behind_a_proxy_the_per_ip_limit_reads_ports_and_ipv6_blocks() {
    let behind_lb = Node::start(Config {
        max_connections_per_ip: 1,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..config()
    })
    .await;
    let url = behind_lb.url("");
    let connect = |xff: &'static str| {
        let url = url.clone();
        async move { Client::connect_with_headers(&url, &[("X-Forwarded-For", xff)]).await }
    };
    // A proxy that appends ip:port. The client's own entry on the left
    // cannot make it someone else.
    let _alice = connect("203.0.113.7:5000").await.unwrap();
    assert_eq!(
        refused_status(&connect("198.51.100.9, 203.0.113.7:6000").await),
        Some(429),
        "the proxy's ip:port entry names the client"
    );
    let _v6 = connect("[2001:db8:1:2::1]:443").await.unwrap();
    // An entry the proxy wrote that is no address: counted as the proxy,
    // not as the client-supplied entry before it.
    let _unknown = connect("198.51.100.20, unknown").await.unwrap();
    assert_eq!(
        refused_status(&connect("198.51.100.21, unknown").await),
        Some(429),
        "both counted as the proxy"
    );
    // One IPv6 /64 is one client, however many addresses it uses.
    assert_eq!(
        refused_status(&connect("2001:db8:1:2:ffff::9").await),
        Some(429),
        "another address of the same /64"
    );
    let _next_block = connect("2001:db8:1:3::1").await.unwrap();
}
