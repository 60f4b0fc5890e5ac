//! Hostile clients cost nothing: the WebSocket close handshake (RFC 6455)
//! and control-frame floods, through a real node with a raw TCP client
//! (a WebSocket library would hide or refuse to send these frames).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Node, config};
use gateway::Config;
use system_tests::{eventually, metric};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A WebSocket opened by hand: the upgrade request, and the 101 read.
async fn raw_socket(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /ws/dashboard HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// One masked client frame (zero mask key: the payload goes as is).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    out.extend_from_slice(payload);
    out
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(0x8, &payload)
}

/// Reads server frames until a close frame: its code, or `None` when the
/// connection ends without one.
async fn close_code(stream: &mut TcpStream) -> Option<u16> {
    let read = async {
        loop {
            let first = stream.read_u8().await.ok()?;
            let len = match stream.read_u8().await.ok()? & 0x7f {
                126 => usize::from(stream.read_u16().await.ok()?),
                127 => stream.read_u64().await.ok()? as usize,
                n => usize::from(n),
            };
            let mut payload = vec![0; len];
            stream.read_exact(&mut payload).await.ok()?;
            if first & 0x0f == 0x8 {
                return Some(u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    };
    timeout(Duration::from_secs(5), read)
        .await
        .expect("the server answers")
}

#[tokio::test]
async fn a_clients_close_frame_is_answered_with_its_code() {
    let node = Node::default().await;
    for code in [1000, 1001, 4000] {
        let mut socket = raw_socket(node.addr).await;
        socket.write_all(&close_frame(code, b"bye")).await.unwrap();
        assert_eq!(close_code(&mut socket).await, Some(code));
    }
}

#[tokio::test]
async fn a_protocol_violation_is_closed_with_1002_and_bad_utf8_with_1007() {
    let node = Node::default().await;
    for bad in [999, 1004, 1005, 5000] {
        let mut socket = raw_socket(node.addr).await;
        socket.write_all(&close_frame(bad, b"")).await.unwrap();
        assert_eq!(
            close_code(&mut socket).await,
            Some(1002),
            "close code {bad}"
        );
    }
    let mut socket = raw_socket(node.addr).await;
    socket.write_all(&frame(0x1, &[0xff, 0xfe])).await.unwrap();
    assert_eq!(close_code(&mut socket).await, Some(1007));
}

#[tokio::test]
async fn a_ping_flood_is_closed_with_1008_and_the_close_frame_arrives() {
    let node = Node::start(Config {
        message_rate: 5.0,
        ..config()
    })
    .await;
    let mut socket = raw_socket(node.addr).await;
    // Far past the allowance, all at once: unread input is pending when the
    // node closes, which must not turn the close frame into a reset.
    let flood: Vec<u8> = (0..200).flat_map(|_| frame(0x9, b"")).collect();
    socket.write_all(&flood).await.unwrap();
    assert_eq!(close_code(&mut socket).await, Some(1008));
    // Counted once the closing handshake has had its time.
    eventually("the close to be counted", || async {
        let text = node.metrics().await;
        (metric(
            &text,
            "gateway_connections_closed_total{reason=\"rate_limited\"}",
        ) == 1.0)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_connection_that_never_completes_its_request_head_is_closed() {
    let node = Node::start(Config {
        handshake_timeout_ms: 300,
        ..config()
    })
    .await;
    let mut silent = TcpStream::connect(node.addr).await.unwrap();
    let mut half = TcpStream::connect(node.addr).await.unwrap();
    half.write_all(b"GET /ws/dashboard HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for stream in [&mut silent, &mut half] {
        let mut byte = [0u8; 1];
        let read = timeout(Duration::from_secs(3), stream.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "closed by the node, not left open: {read:?}"
        );
    }
}

#[tokio::test]
async fn a_flood_of_silent_connections_from_one_address_leaves_health_checks_answered() {
    let node = Node::default().await;
    let mut flood = Vec::new();
    for _ in 0..400 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        flood.push(socket.connect(node.addr).await.unwrap());
    }
    let health = timeout(
        Duration::from_secs(3),
        system_tests::get(node.addr, "/healthz"),
    )
    .await
    .expect("/healthz answers under the flood");
    assert_eq!(health.status, 200);
    let mut client = timeout(Duration::from_secs(3), node.client())
        .await
        .expect("a dashboard still gets in");
    drop(flood);
    client.send_text("ping").await;
}
