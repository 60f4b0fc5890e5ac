//! An in-process gateway node on `127.0.0.1:0`, shared by the test files.

#![allow(dead_code)]

pub mod identity;

use std::net::SocketAddr;
use std::sync::Arc;

use gateway::{AppState, Config};
use serde_json::Value;
use system_tests::{Client, get};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "test-publish-key-0123";

pub struct Node {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub shutdown: CancellationToken,
    pub served: JoinHandle<Result<(), gateway::GatewayError>>,
}

impl Node {
    pub async fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let state = gateway::start(config, shutdown.clone()).unwrap();
        let served = tokio::spawn(gateway::serve(listener, state.clone()));
        Self {
            addr,
            state,
            shutdown,
            served,
        }
    }

    pub async fn default() -> Self {
        Self::start(config()).await
    }

    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/ws/dashboard{query}", self.addr)
    }

    pub async fn client(&self) -> Client {
        let mut client = Client::connect(&self.url("")).await.unwrap();
        let greeting = client.next_json().await;
        assert_eq!(greeting["type"], "analytics_update");
        client
    }

    /// Publishes through the node's own `/api/publish`, as a backend job
    /// without Redis would; the event's id.
    pub async fn publish(&self, kind: &str, data: Value) -> String {
        let accepted = system_tests::publish(self.addr, KEY, kind, &data).await;
        assert_eq!(accepted.status, 202, "{}", accepted.body);
        accepted.json()["id"].as_str().unwrap().to_owned()
    }

    /// `POST /api/publish` of `body` as written, with the node's key.
    pub async fn post(&self, body: &str) -> system_tests::HttpResponse {
        let auth = format!("Bearer {KEY}");
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        system_tests::http(self.addr, "POST", "/api/publish", &headers, body)
            .await
            .expect("POST /api/publish")
    }

    pub async fn metrics(&self) -> String {
        get(self.addr, "/metrics").await.body
    }

    pub async fn local_connections(&self) -> u64 {
        get(self.addr, "/ws/status").await.json()["local_connections"]
            .as_u64()
            .unwrap()
    }
}

pub fn config() -> Config {
    Config {
        publish_api_key: Some(KEY.into()),
        ..Config::default()
    }
}
