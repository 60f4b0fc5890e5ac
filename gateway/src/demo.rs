//! `--demo`: the publisher's [`Generator`] feeding this node's own bus, so a
//! newcomer sees a live dashboard with nothing else running; and what the
//! newcomer is told: where the node listens, and the publish key it made.

use std::net::SocketAddr;
use std::sync::Arc;

use publisher::simulate::Generator;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;

/// Random bytes in a demo publish key (128 bits, 32 hex digits).
const KEY_BYTES: usize = 16;

pub async fn run(bus: Arc<dyn Bus>, rate: u32, shutdown: CancellationToken) {
    let mut generator = Generator::new(rate, fastrand::u64(..));
    let mut tick = tokio::time::interval(generator.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        rate,
        "demo: publishing generated tutor metrics, alerts, interventions and analytics"
    );
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let event = generator.next_event();
        let data = serde_json::value::to_raw_value(&event.data).expect("generated data is JSON");
        if let Err(err) = bus.publish(event.kind, &data).await {
            tracing::debug!("demo publish failed (bus down?): {err}");
        }
    }
}

/// A publish key for a `--demo` node started without one: from the OS's
/// random source. Not fastrand: its seed comes from the clock and the
/// thread, and the node id (public in `/ws/status`) is drawn from the same
/// sequence.
pub fn publish_key() -> std::io::Result<String> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What a `--demo` node tells whoever started it, on stderr, whatever
/// `RUST_LOG` says (at `warn` the log would show none of it): where it
/// listens, a warning when that is every interface (the publish API is on),
/// and the key it made (`None`: the operator gave `PUBLISH_API_KEY`). The
/// key goes into the command line it suggests through the environment, not
/// as `--key`, which any local user could read in `ps`.
pub fn announce(addr: SocketAddr, key: Option<&str>, tls: bool) -> String {
    let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        addr.ip().to_string()
    };
    let scheme = if tls { "https" } else { "http" };
    let url = format!("{scheme}://{host}:{}", addr.port());
    let mut lines = vec![format!(
        "demo: listening on {addr}; open {url} for the live dashboard"
    )];
    if addr.ip().is_unspecified() {
        lines.push(format!(
            "demo: warning: {addr} is every network interface, and the publish API is on: \
             other machines can open the dashboard, and publish to it with the key. \
             BIND_ADDR=127.0.0.1:{} keeps it on this machine.",
            addr.port()
        ));
    }
    if let Some(key) = key {
        lines.push(format!(
            "demo: publish key (the node's PUBLISH_API_KEY, made for this run): {key}"
        ));
        if !tls {
            lines.push(format!(
                "demo: publish your own event with\n  PUBLISH_API_KEY={key} cargo run -p publisher -- send --url {url} --type alert --data '{{\"tutor_id\":\"t-17\",\"severity\":\"critical\",\"message\":\"hello\"}}'"
            ));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_and_never_repeat() {
        let (a, b) = (publish_key().unwrap(), publish_key().unwrap());
        assert_eq!(a.len(), 2 * KEY_BYTES);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_key_travels_in_the_environment_not_in_argv() {
        let text = announce("127.0.0.1:8000".parse().unwrap(), Some("k3y"), false);
        let send = text.lines().last().unwrap();
        let (env, argv) = send.trim().split_once(' ').unwrap();
        assert_eq!(env, "PUBLISH_API_KEY=k3y");
        assert!(!argv.contains("k3y") && !argv.contains("--key"), "{argv}");
        assert!(argv.contains("--url http://localhost:8000"), "{argv}");
        assert!(!text.contains("every network interface"), "{text}");
    }

    #[test]
    fn listening_on_every_interface_is_said_plainly() {
        let text = announce("0.0.0.0:8000".parse().unwrap(), None, false);
        assert!(text.contains("listening on 0.0.0.0:8000"), "{text}");
        assert!(text.contains("every network interface"), "{text}");
        assert!(text.contains("BIND_ADDR=127.0.0.1:8000"), "{text}");
        assert!(
            !text.contains("PUBLISH_API_KEY="),
            "no key made, none shown"
        );
        let v6 = announce("[::]:8000".parse().unwrap(), None, false);
        assert!(v6.contains("every network interface"), "{v6}");
    }
}
