//! Admission control at the handshake: who may connect, how many, how fast.
//!
//! Everything here answers before the upgrade, with an HTTP status a load
//! balancer and a browser understand: 401 (no valid token), 503 (node
//! full), 429 (too many connections from one IP, or handshakes too fast).
//! The per-IP rules see the real client address only through proxies listed
//! in `TRUSTED_PROXIES`; anyone else's `X-Forwarded-For` is ignored, so a
//! client cannot dodge its limit by inventing one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::HeaderMap;
use ipnet::IpNet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::Config;
use crate::node::Node;

/// Seconds of clock skew tolerated on a token's `exp`.
pub const JWT_LEEWAY_SECS: u64 = 10;
/// Sweep idle per-IP entries once the table holds this many.
const IP_TABLE_SWEEP_AT: usize = 4096;

/// Why a handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or one that is malformed, wrongly signed or expired.
    Unauthorized(String),
    /// `MAX_CONNECTIONS` reached on this node.
    NodeFull,
    /// `MAX_CONNECTIONS_PER_IP` reached for this client address.
    IpFull,
    /// More than `HANDSHAKE_RATE_PER_IP` handshakes a second from this address.
    RateLimited,
}

impl Refusal {
    /// The `reason` label of `gateway_handshakes_rejected_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Unauthorized(_) => "auth",
            Refusal::NodeFull => "capacity",
            Refusal::IpFull => "ip_limit",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[allow(dead_code)]
    exp: u64,
}

struct Jwt {
    key: DecodingKey,
    validation: Validation,
}

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(burst: f64) -> Self {
        Self {
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: f64, burst: f64) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refilled_by(&self, now: Instant, rate: f64, burst: f64) -> bool {
        self.tokens + now.duration_since(self.at).as_secs_f64() * rate >= burst
    }
}

/// The burst allowed for a per-second `rate`: two seconds' worth, at least 1.
pub fn burst_for(rate: f64) -> f64 {
    (rate * 2.0).max(1.0)
}

#[derive(Debug)]
struct IpEntry {
    connections: u32,
    handshakes: Bucket,
}

pub struct Admission {
    jwt: Option<Jwt>,
    max_connections: u64,
    max_per_ip: u32,
    handshake_rate: f64,
    trusted: Vec<IpNet>,
    ips: Mutex<HashMap<IpAddr, IpEntry>>,
}

impl Admission {
    pub fn new(config: &Config) -> Self {
        let jwt = config.auth_jwt_secret.as_ref().map(|secret| {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.leeway = JWT_LEEWAY_SECS;
            validation.validate_exp = true;
            validation.set_required_spec_claims(&["exp"]);
            Jwt {
                key: DecodingKey::from_secret(secret.as_bytes()),
                validation,
            }
        });
        Self {
            jwt,
            max_connections: config.max_connections,
            max_per_ip: config.max_connections_per_ip,
            handshake_rate: config.handshake_rate_per_ip,
            trusted: config.trusted_proxies.clone(),
            ips: Mutex::default(),
        }
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy,
    /// the right-most `X-Forwarded-For` entry that is not itself trusted.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.ip().to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect();
        forwarded
            .iter()
            .rev()
            .find(|ip| !self.is_trusted(**ip))
            .copied()
            .unwrap_or(peer)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Checks the `?token=` (or `Authorization: Bearer`) when auth is on.
    pub fn authenticate(&self, token: Option<&str>) -> Result<(), Refusal> {
        let Some(jwt) = &self.jwt else {
            return Ok(());
        };
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Refusal::Unauthorized("a token is required: ?token=<JWT>".into()))?;
        jsonwebtoken::decode::<Claims>(token, &jwt.key, &jwt.validation)
            .map(|_| ())
            .map_err(|err| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match err.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::InvalidSignature => "the token's signature is not valid",
                    ErrorKind::MissingRequiredClaim(_) => "the token has no exp claim",
                    ErrorKind::InvalidAlgorithm => "the token is not signed with HS256",
                    _ => "the token is malformed",
                };
                Refusal::Unauthorized(why.into())
            })
    }

    /// Takes a place for a client from `ip`, or says why there is none. The
    /// place is given back when the returned [`Admitted`] is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, node: &Arc<Node>) -> Result<Admitted, Refusal> {
        let mut ips = self.ips.lock().unwrap_or_else(|p| p.into_inner());
        if ips.len() >= IP_TABLE_SWEEP_AT {
            let now = Instant::now();
            let (rate, burst) = (self.handshake_rate, burst_for(self.handshake_rate));
            ips.retain(|_, e| e.connections > 0 || !e.handshakes.refilled_by(now, rate, burst));
        }
        let burst = burst_for(self.handshake_rate);
        let entry = ips.entry(ip).or_insert_with(|| IpEntry {
            connections: 0,
            handshakes: Bucket::full(burst),
        });
        if self.handshake_rate > 0.0 && !entry.handshakes.take(self.handshake_rate, burst) {
            return Err(Refusal::RateLimited);
        }
        if self.max_per_ip > 0 && entry.connections >= self.max_per_ip {
            return Err(Refusal::IpFull);
        }
        let counted = node
            .try_connection(self.max_connections)
            .ok_or(Refusal::NodeFull)?;
        entry.connections += 1;
        Ok(Admitted {
            admission: self.clone(),
            ip,
            _counted: counted,
        })
    }
}

/// A client's place on this node: counted in the node's connections and its
/// IP's, until dropped.
pub struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
    _counted: crate::node::ConnectionGuard,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut ips = self.admission.ips.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = ips.get_mut(&self.ip) {
            entry.connections = entry.connections.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(trusted: &[&str]) -> Admission {
        let config = Config {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            ..Config::default()
        };
        Admission::new(&config)
    }

    fn xff(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let peer: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let open = admission(&[]);
        assert_eq!(
            open.client_ip(peer, &xff("1.2.3.4")),
            peer.ip(),
            "untrusted peer: ignored"
        );
        let behind_lb = admission(&["10.0.0.0/8"]);
        assert_eq!(
            behind_lb.client_ip(peer, &xff("1.2.3.4")).to_string(),
            "1.2.3.4"
        );
        // A client-forged entry on the left is not believed over what the LB saw.
        assert_eq!(
            behind_lb
                .client_ip(peer, &xff("6.6.6.6, 1.2.3.4, 10.0.0.9"))
                .to_string(),
            "1.2.3.4"
        );
        assert_eq!(behind_lb.client_ip(peer, &HeaderMap::new()), peer.ip());
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut bucket = Bucket::full(2.0);
        assert!(bucket.take(1.0, 2.0));
        assert!(bucket.take(1.0, 2.0));
        assert!(!bucket.take(1.0, 2.0));
    }
}
