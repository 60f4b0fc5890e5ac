//! The newcomer's first screen: `gateway --demo` prints a publish key, and
//! `publisher send --url … --key …` reaches the dashboard it serves.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use system_tests::{Client, bin_dir, free_port, publisher_cli};

#[tokio::test]
async fn a_newcomer_publishes_to_the_demo_they_just_started() {
    let port = free_port();
    let mut gateway = Command::new(bin_dir().join("gateway"))
        .arg("--demo")
        .env_clear()
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("DEMO_RATE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gateway runs");
    // The node logs to stderr.
    let stdout = gateway.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let printed = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the demo prints how to publish");
        if line.contains("--key ") {
            break line;
        }
    };
    let key = printed
        .split("--key ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(
        printed.contains(&format!("http://localhost:{port}")),
        "{printed}"
    );

    let mut client = Client::connect(&format!(
        "ws://127.0.0.1:{port}/ws/dashboard?types=test_message"
    ))
    .await
    .unwrap();
    client.next_json().await;
    let url = format!("http://localhost:{port}");
    let output = publisher_cli(
        &[
            "send",
            "--url",
            &url,
            "--key",
            &key,
            "--type",
            "test_message",
            "--data",
            r#"{"hello": 1.50}"#,
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let event = client.next_json().await;
    assert_eq!(event["data"], json!({"hello": 1.50}));
    let _ = gateway.kill();
    let _ = gateway.wait();
}
