//! The one Redis configuration surface of every binary (the gateway, the
//! `publisher` CLI, the load tool): where Redis is (one server, a Cluster, or
//! a master found through Sentinels), how to reach it (TLS, client
//! certificate, ACL user), and the wire settings publishers and nodes must
//! agree on. Each binary flattens [`RedisConfig`] and [`WireConfig`] into its
//! own clap struct, so a variable means the same everywhere.
//!
//! [`RedisConfig::target`] checks everything once, at start (files read, PEM
//! parsed, URLs parsed), and yields a [`RedisTarget`] that cannot fail later
//! for a configuration reason. Passwords never leave this module in a
//! printable form: errors and [`RedisTarget::describe`] go through
//! [`redact_url`].

mod pem;
mod wire;

use std::path::PathBuf;

use clap::Args;
use redis::{ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, TlsCertificates};
use thiserror::Error;

pub use self::pem::{read_certificates, read_private_key};
pub use self::wire::{WireConfig, is_token, parse_within, path_or_empty};

use crate::Topology;

pub const DEFAULT_CHANNEL_PREFIX: &str = "ws";
/// Where the publisher CLI and the load tool publish when no Redis is named
/// (the gateway's default is no Redis at all: the in-process bus).
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Upper bound of `HISTORY_TTL_SECS`: past it a value is a typo.
const YEAR_SECS: u64 = 366 * 24 * 3600;

/// Where Redis is and how to reach it. At most one of `REDIS_URL`,
/// `REDIS_CLUSTER_NODES` and `REDIS_SENTINELS` may be set. Its `Debug`
/// shows no password (see the impl).
#[derive(Clone, Default, Args)]
pub struct RedisConfig {
    /// Redis URL: redis:// or rediss:// (TLS), with user:password@ for an ACL
    /// user. Gateway: unset means one node on an in-process bus; publisher
    /// CLI and loadtest: redis://127.0.0.1:6379.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<String>,
    /// Redis Cluster seed nodes (comma-separated redis:// or rediss:// URLs).
    #[arg(
        long,
        env = "REDIS_CLUSTER_NODES",
        value_delimiter = ',',
        hide_env_values = true,
        global = true
    )]
    pub redis_cluster_nodes: Vec<String>,
    /// Redis Sentinels (comma-separated host:port, or redis:// / rediss://
    /// URLs with the Sentinels' user:password@); needs REDIS_SENTINEL_MASTER.
    #[arg(
        long,
        env = "REDIS_SENTINELS",
        value_delimiter = ',',
        hide_env_values = true,
        global = true
    )]
    pub redis_sentinels: Vec<String>,
    /// The master's name at the Sentinels; or redis(s)://user:password@name
    /// when the master's credentials or TLS differ from the Sentinels'.
    #[arg(
        long,
        env = "REDIS_SENTINEL_MASTER",
        hide_env_values = true,
        global = true
    )]
    pub redis_sentinel_master: Option<String>,
    /// PEM bundle of CAs to trust for rediss:// (default: the system's roots).
    #[arg(long, env = "REDIS_TLS_CA_FILE", global = true, value_parser = path_or_empty)]
    pub redis_tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for Redis mutual TLS.
    #[arg(long, env = "REDIS_TLS_CERT_FILE", global = true, value_parser = path_or_empty)]
    pub redis_tls_cert_file: Option<PathBuf>,
    /// PEM private key of REDIS_TLS_CERT_FILE.
    #[arg(long, env = "REDIS_TLS_KEY_FILE", global = true, value_parser = path_or_empty)]
    pub redis_tls_key_file: Option<PathBuf>,
}

