//! Configuration: read once at start from flags and environment variables
//! (each flag has the variable of the same name), into one typed struct.
//!
//! Tests build a [`Config`] in code from [`Config::default`], never from the
//! process environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use publisher::HistoryPolicy;
use publisher::config::{
    RedisConfig, RedisTarget, WireConfig, is_token, parse_within, path_or_empty,
};
use thiserror::Error;

use crate::secret::Secret;

pub use publisher::config::DEFAULT_CHANNEL_PREFIX;
pub const DEFAULT_BIND_ADDR: &str = "0.0.0.0:8000";
pub const DEFAULT_DEMO_RATE: u32 = 20;
/// Well under the 60 s idle timeout of common load balancers.
pub const DEFAULT_PING_INTERVAL_MS: u64 = 20_000;
pub const DEFAULT_PONG_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// A client's unsent bytes before it is closed as too slow. Between
/// Centrifugo's 1 MiB and sockudo's 4 MiB: a 20,000-event burst of TutorMax
/// metrics (~3.4 MB) reaches a dashboard on a 10 Mbit/s link within it,
/// and the queued bytes are the fan-out's shared buffers, not copies.
pub const DEFAULT_CLIENT_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Also the age of a client's oldest unsent byte before it is closed.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 10_000;
/// What the node's ring of recent events may hold (see `ring`): how far the
/// fan-out may fall behind before it reads the history instead.
pub const DEFAULT_RING_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_MAX_CONNECTIONS: u64 = 50_000;
/// A dashboard sends a ping every ~15 s; 20 a second is abuse.
pub const DEFAULT_MESSAGE_RATE: f64 = 20.0;
/// A connection that has not sent a whole request head by then is closed.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Envelopes shorter than this go uncompressed to permessage-deflate
/// clients: under ~256 bytes of JSON, deflate saves a few dozen bytes at
/// best (often none: a short envelope has little to repeat) for a
/// compression call per event.
pub const DEFAULT_COMPRESSION_MIN_BYTES: usize = 256;
/// Seconds of clock skew tolerated on a token's `exp` and `nbf`.
pub const DEFAULT_JWT_LEEWAY_SECS: u64 = 10;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "gateway",
    version,
    about = "Realtime WebSocket gateway for operations dashboards"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "BIND_ADDR", default_value = DEFAULT_BIND_ADDR)]
    pub bind_addr: SocketAddr,
    /// Where Redis is (REDIS_URL, REDIS_CLUSTER_NODES, REDIS_SENTINELS,
    /// REDIS_TLS_*); none: one node on an in-process bus.
    #[command(flatten)]
    pub redis: RedisConfig,
    /// CHANNEL_PREFIX, HISTORY_SIZE, HISTORY_TTL_SECS, MAX_EVENT_BYTES: what
    /// every node and publisher must agree on.
    #[command(flatten)]
    pub wire: WireConfig,
    /// This node's name in /ws/status and metrics (default: random).
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,
    /// Allowed WebSocket Origins, comma-separated (default: any).
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Bearer key for POST /api/publish (unset: the route is off).
    #[arg(long, env = "PUBLISH_API_KEY", hide_env_values = true)]
    pub publish_api_key: Option<Secret>,
    /// HS256 secret; when set, /ws/dashboard needs `?token=<JWT>`.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub auth_jwt_secret: Option<Secret>,
    /// Run a generator of live demo data on this node's bus.
    #[arg(long, env = "DEMO")]
    pub demo: bool,
    /// Demo events per second.
    #[arg(long, env = "DEMO_RATE", default_value_t = DEFAULT_DEMO_RATE,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub demo_rate: u32,
    /// Server WebSocket ping interval, milliseconds.
    #[arg(long, env = "PING_INTERVAL_MS", default_value_t = DEFAULT_PING_INTERVAL_MS,
          value_parser = clap::value_parser!(u64).range(10..=HOUR_MS))]
    pub ping_interval_ms: u64,
    /// How long after a ping without any answer a client counts as dead, milliseconds.
    #[arg(long, env = "PONG_TIMEOUT_MS", default_value_t = DEFAULT_PONG_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(10..=HOUR_MS))]
    pub pong_timeout_ms: u64,
    /// Largest inbound WebSocket message; bigger ones close the connection with 1009.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES,
          value_parser = parse_message_bytes)]
    pub max_message_bytes: usize,
    /// Bytes a client may have unsent before it is disconnected as too slow.
    #[arg(long, env = "CLIENT_BUFFER_BYTES", default_value_t = DEFAULT_CLIENT_BUFFER_BYTES,
          value_parser = parse_client_buffer_bytes)]
    pub client_buffer_bytes: usize,
    /// How old a client's oldest unsent byte may get before it is dropped, milliseconds.
    #[arg(long, env = "WRITE_TIMEOUT_MS", default_value_t = DEFAULT_WRITE_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(10..=HOUR_MS))]
    pub write_timeout_ms: u64,
    /// Bytes of recent events the node keeps for its fan-out and for clients
    /// going live.
    #[arg(long, env = "RING_BYTES", default_value_t = DEFAULT_RING_BYTES,
          value_parser = parse_ring_bytes)]
    pub ring_bytes: usize,
    /// Seconds a draining node waits for its clients to close before it exits.
    #[arg(long, env = "DRAIN_TIMEOUT_SECS", default_value_t = DEFAULT_DRAIN_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_timeout_secs: u64,
    /// Most clients on this node (0: no limit); more get 503 at the handshake.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub max_connections: u64,
    /// Most clients from one IP (0: no limit); more get 429. Behind a load
    /// balancer, set TRUSTED_PROXIES too, or every client shares its IP.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: u32,
    /// Proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For is believed.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Handshakes a second allowed from one IP, bursts of twice that (0: no limit); more get 429.
    #[arg(long, env = "HANDSHAKE_RATE_PER_IP", default_value_t = 0.0, value_parser = parse_rate)]
    pub handshake_rate_per_ip: f64,
    /// Messages a second a client may send, bursts of twice that (0: no limit); more close it with 1008.
    #[arg(long, env = "MESSAGE_RATE", default_value_t = DEFAULT_MESSAGE_RATE, value_parser = parse_rate)]
    pub message_rate: f64,
    /// Milliseconds a connection may take to send a complete HTTP request head
    /// (and an idle keep-alive connection may wait); then it is closed.
    #[arg(long, env = "HANDSHAKE_TIMEOUT_MS", default_value_t = DEFAULT_HANDSHAKE_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(100..=HOUR_MS))]
    pub handshake_timeout_ms: u64,
    /// PEM public key (RSA, EC P-256/P-384, Ed25519); tokens signed with its private key are accepted.
    #[arg(long, env = "AUTH_JWT_PUBLIC_KEY_FILE")]
    pub auth_jwt_public_key_file: Option<std::path::PathBuf>,
    /// An identity provider's JWKS URL; its keys are cached and refetched for an unknown `kid`.
    #[arg(long, env = "AUTH_JWKS_URL")]
    pub auth_jwks_url: Option<String>,
    /// Accepted token audiences, comma-separated (unset: `aud` not checked).
    #[arg(long, env = "AUTH_JWT_AUDIENCE", value_delimiter = ',')]
    pub auth_jwt_audience: Vec<String>,
    /// The token issuer required in `iss` (unset: not checked).
    #[arg(long, env = "AUTH_JWT_ISSUER")]
    pub auth_jwt_issuer: Option<String>,
    /// Seconds of clock skew allowed on a token's `exp` and `nbf`.
    #[arg(long, env = "AUTH_JWT_LEEWAY_SECS", default_value_t = DEFAULT_JWT_LEEWAY_SECS,
          value_parser = clap::value_parser!(u64).range(0..=300))]
    pub auth_jwt_leeway_secs: u64,
    /// Most connections per token `sub` on this node (0: no limit); more get 429.
    #[arg(long, env = "MAX_CONNECTIONS_PER_USER", default_value_t = 0)]
    pub max_connections_per_user: u32,
    /// permessage-deflate for clients that offer it: `on` or `off`.
    #[arg(long, env = "COMPRESSION", default_value = "on", value_parser = parse_on_off)]
    pub compression: bool,
    /// Envelopes shorter than this many bytes go uncompressed.
    #[arg(long, env = "COMPRESSION_MIN_BYTES", default_value_t = DEFAULT_COMPRESSION_MIN_BYTES,
          value_parser = parse_compression_min_bytes)]
    pub compression_min_bytes: usize,
    /// PEM certificate chain: the node serves https:// and wss:// itself. A
    /// renewed file is picked up without a restart.
    #[arg(long, env = "TLS_CERT_FILE", value_parser = path_or_empty)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of TLS_CERT_FILE.
    #[arg(long, env = "TLS_KEY_FILE", value_parser = path_or_empty)]
    pub tls_key_file: Option<PathBuf>,
}

