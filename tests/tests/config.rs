//! The gateway binary's configuration, as an operator meets it.

use std::process::Command;
use std::time::{Duration, Instant};

/// Runs the gateway with `env`; a node that starts serving instead of
/// refusing its configuration is killed after a few seconds.
fn gateway(env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(system_tests::bin_dir().join("gateway"));
    command
        .env_clear()
        .env("BIND_ADDR", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("gateway runs");
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

#[test]
fn a_bad_value_stops_the_node_with_a_clear_message_and_exit_code_2() {
    let cases = [
        ("PING_INTERVAL_MS", "soon", "--ping-interval-ms"),
        ("BIND_ADDR", "localhost", "--bind-addr"),
        ("REDIS_URL", "http://redis", "not a valid Redis URL"),
        ("CHANNEL_PREFIX", "a b", "CHANNEL_PREFIX"),
        ("CORS_ORIGINS", "ops.example.com", "CORS_ORIGINS"),
        (
            "REDIS_CLUSTER_NODES",
            "http://127.0.0.1:7000",
            "REDIS_CLUSTER_NODES",
        ),
        // Out of range: refused at start, not an abort, a panic or a node
        // that starts and fails every publish.
        ("CLIENT_BUFFER", "100000000000", "--client-buffer"),
        ("CLIENT_BUFFER", "4611686018427387904", "--client-buffer"),
        ("HISTORY_SIZE", "18446744073709551615", "--history-size"),
        ("MAX_EVENT_BYTES", "99999999999", "--max-event-bytes"),
    ];
    for (key, value, expected) in cases {
        let output = gateway(&[(key, value)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{key}={value}: {stderr}");
        assert!(stderr.contains(expected), "{key}={value}: {stderr}");
    }
}

#[test]
fn help_lists_every_setting_with_its_variable() {
    let output = Command::new(system_tests::bin_dir().join("gateway"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "BIND_ADDR",
        "REDIS_URL",
        "NODE_ID",
        "CHANNEL_PREFIX",
        "CORS_ORIGINS",
        "PUBLISH_API_KEY",
        "AUTH_JWT_SECRET",
        "PING_INTERVAL_MS",
        "HISTORY_SIZE",
    ] {
        assert!(
            help.contains(variable),
            "--help does not mention {variable}"
        );
    }
}
