//! The workspace's built binaries as child processes: [`GatewayProcess`]
//! (a node, started on a free port and waited for), [`publisher_cli`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;

use crate::{
    Client, HttpResponse, PATIENCE, RedisServer, eventually, free_port, http, publish, tls,
};

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