/// Every URL through [`redact_url`], so `{:?}` of this config, or of a
/// binary's config it is flattened into, shows no password. Destructured,
/// so a field added later cannot be left out (or printed raw) unnoticed.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            redis_url,
            redis_cluster_nodes,
            redis_sentinels,
            redis_sentinel_master,
            redis_tls_ca_file,
            redis_tls_cert_file,
            redis_tls_key_file,
        } = self;
        let one = |url: &Option<String>| url.as_deref().map(redact_url);
        let all = |urls: &[String]| urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>();
        f.debug_struct("RedisConfig")
            .field("redis_url", &one(redis_url))
            .field("redis_cluster_nodes", &all(redis_cluster_nodes))
            .field("redis_sentinels", &all(redis_sentinels))
            .field("redis_sentinel_master", &one(redis_sentinel_master))
            .field("redis_tls_ca_file", redis_tls_ca_file)
            .field("redis_tls_cert_file", redis_tls_cert_file)
            .field("redis_tls_key_file", redis_tls_key_file)
            .finish()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "REDIS_URL {0:?} is not a valid Redis URL (expected redis://[user:password@]host:port, or rediss:// for TLS)"
    )]
    RedisUrl(String),
    #[error("set only one of REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS (found {0})")]
    TooManyTargets(String),
    #[error(
        "REDIS_CLUSTER_NODES entry {0:?} is not a valid Redis URL (expected redis://host:port or rediss://host:port)"
    )]
    ClusterSeed(String),
    #[error(
        "REDIS_SENTINELS entry {0:?} is not a Sentinel address (expected host:port, or a redis:// or rediss:// URL)"
    )]
    Sentinel(String),
    #[error("REDIS_SENTINELS mixes redis:// and rediss:// entries; use one scheme for all")]
    SentinelSchemes,
    #[error(
        "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER (the master's name at the Sentinels) is not"
    )]
    NoMasterName,
    #[error("REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not")]
    MasterWithoutSentinels,
    #[error(
        "REDIS_SENTINEL_MASTER {0:?} is not a master name (letters, digits, '_', '-', '.') or a redis(s)://[user:password@]name URL"
    )]
    MasterName(String),
    #[error("{var} {path:?}: {reason}")]
    File {
        var: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together (a client certificate and its key)"
    )]
    ClientCertPair,
    #[error("{0} is set but no Redis address uses TLS (use rediss:// URLs)")]
    TlsWithoutRediss(&'static str),
    #[error("no Redis is configured: set REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS")]
    NoTarget,
    #[error("CHANNEL_PREFIX {0:?} may only contain letters, digits, '_', '-' and '.'")]
    Prefix(String),
}

/// A checked Redis configuration: what to connect to, with the TLS material
/// already read. Its `Debug` shows no password.
#[derive(Clone)]
pub enum RedisTarget {
    /// `REDIS_URL`.
    Single {
        client: redis::Client,
        shown: String,
    },
    /// `REDIS_CLUSTER_NODES`.
    Cluster {
        seeds: Vec<redis::ConnectionInfo>,
        tls: Option<TlsCertificates>,
        shown: String,
    },
    /// `REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`.
    Sentinel(Box<SentinelTarget>),
}

/// Where the Sentinels are, and how to reach them and the master.
#[derive(Clone)]
pub struct SentinelTarget {
    pub sentinels: Vec<ConnectionAddr>,
    pub sentinel_tls: bool,
    pub sentinel_auth: Auth,
    pub master: String,
    pub master_tls: bool,
    pub master_auth: Auth,
    pub tls: Option<TlsCertificates>,
    pub shown: String,
}

/// An ACL user and password (either may be absent).
#[derive(Clone, Default)]
pub struct Auth {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

impl RedisTarget {
    /// The target as it may be logged: passwords replaced by `***`.
    pub fn describe(&self) -> &str {
        match self {
            RedisTarget::Single { shown, .. } | RedisTarget::Cluster { shown, .. } => shown,
            RedisTarget::Sentinel(sentinel) => &sentinel.shown,
        }
    }

    /// Where it connects, for error messages: `host:port` of one Redis
    /// (with "(TLS)"), the seeds of a Cluster, or the Sentinels. No
    /// credentials.
    pub fn address(&self) -> String {
        let addr = |addr: &ConnectionAddr| match addr {
            ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (TLS)"),
            other => other.to_string(),
        };
        match self {
            RedisTarget::Single { client, .. } => addr(client.get_connection_info().addr()),
            RedisTarget::Cluster { seeds, .. } => seeds
                .iter()
                .map(|s| addr(s.addr()))
                .collect::<Vec<_>>()
                .join(","),
            RedisTarget::Sentinel(sentinel) => sentinel.shown.clone(),
        }
    }

    pub fn topology(&self) -> Topology {
        match self {
            RedisTarget::Cluster { .. } => Topology::Cluster,
            _ => Topology::Single,
        }
    }
}

impl RedisConfig {
    /// A configuration for one Redis at `url` (tests, library users).
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            redis_url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Whether any Redis is named at all.
    pub fn is_set(&self) -> bool {
        self.redis_url.is_some()
            || !self.redis_cluster_nodes.is_empty()
            || !self.redis_sentinels.is_empty()
    }

