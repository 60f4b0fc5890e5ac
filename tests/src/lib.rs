//! Test kit shared by the gateway's tests and the system tests: real
//! sockets, a real `redis-server` on a free port, real gateway processes.
//! No mocks: what these helpers talk to is what users run.
//!
//! # Layout
//! - [`http`]: a minimal HTTP/1.1 client (one request per connection).
//! - [`Client`]: a WebSocket client that reads envelopes as JSON.
//! - [`RedisServer`]: `redis-server` on a free loopback port, killed on drop.
//! - [`GatewayProcess`]: the built `gateway` binary as a child process.
//! - [`publisher_cli`]: runs the built `publisher` binary.
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
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod deflate;
mod redis_cluster;
pub mod redis_sentinel;
mod redis_tls;
pub mod sse;
pub mod state;
pub mod tls;
pub use redis_cluster::RedisCluster;
pub use redis_sentinel::RedisSentinel;

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
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
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

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A dashboard client.
pub struct Client {
    ws: Ws,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Code(u16),
    /// The TCP connection ended without a close frame.
    Dropped,
}

impl Client {
    pub async fn connect(url: &str) -> Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("connect {url}"))?;
        Ok(Self { ws })
    }

    /// Connects to a `wss://` URL trusting `config` (e.g.
    /// [`tls::TestCa::client_config`]).
    pub async fn connect_tls(
        url: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(config)),
        )
        .await
        .with_context(|| format!("connect {url}"))?;
        Ok(Self { ws })
    }

    /// The certificate the server presented (DER), on a `wss://` connection.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self.ws.get_ref() {
            MaybeTlsStream::Rustls(stream) => stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.to_vec()),
            _ => None,
        }
    }

    pub async fn connect_with_origin(
        url: &str,
        origin: &str,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        Self::connect_with_headers(url, &[("Origin", origin)]).await
    }

    /// Connects with extra handshake headers; the error keeps the HTTP
    /// response of a refused handshake (its status).
    pub async fn connect_with_headers(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::HeaderName;
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            let name: HeaderName = name.parse().expect("header name");
            request
                .headers_mut()
                .append(name, value.parse().expect("header value"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self { ws })
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn send(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next text frame as JSON; fails the test after `PATIENCE`.
    pub async fn next_json(&mut self) -> Value {
        self.try_next_json(PATIENCE)
            .await
            .expect("a message within the patience window")
    }

    /// The next text frame as JSON, or `None` if none comes within `wait`
    /// (or the connection ends).
    pub async fn try_next_json(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
                .ok()?;
            match message {
                Message::Text(text) => {
                    return Some(
                        serde_json::from_str(&text)
                            .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}")),
                    );
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads until a message of `kind`, returning it (others are skipped).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let message = self.next_json().await;
            if message["type"] == kind {
                return message;
            }
        }
    }

    /// Reads until the connection ends; how it ended.
    pub async fn closed(&mut self) -> Closed {
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the connection should end")
            {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map_or(Closed::Code(1005), |f| Closed::Code(u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Closed::Dropped,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

/// The HTTP status a refused handshake got (`None` if it was accepted or
/// failed otherwise).
pub fn refused_status(
    result: &Result<Client, tokio_tungstenite::tungstenite::Error>,
) -> Option<u16> {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Some(response.status().as_u16())
        }
        _ => None,
    }
}

/// Where cargo put this workspace's binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("GATEWAY_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // This test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf()
}

fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`), as the README's test command does",
        path.display()
    );
    path
}

/// A real `redis-server` on a free loopback port; never a standard one.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Extra `redis-server` options (TLS, ACL users, replication).
    args: Vec<String>,
    /// What `redis-cli` needs to reach it (TLS files, credentials).
    cli_args: Vec<String>,
    /// `redis` or `rediss`.
    scheme: &'static str,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(free_port(), Vec::new(), Vec::new(), "redis")
    }

    /// Starts `redis-server` on `port` with extra `args`; `cli_args` are
    /// what `redis-cli` needs to talk to it.
    pub fn start_with(
        port: u16,
        args: Vec<String>,
        cli_args: Vec<String>,
        scheme: &'static str,
    ) -> Self {
        let mut server = Self {
            port,
            child: None,
            args,
            cli_args,
            scheme,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` for a TLS server), no credentials.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    fn spawn(&mut self) {
        let child = redis_server(self.port)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (the README's test command installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the server (all data is lost: it keeps nothing on disk).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs a `redis-cli` command against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(&self.cli_args)
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Locks every client that did not log in (gateways among them) out:
    /// the default user is turned off and its connections killed, while an
    /// `admin` user keeps working. Returns the admin's URL, for publishers
    /// that must go on meanwhile; [`Self::admin_cli`] runs commands as it and
    /// [`Self::let_default_user_back`] ends the lock-out.
    pub fn lock_out_default_user(&self) -> String {
        self.cli(&["ACL", "SETUSER", "admin", "on", ">pw", "~*", "&*", "+@all"]);
        self.cli(&["ACL", "SETUSER", "default", "off"]);
        self.admin_cli(&["CLIENT", "KILL", "USER", "default"]);
        self.url().replace("redis://", "redis://admin:pw@")
    }

    /// Runs a `redis-cli` command as the `admin` of [`Self::lock_out_default_user`].
    pub fn admin_cli(&self, args: &[&str]) -> String {
        let admin = ["--user", "admin", "--pass", "pw", "--no-auth-warning"];
        self.cli(&[&admin[..], args].concat())
    }

    pub fn let_default_user_back(&self) {
        self.admin_cli(&["ACL", "SETUSER", "default", "on"]);
    }
}

/// `publisher send` of one event to `redis` (more settings in `env`); the
/// event's position, as the CLI printed it.
pub fn send(redis: &RedisServer, kind: &str, data: &Value, env: &[(&str, &str)]) -> String {
    let url = redis.url();
    let mut all = vec![("REDIS_URL", url.as_str())];
    all.extend_from_slice(env);
    let output = publisher_cli(&["send", "--type", kind, "--data", &data.to_string()], &all);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The built `gateway` binary, running as a child process.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    child: Option<Child>,
    /// Set when the node serves TLS: the client settings that trust it.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Where its log (stderr) goes, when captured.
    log: Option<PathBuf>,
}

/// How a [`GatewayProcess`] is started beyond its environment.
#[derive(Default)]
pub struct GatewayOptions {
    /// The node serves TLS (`TLS_CERT_FILE` in its env); health checks and
    /// [`GatewayProcess::ws_url`] use TLS, trusting these settings.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Capture stderr at `RUST_LOG=info` for [`GatewayProcess::logs`].
    pub capture_log: bool,
}

impl GatewayProcess {
    /// Starts `gateway` on a free port with `env` and waits for `/healthz`.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        Self::start_on(free_port(), env).await
    }

    /// Starts a node on `redis` (more settings in `env`) and waits until it
    /// is ready (subscribed).
    pub async fn on_redis(redis: &RedisServer, env: &[(&str, &str)]) -> Self {
        let url = redis.url();
        let mut all = vec![("REDIS_URL", url.as_str())];
        all.extend_from_slice(env);
        let node = Self::start(&all).await;
        node.wait_ready(200).await;
        node
    }

    /// Starts `gateway` on a free port with `env`, its log captured (at
    /// `RUST_LOG=info`) for [`GatewayProcess::logs`].
    pub async fn logged(env: &[(&str, &str)]) -> Self {
        let options = GatewayOptions {
            capture_log: true,
            ..GatewayOptions::default()
        };
        Self::launch(free_port(), env, options).await
    }

    pub async fn start_on(port: u16, env: &[(&str, &str)]) -> Self {
        Self::launch(port, env, GatewayOptions::default()).await
    }

    pub async fn launch(port: u16, env: &[(&str, &str)], options: GatewayOptions) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut command = Command::new(binary("gateway"));
        let log_level = if options.capture_log {
            "info".to_owned()
        } else {
            std::env::var("GATEWAY_LOG").unwrap_or_else(|_| "warn".into())
        };
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BIND_ADDR", addr.to_string())
            .env("RUST_LOG", log_level)
            .stdout(Stdio::null());
        let log = options.capture_log.then(|| {
            std::env::temp_dir().join(format!("gateway-{}-{port}.log", std::process::id()))
        });
        if let Some(log) = &log {
            command.stderr(std::fs::File::create(log).expect("log file"));
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("gateway starts");
        let process = Self {
            addr,
            child: Some(child),
            tls: options.tls,
            log,
        };
        process.wait_status("/healthz", 200).await;
        process
    }

    /// `ws://` or, when the node serves TLS, `wss://`.
    pub fn ws_url(&self, query: &str) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}/ws/dashboard{query}", self.addr)
    }

    /// A dashboard client of this node (over TLS when it serves TLS).
    pub async fn client(&self, query: &str) -> Result<Client> {
        match &self.tls {
            Some(config) => Client::connect_tls(&self.ws_url(query), config.clone()).await,
            None => Client::connect(&self.ws_url(query)).await,
        }
    }

    /// `GET path` (over TLS when the node serves TLS).
    pub async fn get(&self, path: &str) -> Result<HttpResponse> {
        match &self.tls {
            Some(config) => tls::https_get(self.addr, path, config.clone()).await,
            None => http(self.addr, "GET", path, &[], "").await,
        }
    }

    /// `POST /api/publish` with a bearer key (over TLS when the node serves
    /// TLS).
    pub async fn publish(&self, key: &str, kind: &str, data: &Value) -> HttpResponse {
        match &self.tls {
            Some(config) => {
                let body = serde_json::json!({"type": kind, "data": data}).to_string();
                let auth = format!("Bearer {key}");
                let headers = [
                    ("Authorization", auth.as_str()),
                    ("Content-Type", "application/json"),
                ];
                tls::https(
                    self.addr,
                    "POST",
                    "/api/publish",
                    &headers,
                    &body,
                    config.clone(),
                )
                .await
                .expect("POST /api/publish")
            }
            None => publish(self.addr, key, kind, data).await,
        }
    }

    /// What the node logged so far (with [`GatewayOptions::capture_log`]).
    pub fn logs(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    }

    async fn wait_status(&self, path: &str, status: u16) {
        eventually(
            &format!("{path} {status} on {}", self.addr),
            || async move { self.get(path).await.ok().filter(|r| r.status == status) },
        )
        .await;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal (`STOP`, `CONT`) and returns at once.
    pub fn signal_only(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// Sends a signal (`TERM`, `KILL`) and waits for the exit, returning it.
    pub fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not exit after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `/readyz` to answer `status`.
    pub async fn wait_ready(&self, status: u16) {
        self.wait_status("/readyz", status).await;
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(log) = &self.log {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// Runs the built `publisher` CLI with `env`.
pub fn publisher_cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary("publisher"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("publisher runs")
}
