//! `wss://` at the node (`TLS_CERT_FILE`, `TLS_KEY_FILE`): real TLS clients
//! trusting a test CA, and a certificate renewed on disk while clients stay
//! connected.

use std::time::Duration;

use serde_json::json;
use system_tests::tls::{TestCa, Usage, tls_connect, tls_over};
use system_tests::{GatewayOptions, GatewayProcess, eventually, free_port, metric};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_wss_client_is_dropped_as_slow_like_a_plain_one() {
    let ca = TestCa::new();
    let (node, _) = tls_node(
        &ca,
        &[
            ("PUBLISH_API_KEY", "wss-test-publish-key"),
            ("CLIENT_BUFFER_BYTES", "524288"),
            ("WRITE_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    // The stalled client: a small receive buffer, and no reads after the greeting.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(node.addr).await.unwrap();
    let (tls, _) = tls_over(tcp, ca.client_config()).await.unwrap();
    let (mut stalled, _) = tokio_tungstenite::client_async(node.ws_url(""), tls)
        .await
        .unwrap();
    let _ = futures_util::StreamExt::next(&mut stalled).await;
    let events = 48;
    let mut reader = node.client("").await.unwrap();
    reader.next_json().await;
    let reader = tokio::spawn(async move {
        for n in 0..events {
            assert_eq!(
                reader.next_json().await["data"]["n"],
                n,
                "a reader gets all"
            );
        }
        reader
    });

    // 1.5 MB: far more than a capped socket holds plus the 512 KiB the node
    // lets this client have unsent; far less than an uncapped loopback relay
    // soaks up (4 MB), which the node would never see as unsent at all.
    let pad = "x".repeat(32 * 1024);
    for n in 0..events {
        let accepted = node
            .publish(
                "wss-test-publish-key",
                "metrics_update",
                &json!({"n": n, "pad": pad}),
            )
            .await;
        assert_eq!(accepted.status, 202, "{}", accepted.body);
    }
    let _reader = reader.await.unwrap();
    eventually("the stalled wss client to be dropped as slow", || async {
        let status = node.get("/ws/status").await.ok()?.json();
        let metrics = node.get("/metrics").await.ok()?.body;
        (status["local_connections"] == 1
            && metric(&metrics, "gateway_slow_client_disconnects_total") >= 1.0)
            .then_some(())
    })
    .await;
    drop(stalled);
}

/// The local ports of the TCP sockets process `pid` holds (IPv4 and IPv6).
fn tcp_ports_of(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if inodes.iter().any(|inode| inode == fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

#[tokio::test]
async fn a_wss_connection_is_relayed_through_no_loopback_port() {
    let ca = TestCa::new();
    let (node, _) = tls_node(&ca, &[]).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = node.client("").await.unwrap();
        assert_eq!(client.next_json().await["type"], "analytics_update");
        clients.push(client);
    }
    // Every TCP socket the node holds is its listener or a client's
    // connection to it: no port of its own on loopback that another local
    // process could connect to first and read a TLS client's plaintext.
    let ports = tcp_ports_of(node.pid());
    assert!(
        ports.len() >= 4,
        "the listener and three clients: {ports:?}"
    );
    assert!(
        ports.iter().all(|&port| port == node.addr.port()),
        "TCP sockets on other ports than the node's own {}: {ports:?}",
        node.addr.port()
    );
    for client in &mut clients {
        client.send_text("ping").await;
        assert_eq!(client.next_json().await["data"]["pong"], true);
    }
}