    /// Blank values (`REDIS_URL=`) count as unset, as a shell user expects.
    pub fn normalized(mut self) -> Self {
        let blank_to_none = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let blank_path = |v: Option<PathBuf>| v.filter(|p| !p.as_os_str().is_empty());
        let list = |v: Vec<String>| -> Vec<String> {
            v.iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect()
        };
        self.redis_url = blank_to_none(self.redis_url).map(|u| u.trim().to_owned());
        self.redis_sentinel_master =
            blank_to_none(self.redis_sentinel_master).map(|u| u.trim().to_owned());
        self.redis_cluster_nodes = list(self.redis_cluster_nodes);
        self.redis_sentinels = list(self.redis_sentinels);
        self.redis_tls_ca_file = blank_path(self.redis_tls_ca_file);
        self.redis_tls_cert_file = blank_path(self.redis_tls_cert_file);
        self.redis_tls_key_file = blank_path(self.redis_tls_key_file);
        self
    }

    /// This configuration, or `default_url` when it names no Redis (the
    /// publisher CLI's and the load tool's default).
    pub fn or_url(self, default_url: &str) -> Self {
        let config = self.normalized();
        if config.is_set() {
            config
        } else {
            Self {
                redis_url: Some(default_url.to_owned()),
                ..config
            }
        }
    }

    /// Checks everything and reads the TLS files: `None` when no Redis is
    /// named. Every misconfiguration is found here, at start.
    pub fn target(&self) -> Result<Option<RedisTarget>, ConfigError> {
        let config = self.clone().normalized();
        let named: Vec<&str> = [
            (config.redis_url.is_some(), "REDIS_URL"),
            (
                !config.redis_cluster_nodes.is_empty(),
                "REDIS_CLUSTER_NODES",
            ),
            (!config.redis_sentinels.is_empty(), "REDIS_SENTINELS"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if named.len() > 1 {
            return Err(ConfigError::TooManyTargets(named.join(" and ")));
        }
        if config.redis_sentinel_master.is_some() && config.redis_sentinels.is_empty() {
            return Err(ConfigError::MasterWithoutSentinels);
        }
        let tls = config.certificates()?;
        let target = if let Some(url) = &config.redis_url {
            let info = url
                .as_str()
                .into_connection_info()
                .map_err(|_| ConfigError::RedisUrl(redact_url(url)))?;
            let uses_tls = is_tls(info.addr());
            let client = match (&tls, uses_tls) {
                (Some(certs), true) => redis::Client::build_with_tls(info, certs.clone()),
                _ => redis::Client::open(info),
            }
            .map_err(|_| ConfigError::RedisUrl(redact_url(url)))?;
            check_tls_used(&config, uses_tls)?;
            RedisTarget::Single {
                client,
                shown: redact_url(url),
            }
        } else if !config.redis_cluster_nodes.is_empty() {
            let mut seeds = Vec::new();
            for seed in &config.redis_cluster_nodes {
                let info = seed
                    .as_str()
                    .into_connection_info()
                    .map_err(|_| ConfigError::ClusterSeed(redact_url(seed)))?;
                if matches!(info.addr(), ConnectionAddr::Unix(_)) {
                    return Err(ConfigError::ClusterSeed(redact_url(seed)));
                }
                seeds.push(info);
            }
            check_tls_used(&config, seeds.iter().any(|s| is_tls(s.addr())))?;
            RedisTarget::Cluster {
                seeds,
                tls,
                shown: shown_list(&config.redis_cluster_nodes),
            }
        } else if !config.redis_sentinels.is_empty() {
            let sentinel = config.sentinel(tls)?;
            check_tls_used(&config, sentinel.sentinel_tls || sentinel.master_tls)?;
            RedisTarget::Sentinel(Box::new(sentinel))
        } else {
            for (path, var) in [
                (&config.redis_tls_ca_file, "REDIS_TLS_CA_FILE"),
                (&config.redis_tls_cert_file, "REDIS_TLS_CERT_FILE"),
            ] {
                if path.is_some() {
                    return Err(ConfigError::TlsWithoutRediss(var));
                }
            }
            return Ok(None);
        };
        Ok(Some(target))
    }

    fn sentinel(&self, tls: Option<TlsCertificates>) -> Result<SentinelTarget, ConfigError> {
        let mut sentinels = Vec::new();
        let mut schemes = Vec::new();
        let mut sentinel_auth = Auth::default();
        for entry in &self.redis_sentinels {
            let bad = || ConfigError::Sentinel(redact_url(entry));
            let url = if entry.contains("://") {
                entry.clone()
            } else if entry.contains('@') || !entry.contains(':') {
                // A bare entry is host:port; credentials need the URL form.
                return Err(bad());
            } else {
                format!("redis://{entry}")
            };
            let info = url.as_str().into_connection_info().map_err(|_| bad())?;
            let settings = info.redis_settings();
            if sentinel_auth.password.is_none() && settings.password().is_some() {
                sentinel_auth = Auth {
                    username: settings.username().map(str::to_owned),
                    password: settings.password().map(str::to_owned),
                };
            }
            match info.addr() {
                ConnectionAddr::Unix(_) => return Err(bad()),
                addr => {
                    schemes.push(is_tls(addr));
                    sentinels.push(addr.clone());
                }
            }
        }
        let sentinel_tls = schemes[0];
        if schemes.iter().any(|s| *s != sentinel_tls) {
            return Err(ConfigError::SentinelSchemes);
        }
        let master = self
            .redis_sentinel_master
            .as_deref()
            .ok_or(ConfigError::NoMasterName)?;
        let (name, master_tls, master_auth) = if master.contains("://") {
            let bad = || ConfigError::MasterName(redact_url(master));
            let info = master.into_connection_info().map_err(|_| bad())?;
            let (ConnectionAddr::Tcp(name, _) | ConnectionAddr::TcpTls { host: name, .. }) =
                info.addr()
            else {
                return Err(bad());
            };
            let settings = info.redis_settings();
            let auth = Auth {
                username: settings.username().map(str::to_owned),
                password: settings.password().map(str::to_owned),
            };
            (name.clone(), is_tls(info.addr()), auth)
        } else {
            // The master shares the Sentinels' credentials and scheme.
            (master.to_owned(), sentinel_tls, sentinel_auth.clone())
        };
        if !is_token(&name) {
            return Err(ConfigError::MasterName(redact_url(master)));
        }
        let shown = format!(
            "master {name} via sentinels {}",
            shown_list(&self.redis_sentinels)
        );
        Ok(SentinelTarget {
            sentinels,
            sentinel_tls,
            sentinel_auth,
            master: name,
            master_tls,
            master_auth,
            tls,
            shown,
        })
    }

    /// Reads and checks `REDIS_TLS_*`: `None` when none is set.
    fn certificates(&self) -> Result<Option<TlsCertificates>, ConfigError> {
        let root_cert = match &self.redis_tls_ca_file {
            Some(path) => Some(read_certificates("REDIS_TLS_CA_FILE", path)?),
            None => None,
        };
        let client_tls = match (&self.redis_tls_cert_file, &self.redis_tls_key_file) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read_certificates("REDIS_TLS_CERT_FILE", cert)?,
                client_key: read_private_key("REDIS_TLS_KEY_FILE", key)?,
            }),
            (None, None) => None,
            _ => return Err(ConfigError::ClientCertPair),
        };
        Ok(
            (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
                client_tls,
                root_cert,
            }),
        )
    }
}

