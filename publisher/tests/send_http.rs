//! `publisher send --url`: the request a gateway receives (real HTTP on
//! loopback, from a stand-in node that records it) and the exit codes a
//! script sees for 202, 401, another refusal and no gateway at all.

use std::process::Output;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::any;

/// What a round trip would rewrite: key order, `1.50`, `1e3`, an escape.
const DATA: &str = r#"{"z": 1.50, "a":[1e3,"caf\u00e9"],"nested":{"b":2,"a":1}}"#;

#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Bytes,
}

#[derive(Clone)]
struct Node {
    answer: (StatusCode, &'static str),
    received: Arc<Mutex<Vec<Received>>>,
}

/// A stand-in node on `127.0.0.1:0` answering every request with `answer`.
async fn node(status: StatusCode, body: &'static str) -> (String, Arc<Mutex<Vec<Received>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let state = Node {
        answer: (status, body),
        received: received.clone(),
    };
    let app = Router::new()
        .fallback(any(
            |State(node): State<Node>,
             method: Method,
             uri: Uri,
             headers: HeaderMap,
             body: Bytes| async move {
                let header = |name| {
                    headers
                        .get(name)
                        .map(|v: &axum::http::HeaderValue| v.to_str().unwrap().to_owned())
                };
                node.received.lock().unwrap().push(Received {
                    method,
                    path: uri.path().to_owned(),
                    authorization: header("authorization"),
                    content_type: header("content-type"),
                    body,
                });
                let (status, body) = node.answer;
                (status, [("content-type", "application/json")], body)
            },
        ))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Runs the CLI off the runtime (the stand-in node runs on it). Redis points
/// at a closed port: `--url` must not need it.
async fn publisher(args: &[&str], env: &[(&str, &str)]) -> Output {
    let closed = format!("redis://127.0.0.1:{}", system_tests::free_port());
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_publisher"));
    command
        .env_clear()
        .env("REDIS_URL", closed)
        .args(["send", "--type", "alert", "--data", DATA])
        .args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    tokio::task::spawn_blocking(move || command.output().expect("publisher runs"))
        .await
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn send_url_posts_the_event_with_the_key_and_data_as_written() {
    let (url, received) = node(StatusCode::ACCEPTED, r#"{"id":"1795574865260-0"}"#).await;
    let output = publisher(&["--url", &url, "--key", "s3cret"], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1795574865260-0\n");

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "one request");
    let request = &received[0];
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/api/publish");
    assert_eq!(request.authorization.as_deref(), Some("Bearer s3cret"));
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        String::from_utf8_lossy(&request.body),
        format!(r#"{{"type":"alert","data":{DATA}}}"#),
        "data byte for byte"
    );
}

#[tokio::test]
async fn send_url_reads_gateway_url_and_publish_api_key_from_the_environment() {
    let (url, received) = node(StatusCode::ACCEPTED, r#"{"id":"1-0"}"#).await;
    let output = publisher(&[], &[("GATEWAY_URL", &url), ("PUBLISH_API_KEY", "k")]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let received = received.lock().unwrap().clone();
    assert_eq!(received[0].authorization.as_deref(), Some("Bearer k"));
}

#[tokio::test]
async fn send_url_exits_1_and_says_the_key_is_wrong_on_401() {
    let (url, _) = node(
        StatusCode::UNAUTHORIZED,
        r#"{"error":{"code":"unauthorized","message":"missing or wrong bearer key"}}"#,
    )
    .await;
    let output = publisher(&["--url", &url, "--key", "nope"], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("the key is wrong"), "{message}");
    assert!(
        !message.contains("nope"),
        "the key is never printed: {message}"
    );

    // No key at all: the message says where one goes.
    let output = publisher(&["--url", &url], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("it needs one"), "{message}");
}

#[tokio::test]
async fn send_url_exits_1_with_the_status_and_the_nodes_message_otherwise() {
    let (url, _) = node(
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"error":{"code":"bus_unavailable","message":"the bus is unavailable; retry"}}"#,
    )
    .await;
    let output = publisher(&["--url", &url, "--key", "k"], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(&output);
    assert!(stderr.contains("503"), "{stderr}");
    assert!(stderr.contains("the bus is unavailable; retry"), "{stderr}");
}

#[tokio::test]
async fn send_url_exits_1_and_says_no_gateway_is_there_when_refused() {
    let url = format!("http://127.0.0.1:{}", system_tests::free_port());
    let output = publisher(&["--url", &url, "--key", "k"], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(&output);
    assert!(stderr.contains(&format!("no gateway at {url}")), "{stderr}");
}

/// A stand-in node that answers a JSON array body with as many ids
/// (`"1-0"`, `"2-0"`, ... across requests), recording each body.
async fn batch_node() -> (String, Arc<Mutex<Vec<String>>>) {
    let bodies = Arc::new(Mutex::new(Vec::<String>::new()));
    let app = Router::new()
        .fallback(any(
            |State(bodies): State<Arc<Mutex<Vec<String>>>>, body: Bytes| async move {
                let events: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
                let mut bodies = bodies.lock().unwrap();
                let before: usize = bodies
                    .iter()
                    .map(|b| {
                        serde_json::from_str::<Vec<serde_json::Value>>(b)
                            .unwrap()
                            .len()
                    })
                    .sum();
                bodies.push(String::from_utf8(body.to_vec()).unwrap());
                let ids: Vec<String> = (before + 1..=before + events.len())
                    .map(|n| format!("{n}-0"))
                    .collect();
                (
                    StatusCode::ACCEPTED,
                    axum::Json(serde_json::json!({"ids": ids})),
                )
            },
        ))
        .with_state(bodies.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, bodies)
}

#[tokio::test]
async fn send_stdin_with_url_posts_each_batch_as_one_json_array() {
    let (url, bodies) = batch_node().await;
    let closed = format!("redis://127.0.0.1:{}", system_tests::free_port());
    let input = format!(
        "{{\"type\":\"alert\",\"data\":{DATA}}}\n{{\"type\":\"metrics_update\",\"data\":[1]}}\n{{\"type\":\"x.y\"}}\n"
    );
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_publisher"))
            .env_clear()
            .env("REDIS_URL", closed)
            .args([
                "send",
                "--stdin",
                "--batch-size",
                "2",
                "--url",
                &url,
                "--key",
                "k",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1-0\n2-0\n3-0\n");
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(
        bodies,
        [
            format!(r#"[{{"type":"alert","data":{DATA}}},{{"type":"metrics_update","data":[1]}}]"#),
            r#"[{"type":"x.y","data":null}]"#.to_owned(),
        ],
        "two batches of at most 2, data byte for byte"
    );
}
