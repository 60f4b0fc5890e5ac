//! The wire settings every publisher and node must agree on (the key
//! namespace, the history's bounds, the largest event, the keyed state's
//! rules and bounds), flattened into each binary's flags, and the small
//! parsers the binaries' own flags share.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use shared::envelope::{DEFAULT_MAX_EVENT_BYTES, MAX_EVENT_BYTES_RANGE};
use shared::state::{
    DEFAULT_STATE_KEYS, DEFAULT_STATE_MAX_KEYS, DEFAULT_STATE_TOMBSTONES, DEFAULT_STATE_TTL_SECS,
    Keying,
};

use super::{ConfigError, DEFAULT_CHANNEL_PREFIX, YEAR_SECS};
use crate::wire::{DEFAULT_HISTORY_SIZE, DEFAULT_HISTORY_TTL};
use crate::{HistoryPolicy, StatePolicy, Topology, WireFormat};

/// The settings every publisher and node must agree on.
#[derive(Debug, Clone, Args)]
pub struct WireConfig {
    /// Redis key and channel namespace (the same on every node and publisher).
    #[arg(long, env = "CHANNEL_PREFIX", default_value = DEFAULT_CHANNEL_PREFIX, global = true)]
    pub channel_prefix: String,
    /// Events kept for resume (?since=).
    #[arg(long, env = "HISTORY_SIZE", default_value_t = DEFAULT_HISTORY_SIZE,
          value_parser = parse_history_size, global = true)]
    pub history_size: usize,
    /// Seconds an event is kept for resume (0: until pushed out by HISTORY_SIZE).
    #[arg(long, env = "HISTORY_TTL_SECS", default_value_t = DEFAULT_HISTORY_TTL.as_secs(),
          value_parser = clap::value_parser!(u64).range(0..=YEAR_SECS), global = true)]
    pub history_ttl_secs: u64,
    /// Largest encoded event (bytes): bigger publishes are refused, bigger bus payloads dropped.
    #[arg(long, env = "MAX_EVENT_BYTES", default_value_t = DEFAULT_MAX_EVENT_BYTES,
          value_parser = parse_max_event_bytes, global = true)]
    pub max_event_bytes: usize,
    /// Which events are keyed state, per type: `type=field[+field...]`,
    /// comma separated (`none`: no keys derived).
    #[arg(long, env = "STATE_KEYS", default_value = DEFAULT_STATE_KEYS,
          value_parser = parse_state_keys, global = true)]
    pub state_keys: String,
    /// Which events remove their key: `type=field:value`, comma separated (`none`: none).
    #[arg(long, env = "STATE_TOMBSTONES", default_value = DEFAULT_STATE_TOMBSTONES,
          value_parser = parse_state_tombstones, global = true)]
    pub state_tombstones: String,
    /// Keys kept per type; at the bound the least recently updated key is evicted.
    #[arg(long, env = "STATE_MAX_KEYS", default_value_t = DEFAULT_STATE_MAX_KEYS,
          value_parser = parse_state_max_keys, global = true)]
    pub state_max_keys: usize,
    /// Seconds a key outlives its latest event (0: no age limit).
    #[arg(long, env = "STATE_TTL_SECS", default_value_t = DEFAULT_STATE_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(0..=YEAR_SECS), global = true)]
    pub state_ttl_secs: u64,
}

impl Default for WireConfig {
    fn default() -> Self {
        Self {
            channel_prefix: DEFAULT_CHANNEL_PREFIX.to_owned(),
            history_size: DEFAULT_HISTORY_SIZE,
            history_ttl_secs: DEFAULT_HISTORY_TTL.as_secs(),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            state_keys: DEFAULT_STATE_KEYS.to_owned(),
            state_tombstones: DEFAULT_STATE_TOMBSTONES.to_owned(),
            state_max_keys: DEFAULT_STATE_MAX_KEYS,
            state_ttl_secs: DEFAULT_STATE_TTL_SECS,
        }
    }
}

fn parse_state_keys(value: &str) -> Result<String, String> {
    Keying::parse(value, "").map_err(|e| e.to_string())?;
    Ok(value.to_owned())
}

fn parse_state_tombstones(value: &str) -> Result<String, String> {
    Keying::parse("", value).map_err(|e| e.to_string())?;
    Ok(value.to_owned())
}

fn parse_state_max_keys(value: &str) -> Result<usize, String> {
    parse_within(value, 1..=100_000_000)
}

/// A path; an empty value (`REDIS_TLS_CA_FILE=`) is kept empty, and counts
/// as unset once normalized (clap's own path parser refuses it).
pub fn path_or_empty(value: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(value))
}

/// Parses `value` as a whole number within `range`.
pub fn parse_within(value: &str, range: std::ops::RangeInclusive<usize>) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        Ok(_) => Err(format!("must be from {} to {}", range.start(), range.end())),
        Err(_) => Err(format!("{value:?} is not a whole number")),
    }
}

fn parse_history_size(value: &str) -> Result<usize, String> {
    parse_within(value, 1..=100_000_000)
}

fn parse_max_event_bytes(value: &str) -> Result<usize, String> {
    parse_within(value, MAX_EVENT_BYTES_RANGE)
}

/// Letters, digits, `_`, `-`, `.`; at most 64.
pub fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl WireConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_token(&self.channel_prefix) {
            return Err(ConfigError::Prefix(self.channel_prefix.clone()));
        }
        Ok(())
    }

    pub fn history(&self) -> HistoryPolicy {
        HistoryPolicy {
            max_len: self.history_size,
            ttl: Duration::from_secs(self.history_ttl_secs),
        }
    }

    /// The keyed state's rules and bounds.
    pub fn state(&self) -> StatePolicy {
        StatePolicy {
            // Each part was checked when parsed.
            keying: Keying::parse(&self.state_keys, &self.state_tombstones)
                .unwrap_or_else(|_| Keying::none()),
            max_keys: self.state_max_keys,
            ttl: Duration::from_secs(self.state_ttl_secs),
        }
    }

    /// The wire format these settings describe, on `topology`.
    pub fn wire_format(&self, topology: Topology) -> WireFormat {
        WireFormat::with_topology(&self.channel_prefix, self.history(), topology)
            .with_max_event_bytes(self.max_event_bytes)
            .with_state(self.state())
    }
}