fn is_tls(addr: &ConnectionAddr) -> bool {
    matches!(addr, ConnectionAddr::TcpTls { .. })
}

/// TLS files for a deployment that uses no TLS are a mistake worth stopping
/// for: the operator believes the traffic is encrypted.
fn check_tls_used(config: &RedisConfig, uses_tls: bool) -> Result<(), ConfigError> {
    if uses_tls {
        return Ok(());
    }
    if config.redis_tls_ca_file.is_some() {
        return Err(ConfigError::TlsWithoutRediss("REDIS_TLS_CA_FILE"));
    }
    if config.redis_tls_cert_file.is_some() {
        return Err(ConfigError::TlsWithoutRediss("REDIS_TLS_CERT_FILE"));
    }
    Ok(())
}

fn shown_list(urls: &[String]) -> String {
    urls.iter()
        .map(|u| redact_url(u))
        .collect::<Vec<_>>()
        .join(",")
}

/// `url` as it may be shown in logs, errors and status: the password (and
/// any query, which may carry one) replaced by `***`. Works on URLs
/// (`rediss://user:pw@host:6380/0`) and bare `user:pw@host:port` alike.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            // `redis://secret@host`: a lone userinfo may be a password.
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, _query)) => format!("{path}?***"),
        None => tail.to_owned(),
    };
    format!("{scheme}{authority}{tail}")
}

#[cfg(test)]
mod tests;
