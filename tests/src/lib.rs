//! Test kit shared by the gateway's tests and the system tests: real
//! sockets, a real `redis-server` on a free port, real gateway processes.
//! No mocks: what these helpers talk to is what users run.
//!
//! # Layout
//! - [`http`]: a minimal HTTP/1.1 client (one request per connection).
//! - [`Client`]: a WebSocket client that reads envelopes as JSON (module
//!   `client`).
//! - [`RedisServer`]: `redis-server` on a free loopback port, killed on drop
//!   (module `redis_server`).
//! - [`GatewayProcess`]: the built `gateway` binary as a child process;
//!   [`publisher_cli`]: runs the built `publisher` binary (module `process`).
//! - [`RedisCluster`]: a real 3-master, 3-replica Redis Cluster (module
//!   `redis_cluster`).
//! - [`tls`]: a throwaway CA ([`tls::TestCa`]) issuing server and client
//!   certificates, and HTTPS/TLS client helpers.
//! - `redis_tls`: [`RedisServer::start_tls`] (TLS only, optionally mutual)
//!   and [`RedisServer::start_acl`] (an ACL user, the default user off).
//! - [`sse::SseStream`]: a Server-Sent Events reader (`/sse/dashboard`).
//! - [`deflate::DeflateClient`]: a raw WebSocket client that offers
//!   permessage-deflate and shows what is on the wire.
//! - [`RedisSentinel`]: a master, a replica and three Sentinels (module
//!   `redis_sentinel`), for failovers.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::net::TcpStream;

mod client;
pub mod deflate;
mod process;
mod redis_cluster;
pub mod redis_sentinel;
mod redis_server;
mod redis_tls;
pub mod sse;
pub mod state;
pub mod tls;
pub use client::{Client, Closed, refused_status};
pub use process::{GatewayOptions, GatewayProcess, bin_dir, publisher_cli};
pub use redis_cluster::RedisCluster;
pub use redis_sentinel::RedisSentinel;
pub use redis_server::{RedisServer, send};

/// How long any single expected thing may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A `redis-server` command on loopback `port` that keeps nothing on disk.
pub fn redis_server(port: u16) -> Command {
    let mut command = Command::new("redis-server");
    command.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    command
}

/// Blocks until something accepts connections on loopback `port`.
pub fn wait_for_port(port: u16, what: &str) {
    wait_for_listener(port, what, None);
}

/// The same for `child`, just spawned to listen there: one that exits
/// meanwhile (its port taken) fails at once, with its exit status.
pub fn wait_for_child_port(port: u16, what: &str, child: &mut std::process::Child) {
    wait_for_listener(port, what, Some(child));
}

fn wait_for_listener(port: u16, what: &str, mut child: Option<&mut std::process::Child>) {
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(Ok(Some(status))) = child.as_mut().map(|c| c.try_wait()) {
            panic!("{what} on port {port} exited ({status}): its port was taken?");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it returns `Some`, or fails after `PATIENCE`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on its own connection, through hyper's client (so
/// chunked or keep-alive responses read as any client reads them).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpResponse> {
    use http_body_util::BodyExt;
    let mut sender = http1(addr).await?;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(http_body_util::Full::new(bytes::Bytes::from(
        body.to_owned(),
    )))?;
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .context("HTTP response timed out")??;
    let status = response.status().as_u16();
    let head: String = response
        .headers()
        .iter()
        .map(|(name, value)| format!("{name}: {}\r\n", String::from_utf8_lossy(value.as_bytes())))
        .collect();
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .context("HTTP body timed out")??
        .to_bytes();
    Ok(HttpResponse {
        status,
        headers: head,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// An HTTP/1.1 connection to `addr` (hyper's client), ready for a request
/// with a full body; its connection task runs until it closes.
pub async fn http1(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

pub async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http(addr, "GET", path, &[], "").await.expect("GET")
}

/// `POST /api/publish` with a bearer key.
pub async fn publish(addr: SocketAddr, key: &str, kind: &str, data: &Value) -> HttpResponse {
    let body = serde_json::json!({"type": kind, "data": data}).to_string();
    let auth = format!("Bearer {key}");
    http(
        addr,
        "POST",
        "/api/publish",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .await
    .expect("POST /api/publish")
}

/// The value of one Prometheus sample line (`name{labels} value`), summed
/// over lines that start with `series`.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
