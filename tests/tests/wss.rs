//! `wss://` at the node (`TLS_CERT_FILE`, `TLS_KEY_FILE`): real TLS clients
//! trusting a test CA, and a certificate renewed on disk while clients stay
//! connected.

use std::time::Duration;

use system_tests::tls::{TestCa, Usage, tls_connect};
use system_tests::{GatewayOptions, GatewayProcess, eventually, free_port};
use tokio::io::AsyncReadExt;

async fn tls_node(
    ca: &TestCa,
    extra: &[(&str, &str)],
) -> (GatewayProcess, system_tests::tls::CertFiles) {
    let first = ca.issue("node", Usage::Server);
    let cert = first.cert.to_string_lossy().into_owned();
    let key = first.key.to_string_lossy().into_owned();
    let mut env = vec![
        ("TLS_CERT_FILE", cert.as_str()),
        ("TLS_KEY_FILE", key.as_str()),
    ];
    env.extend_from_slice(extra);
    let node = GatewayProcess::launch(
        free_port(),
        &env,
        GatewayOptions {
            tls: Some(ca.client_config()),
            capture_log: true,
        },
    )
    .await;
    (node, first)
}

#[tokio::test]
async fn a_node_serves_wss_and_a_renewed_certificate_without_dropping_anyone() {
    let ca = TestCa::new();
    let (node, first) = tls_node(&ca, &[]).await;
    assert_eq!(node.get("/healthz").await.unwrap().status, 200);
    let mut old = node.client("").await.unwrap();
    assert_eq!(old.next_json().await["type"], "analytics_update");
    assert_eq!(old.peer_certificate().unwrap(), first.der);

    // Renewed in place, as cert-manager or certbot do.
    let second = ca.issue_to(&first.cert, &first.key, "node", Usage::Server);
    assert_ne!(second.der, first.der);
    let config = ca.client_config();
    eventually("new connections to get the renewed certificate", || {
        let config = config.clone();
        let expected = second.der.clone();
        async move {
            let (_, der) = tls_connect(node.addr, config).await.ok()?;
            (der == expected).then_some(())
        }
    })
    .await;
    let mut new = node.client("").await.unwrap();
    new.next_json().await;
    assert_eq!(new.peer_certificate().unwrap(), second.der);

    // The connection made before the renewal is still up and served.
    old.send_text("ping").await;
    assert_eq!(old.next_json().await["data"]["pong"], true);

    // A renewal that does not parse is logged (at the next handshake that
    // looks at the files); the node keeps serving the certificate it has.
    std::fs::write(&first.cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    eventually("the failed reload to be logged", || {
        let config = config.clone();
        let expected = second.der.clone();
        let node = &node;
        async move {
            let (_, der) = tls_connect(node.addr, config).await.ok()?;
            assert_eq!(der, expected, "a broken renewal replaced the certificate");
            node.logs().contains("not reloaded").then_some(())
        }
    })
    .await;
    assert!(node.logs().contains("TLS certificate reloaded"));
}

#[tokio::test]
async fn a_silent_tls_client_is_closed_after_the_handshake_timeout() {
    let ca = TestCa::new();
    let (node, _) = tls_node(&ca, &[("HANDSHAKE_TIMEOUT_MS", "300")]).await;
    let mut silent = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf))
        .await
        .expect("the node closes a client that never starts TLS");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Meanwhile the node serves everyone else.
    assert_eq!(node.get("/healthz").await.unwrap().status, 200);
}

#[tokio::test]
async fn a_plain_http_client_on_the_tls_port_is_refused_and_the_node_stays_up() {
    let ca = TestCa::new();
    let (node, _) = tls_node(&ca, &[]).await;
    let plain = system_tests::http(node.addr, "GET", "/healthz", &[], "").await;
    assert!(plain.map_or(true, |r| r.status != 200));
    assert_eq!(node.get("/healthz").await.unwrap().status, 200);
}
