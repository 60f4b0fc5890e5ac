//! The newcomer's first screen: `gateway --demo` says where it listens and
//! prints a publish key — on stderr, whatever `RUST_LOG` — and the line it
//! prints, `PUBLISH_API_KEY=… publisher send --url …`, reaches the dashboard
//! it serves, with the key in the environment rather than on a command line
//! any local user can read.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use system_tests::{Client, bin_dir, free_port};

/// A `gateway --demo` process, killed when dropped (a failed test too).
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `gateway --demo` on `bind` at `RUST_LOG=warn`; what it printed up
/// to the line containing `until`.
fn start_demo(bind: &str, until: &str) -> (Demo, String) {
    let mut gateway = Demo(
        Command::new(bin_dir().join("gateway"))
            .arg("--demo")
            .env_clear()
            .env("BIND_ADDR", bind)
            .env("DEMO_RATE", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gateway runs"),
    );
    let stderr = gateway.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = String::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("the demo prints {until:?}; so far:\n{printed}"));
        printed.push_str(&line);
        printed.push('\n');
        if line.contains(until) {
            return (gateway, printed);
        }
    }
}

#[tokio::test]
async fn a_newcomer_publishes_to_the_demo_they_just_started() {
    let port = free_port();
    let (gateway, printed) = start_demo(&format!("0.0.0.0:{port}"), "publisher -- send");
    assert!(
        printed.contains(&format!("listening on 0.0.0.0:{port}")),
        "{printed}"
    );
    assert!(
        printed.contains("every network interface") && printed.contains("publish API is on"),
        "a node open to every interface with a publish key says so: {printed}"
    );
    let key = printed
        .split("publish key")
        .nth(1)
        .and_then(|rest| rest.lines().next()?.rsplit(' ').next())
        .expect("the key is printed")
        .to_owned();
    assert!(key.len() >= 32, "a 128-bit key: {key:?}");
    let send = printed.lines().last().unwrap().trim();
    let argv = send
        .strip_prefix(&format!("PUBLISH_API_KEY={key} "))
        .unwrap_or_else(|| panic!("the key goes in the environment: {send}"));
    assert!(
        !argv.contains(&key),
        "the key is on the command line: {argv}"
    );
    assert!(
        argv.contains(&format!("--url http://localhost:{port}")),
        "{argv}"
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", gateway.0.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&key));

    let mut client = Client::connect(&format!("ws://127.0.0.1:{port}/ws/dashboard?types=alert"))
        .await
        .unwrap();
    client.next_json().await;
    // The printed line as a shell runs it, with the built CLI for `cargo run`.
    let line = send.replacen(
        "cargo run -p publisher --",
        &bin_dir().join("publisher").to_string_lossy(),
        1,
    );
    let output = Command::new("sh")
        .args(["-c", &line])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    loop {
        let event = client.next_json().await;
        if event["data"]["message"] == "hello" {
            assert_eq!(event["data"]["tutor_id"], "t-17");
            break;
        }
    }
}

#[tokio::test]
async fn a_demo_on_loopback_says_where_it_listens_without_a_warning() {
    let port = free_port();
    let (_gateway, printed) = start_demo(&format!("127.0.0.1:{port}"), "publisher -- send");
    assert!(
        printed.contains(&format!("listening on 127.0.0.1:{port}"))
            && printed.contains(&format!("open http://localhost:{port}")),
        "{printed}"
    );
    assert!(!printed.contains("every network interface"), "{printed}");
}