fn parse_net(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    value
        .parse::<ipnet::IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{value:?} is not an IP address or CIDR block"))
}

/// Upper bounds: a value past them is a typo, and would fail late (an
/// allocation that aborts, a Redis argument out of range, a timer that
/// overflows) instead of at start with exit code 2.
const HOUR_MS: u64 = 3_600_000;
const MAX_RATE: f64 = 1_000_000.0;

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (0.0..=MAX_RATE).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "{value:?} is not a rate (a number from 0 to {MAX_RATE})"
        )),
    }
}

fn parse_message_bytes(value: &str) -> Result<usize, String> {
    parse_within(value, 16..=16 * 1024 * 1024)
}

const MIB: usize = 1024 * 1024;

/// At least a batch of the fan-out and a whole event twice over (checked
/// against `MAX_EVENT_BYTES` in `validate`), at most 1 GiB.
fn parse_client_buffer_bytes(value: &str) -> Result<usize, String> {
    parse_within(value, 64 * 1024..=1024 * MIB)
}

fn parse_compression_min_bytes(value: &str) -> Result<usize, String> {
    parse_within(value, 0..=16 * MIB)
}

fn parse_on_off(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("{value:?} is not `on` or `off`")),
    }
}

fn parse_ring_bytes(value: &str) -> Result<usize, String> {
    parse_within(value, 64 * 1024..=16 * 1024 * MIB)
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Redis and wire settings, shared with the publisher CLI.
    #[error(transparent)]
    Redis(#[from] publisher::ConfigError),
    #[error("TLS_CERT_FILE and TLS_KEY_FILE go together (the node's certificate and its key)")]
    TlsPair,
    #[error(
        "CLIENT_BUFFER_BYTES is {bytes}: it must be at least {least} (room for two events of MAX_EVENT_BYTES and a fan-out batch)"
    )]
    ClientBuffer { bytes: usize, least: usize },
    /// Checked beside publish auth (`http::publish`).
    #[error(transparent)]
    PublishKey(#[from] crate::http::PublishKeyError),
    #[error("{0}")]
    Tls(String),
    #[error("NODE_ID {0:?} may only contain letters, digits, '_', '-' and '.' (at most 64)")]
    NodeId(String),
    #[error("CORS_ORIGINS entry {0:?} is not an origin like https://ops.example.com")]
    Origin(String),
    #[error("AUTH_JWT_PUBLIC_KEY_FILE {0}: {1}")]
    AuthKey(String, String),
    #[error("AUTH_JWKS_URL {0:?}: {1}")]
    JwksUrl(String, String),
}

