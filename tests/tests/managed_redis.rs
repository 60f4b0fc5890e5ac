//! Managed Redis as the services hand it out: `rediss://` with a private CA,
//! mutual TLS, an ACL user with a password. Real `redis-server`s, the real
//! gateway and publisher binaries.

use serde_json::json;
use system_tests::tls::TestCa;
use system_tests::{GatewayProcess, RedisServer, publisher_cli};

fn send(env: &[(&str, &str)], n: u64) -> std::process::Output {
    let data = json!({ "n": n }).to_string();
    publisher_cli(&["send", "--type", "alert", "--data", &data], env)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A node on `env` delivers what the publisher CLI (on the same `env`) sends.
async fn events_flow(env: &[(&str, &str)]) {
    let node = GatewayProcess::start(env).await;
    node.wait_ready(200).await;
    let mut client = node.client("?types=alert").await.unwrap();
    client.next_of("analytics_update").await;
    let output = send(env, 1);
    assert!(output.status.success(), "{}", stderr(&output));
    let alert = client.next_of("alert").await;
    assert_eq!(alert["data"]["n"], 1);
}

#[tokio::test]
async fn nodes_and_publishers_reach_redis_over_tls_trusting_a_private_ca() {
    let ca = TestCa::new();
    let redis = RedisServer::start_tls(&ca, false);
    let url = redis.url();
    let ca_file = ca.ca_file.to_string_lossy().into_owned();
    events_flow(&[("REDIS_URL", &url), ("REDIS_TLS_CA_FILE", &ca_file)]).await;

    // Without the CA the server's certificate is not trusted (the system's
    // roots do not know it): a clear failure, not a plaintext fallback.
    let output = send(&[("REDIS_URL", &url)], 2);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot reach Redis"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate_and_works_with_it() {
    let ca = TestCa::new();
    let redis = RedisServer::start_tls(&ca, true);
    let client = ca.issue("publisher", system_tests::tls::Usage::Client);
    let url = redis.url();
    let ca_file = ca.ca_file.to_string_lossy().into_owned();
    let cert = client.cert.to_string_lossy().into_owned();
    let key = client.key.to_string_lossy().into_owned();

    let output = send(&[("REDIS_URL", &url), ("REDIS_TLS_CA_FILE", &ca_file)], 1);
    assert!(
        !output.status.success(),
        "a client without a certificate got in"
    );

    events_flow(&[
        ("REDIS_URL", &url),
        ("REDIS_TLS_CA_FILE", &ca_file),
        ("REDIS_TLS_CERT_FILE", &cert),
        ("REDIS_TLS_KEY_FILE", &key),
    ])
    .await;
}

const PASSWORD: &str = "s3cret-Pa55-xyzzy";

#[tokio::test]
async fn an_acl_user_works_and_its_password_shows_nowhere() {
    let redis = RedisServer::start_acl("dashboards", PASSWORD);
    let url = format!("redis://dashboards:{PASSWORD}@127.0.0.1:{}", redis.port);
    events_flow(&[("REDIS_URL", &url)]).await;

    let node = GatewayProcess::logged(&[("REDIS_URL", &url)]).await;
    node.wait_ready(200).await;
    let status = node.get("/ws/status").await.unwrap();
    assert_eq!(status.json()["status"], "operational");
    let metrics = node.get("/metrics").await.unwrap();
    let logs = node.logs();
    assert!(
        logs.contains("dashboards:***@"),
        "the log names the target: {logs}"
    );
    for (what, text) in [
        ("/ws/status", &status.body),
        ("/metrics", &metrics.body),
        ("log", &logs),
    ] {
        assert!(!text.contains(PASSWORD), "{what} shows the password");
    }
}

#[tokio::test]
async fn a_wrong_password_is_reported_without_showing_it() {
    let redis = RedisServer::start_acl("dashboards", PASSWORD);
    let wrong = "wrong-Pa55-plugh";
    let url = format!("redis://dashboards:{wrong}@127.0.0.1:{}", redis.port);

    let output = send(&[("REDIS_URL", &url)], 1);
    assert!(!output.status.success());
    assert!(!stderr(&output).contains(wrong), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot reach Redis at 127.0.0.1:"),
        "{}",
        stderr(&output)
    );

    let node = GatewayProcess::logged(&[("REDIS_URL", &url)]).await;
    node.wait_ready(503).await;
    // Let it fail and retry a few times, logging each.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let logs = node.logs();
    assert!(logs.contains("bus subscription"), "{logs}");
    assert!(!logs.contains(wrong), "{logs}");
}
