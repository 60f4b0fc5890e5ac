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
        (
            "CLIENT_BUFFER_BYTES",
            "100000000000",
            "--client-buffer-bytes",
        ),
        (
            "CLIENT_BUFFER_BYTES",
            "4611686018427387904",
            "--client-buffer-bytes",
        ),
        // Too small for an event of MAX_EVENT_BYTES: refused, named.
        ("CLIENT_BUFFER_BYTES", "70000", "CLIENT_BUFFER_BYTES"),
        ("RING_BYTES", "1000", "--ring-bytes"),
        ("HISTORY_SIZE", "18446744073709551615", "--history-size"),
        ("MAX_EVENT_BYTES", "99999999999", "--max-event-bytes"),
        // A guessable publish key, at start rather than in production.
        (
            "PUBLISH_API_KEY",
            "change-me",
            "PUBLISH_API_KEY is 9 characters long",
        ),
    ];
    for (key, value, expected) in cases {
        let output = gateway(&[(key, value)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{key}={value}: {stderr}");
        assert!(stderr.contains(expected), "{key}={value}: {stderr}");
    }
}

#[test]
fn every_redis_and_tls_misconfiguration_stops_the_node_with_exit_code_2() {
    let dir = std::env::temp_dir().join(format!("gateway-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "this is no certificate").unwrap();
    let junk = junk.to_str().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("REDIS_URL", "redis://a:6379"),
                ("REDIS_SENTINELS", "b:26379"),
            ],
            "set only one of REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS",
        ),
        (
            &[
                ("REDIS_URL", "redis://a:6379"),
                ("REDIS_CLUSTER_NODES", "redis://b:7000"),
            ],
            "set only one of",
        ),
        (&[("REDIS_SENTINELS", "b:26379")], "REDIS_SENTINEL_MASTER"),
        (
            &[("REDIS_SENTINEL_MASTER", "mymaster")],
            "REDIS_SENTINELS is not",
        ),
        (
            &[
                ("REDIS_SENTINELS", "no-port"),
                ("REDIS_SENTINEL_MASTER", "m"),
            ],
            "REDIS_SENTINELS entry",
        ),
        (
            &[
                ("REDIS_URL", "rediss://a:6380"),
                ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"),
            ],
            "REDIS_TLS_CA_FILE \"/nonexistent/ca.pem\": cannot be read",
        ),
        (
            &[
                ("REDIS_URL", "rediss://a:6380"),
                ("REDIS_TLS_CA_FILE", junk),
            ],
            "holds no PEM certificate",
        ),
        (
            &[
                ("REDIS_URL", "rediss://a:6380"),
                ("REDIS_TLS_CERT_FILE", junk),
            ],
            "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together",
        ),
        (
            &[
                ("REDIS_URL", "redis://a:6379"),
                ("REDIS_TLS_CA_FILE", "/etc/hostname"),
            ],
            "REDIS_TLS_CA_FILE",
        ),
        (
            &[("TLS_CERT_FILE", junk)],
            "TLS_CERT_FILE and TLS_KEY_FILE go together",
        ),
        (
            &[
                ("TLS_CERT_FILE", "/nonexistent/c.pem"),
                ("TLS_KEY_FILE", "/nonexistent/k.pem"),
            ],
            "cannot be read",
        ),
        (
            &[("TLS_CERT_FILE", junk), ("TLS_KEY_FILE", junk)],
            "holds no PEM certificate",
        ),
    ];
    for (env, expected) in cases {
        let output = gateway(env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_password_in_a_bad_redis_setting_is_not_echoed() {
    for (key, value) in [
        ("REDIS_URL", "http://app:hunter2-secret@cache:6379"),
        (
            "REDIS_CLUSTER_NODES",
            "redis://a:7000,ftp://app:hunter2-secret@b:7000",
        ),
    ] {
        let output = gateway(&[(key, value)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("app:***@"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    let help = Command::new(system_tests::bin_dir().join("gateway"))
        .arg("--help")
        .env("REDIS_URL", "rediss://app:hunter2-secret@cache:6380")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("hunter2"));

    let output = system_tests::publisher_cli(
        &["send", "--type", "alert", "--data", "{}"],
        &[("REDIS_URL", "redis://a:1"), ("REDIS_SENTINELS", "b:26379")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("set only one of"), "{stderr}");
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
        "REDIS_CLUSTER_NODES",
        "REDIS_SENTINELS",
        "REDIS_SENTINEL_MASTER",
        "REDIS_TLS_CA_FILE",
        "REDIS_TLS_CERT_FILE",
        "REDIS_TLS_KEY_FILE",
        "TLS_CERT_FILE",
        "TLS_KEY_FILE",
    ] {
        assert!(
            help.contains(variable),
            "--help does not mention {variable}"
        );
    }
}