/// The defaults are the flags' own (`default_value` above), read through
/// clap with every environment variable ignored: nothing is restated by
/// hand, and a test's config never picks up the shell's `REDIS_URL`.
impl Default for Config {
    fn default() -> Self {
        let command = <Self as clap::CommandFactory>::command().mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(["gateway"])
            .expect("every flag has a default or is optional");
        <Self as clap::FromArgMatches>::from_arg_matches(&matches)
            .expect("the defaults parse as the flags do")
    }
}

impl Config {
    /// Checks what clap cannot, and treats empty variables (`PUBLISH_API_KEY=`)
    /// as unset, as a shell user expects.
    pub fn validate(mut self) -> Result<Self, ConfigError> {
        let blank_to_none = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        self.redis = self.redis.normalized();
        self.node_id = blank_to_none(self.node_id);
        self.publish_api_key = self.publish_api_key.filter(|k| !k.is_blank());
        crate::http::check_publish_key(self.publish_api_key.as_ref().map(Secret::expose))?;
        self.auth_jwt_secret = self.auth_jwt_secret.filter(|k| !k.is_blank());
        self.cors_origins = self
            .cors_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();

        self.wire.validate()?;
        // An event within MAX_EVENT_BYTES must never make a reader that
        // keeps up "too slow": room for a fan-out batch and two events.
        let least = crate::fanout::BATCH_BYTES
            + 2 * (self.wire.max_event_bytes
                + shared::envelope::ENVELOPE_GROWTH
                + shared::envelope::EVICTED_GROWTH);
        if self.client_buffer_bytes < least {
            return Err(ConfigError::ClientBuffer {
                bytes: self.client_buffer_bytes,
                least,
            });
        }
        self.tls_cert_file = self.tls_cert_file.filter(|p| !p.as_os_str().is_empty());
        self.tls_key_file = self.tls_key_file.filter(|p| !p.as_os_str().is_empty());
        // Only both or neither; the files themselves are read once, by
        // `start` (as are the Redis target's, the public key file and the
        // JWKS URL's syntax, by the bus and `Admission::new`).
        self.tls()?;
        if let Some(id) = &self.node_id
            && !is_token(id)
        {
            return Err(ConfigError::NodeId(id.clone()));
        }
        if let Some(bad) = self
            .cors_origins
            .iter()
            .find(|o| !(o.starts_with("http://") || o.starts_with("https://")) || o.len() < 10)
        {
            return Err(ConfigError::Origin(bad.clone()));
        }
        self.auth_jwks_url = blank_to_none(self.auth_jwks_url);
        self.auth_jwt_issuer = blank_to_none(self.auth_jwt_issuer);
        self.auth_jwt_public_key_file = self
            .auth_jwt_public_key_file
            .filter(|p| !p.as_os_str().is_empty());
        self.auth_jwt_audience = self
            .auth_jwt_audience
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        Ok(self)
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    pub fn pong_timeout(&self) -> Duration {
        Duration::from_millis(self.pong_timeout_ms)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// How far behind a client may fall (`CLIENT_BUFFER_BYTES`, and
    /// `WRITE_TIMEOUT_MS` as the age of its oldest unsent byte).
    /// `Some(min)`: permessage-deflate is on, for envelopes of at least
    /// `min` bytes.
    pub fn compression(&self) -> Option<usize> {
        self.compression.then_some(self.compression_min_bytes)
    }

    pub fn client_budget(&self) -> crate::transport::outbox::Budget {
        crate::transport::outbox::Budget {
            max_bytes: self.client_buffer_bytes,
            max_age: self.write_timeout(),
        }
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    pub fn history(&self) -> HistoryPolicy {
        self.wire.history()
    }

    /// The checked Redis target (`None`: the in-process bus).
    pub fn redis_target(&self) -> Result<Option<RedisTarget>, ConfigError> {
        Ok(self.redis.target()?)
    }

    /// The node's certificate and key files, when it serves TLS itself.
    pub fn tls(&self) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
            (None, None) => Ok(None),
            _ => Err(ConfigError::TlsPair),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["gateway"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .validate()
            .map_err(|e| e.to_string())
    }

    /// What `start` says of `args`, when it refuses them (it reads the
    /// files the settings name before it starts anything).
    fn refused_at_start(args: &[&str]) -> String {
        let config = parse(args).expect("valid syntax");
        match crate::start(config, tokio_util::sync::CancellationToken::new()) {
            Ok(_) => panic!("{args:?} should be refused"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let config = Config::default().validate().unwrap();
        assert_eq!(config.bind_addr.to_string(), "0.0.0.0:8000");
        assert_eq!(config.wire.channel_prefix, "ws");
        assert!(config.redis.redis_url.is_none() && config.publish_api_key.is_none());
        assert!(config.ping_interval() < Duration::from_secs(60));
        assert_eq!(config.wire.max_event_bytes, 64 * 1024);
        assert_eq!(config.handshake_timeout(), Duration::from_secs(10));
        assert_eq!(config.max_connections_per_user, 0);
    }

    #[test]
    fn bad_values_get_a_clear_error() {
        let err = parse(&["--bind-addr", "nowhere"]).unwrap_err();
        assert!(err.contains("--bind-addr"), "{err}");
        let err = refused_at_start(&["--redis-url", "http://x"]);
        assert!(err.contains("not a valid Redis URL"), "{err}");
        let err = parse(&["--channel-prefix", "a b"]).unwrap_err();
        assert!(err.contains("CHANNEL_PREFIX"), "{err}");
        let err = parse(&["--client-buffer-bytes", "3"]).unwrap_err();
        assert!(err.contains("from 65536 to"), "{err}");
        let err = parse(&["--cors-origins", "example.com"]).unwrap_err();
        assert!(err.contains("CORS_ORIGINS"), "{err}");
        let err = parse(&["--trusted-proxies", "10.0.0.0/33"]).unwrap_err();
        assert!(err.contains("not an IP address or CIDR"), "{err}");
        let err = parse(&["--message-rate=-1"]).unwrap_err();
        assert!(err.contains("not a rate"), "{err}");
        for (flag, value) in [
            ("--client-buffer-bytes", "100000000000"),
            ("--client-buffer-bytes", "4611686018427387904"),
            ("--history-size", "18446744073709551615"),
            ("--ping-interval-ms", "18446744073709551615"),
            ("--max-event-bytes", "100"),
            ("--handshake-rate-per-ip", "1e300"),
        ] {
            let err = parse(&[flag, value]).unwrap_err();
            assert!(err.contains(flag), "{flag}={value}: {err}");
        }
    }

    #[test]
    fn blank_redis_and_tls_settings_count_as_unset() {
        let config = parse(&[
            "--redis-url",
            "",
            "--redis-sentinels",
            "",
            "--redis-tls-ca-file",
            "",
            "--tls-cert-file",
            "",
            "--tls-key-file",
            "",
        ])
        .unwrap();
        assert!(!config.redis.is_set());
        assert_eq!(config.redis.redis_tls_ca_file, None);
        assert_eq!(config.tls(), Ok(None));
    }

    #[test]
    fn blank_secrets_count_as_unset_and_origins_are_normalised() {
        let config = parse(&[
            "--publish-api-key",
            " ",
            "--cors-origins",
            "https://Ops.Example.com/, http://localhost:3000",
        ])
        .unwrap();
        assert_eq!(config.publish_api_key, None);
        assert_eq!(
            config.cors_origins,
            ["https://ops.example.com", "http://localhost:3000"]
        );
    }

    #[test]
    fn auth_settings_are_checked_at_start() {
        let err = refused_at_start(&["--auth-jwks-url", "ftp://idp/keys"]);
        assert!(err.contains("AUTH_JWKS_URL"), "{err}");
        let err = refused_at_start(&["--auth-jwt-public-key-file", "/nonexistent/key.pem"]);
        assert!(err.contains("AUTH_JWT_PUBLIC_KEY_FILE"), "{err}");
        let err = parse(&["--auth-jwt-leeway-secs", "3600"]).unwrap_err();
        assert!(err.contains("--auth-jwt-leeway-secs"), "{err}");
        let config = parse(&["--auth-jwt-audience", " a, ,b ", "--auth-jwt-issuer", " "]).unwrap();
        assert_eq!(config.auth_jwt_audience, ["a", "b"]);
        assert_eq!(config.auth_jwt_issuer, None);
    }
}
