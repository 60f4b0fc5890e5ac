//! Admission control at the handshake: who may connect, how many, how fast.
//!
//! - [`auth`]: who (the JWT: a secret, a PEM public key or an identity
//!   provider's JWKS).
//! - [`users`]: how many per user (`MAX_CONNECTIONS_PER_USER`, by `sub`).
//! - [`limits`]: how many and how fast from one address (a table kept only
//!   while a per-IP rule is on, swept by a background task, never on the
//!   handshake path).
//! - here: the node-wide cap and the client's address behind trusted proxies.
//!
//! Everything here answers before the upgrade, with an HTTP status a load
//! balancer and a browser understand: 401 (no valid token), 403 (a type the
//! token does not allow), 503 (node full), 429 (too many connections from
//! one IP or one user, or handshakes too fast).
//! The per-IP rules see the real client address only through proxies listed
//! in `TRUSTED_PROXIES`; anyone else's `X-Forwarded-For` is ignored, so a
//! client cannot dodge its limit by inventing one.

mod auth;
mod limits;
mod users;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::HeaderMap;
use ipnet::IpNet;

use self::auth::Auth;
pub use self::auth::{AuthFailure, Identity, Jwks};
pub use self::limits::{IpLimits, IpPlace, SWEEP_EVERY, ip_key};
use self::users::{UserLimits, UserPlace};
use crate::config::{Config, ConfigError};
use crate::node::Node;

/// Why a handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or one that is malformed, wrongly signed, expired, for
    /// another audience...
    Unauthorized(AuthFailure),
    /// `?types=` names a type the token's `types` claim does not allow.
    ForbiddenType(String),
    /// `MAX_CONNECTIONS_PER_USER` reached for the token's `sub`.
    UserFull,
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
            Refusal::ForbiddenType(_) => "forbidden_type",
            Refusal::UserFull => "user_limit",
            Refusal::NodeFull => "capacity",
            Refusal::IpFull => "ip_limit",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

/// The three concerns of admission, each in its own module, behind one
/// door the handshake calls.
pub struct Admission {
    auth: Option<Auth>,
    max_connections: u64,
    trusted: Vec<IpNet>,
    /// `None` when no per-IP rule is on: then no table is kept at all.
    per_ip: Option<Arc<IpLimits>>,
    /// `None` when `MAX_CONNECTIONS_PER_USER` is off.
    per_user: Option<Arc<UserLimits>>,
}

impl Admission {
    /// Reads `AUTH_JWT_PUBLIC_KEY_FILE` when set: a bad key stops the node.
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            auth: Auth::from_config(config)?,
            max_connections: config.max_connections,
            trusted: config.trusted_proxies.clone(),
            per_ip: IpLimits::from_config(config).map(Arc::new),
            per_user: UserLimits::new(config.max_connections_per_user).map(Arc::new),
        })
    }

    /// The JWKS cache, for its refresher task (`None`: no `AUTH_JWKS_URL`).
    pub fn jwks(&self) -> Option<Arc<Jwks>> {
        self.auth.as_ref().and_then(Auth::jwks)
    }

    /// The per-IP table, for the sweeper task (`None`: no per-IP rule).
    pub fn ip_limits(&self) -> Option<Arc<IpLimits>> {
        self.per_ip.clone()
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy,
    /// the right-most `X-Forwarded-For` entry that is not itself trusted.
    ///
    /// Each entry was written by the hop to its right, so the list is read
    /// from the right and believed only as far as trusted proxies vouch for
    /// it. An entry may carry a port (`1.2.3.4:5678`, `[2001:db8::1]:443`,
    /// as some proxies append it). One that is no address (`unknown`, a
    /// typo, bytes that are not text) is where the trail ends: the client is
    /// counted as the trusted hop that wrote it, never as an entry further
    /// left, which the client itself may have written.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.ip().to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let entries: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .collect();
        let mut vouched_by = peer;
        for entry in entries.into_iter().rev() {
            match forwarded_ip(entry) {
                Some(ip) if self.is_trusted(ip) => vouched_by = ip,
                Some(ip) => return ip,
                None => return vouched_by,
            }
        }
        vouched_by
    }

    /// Whether `ip` is one of `TRUSTED_PROXIES` (whose `X-Forwarded-*`
    /// headers are believed).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Checks the `?token=` (or `Authorization: Bearer`) when auth is on;
    /// who the client is (an anonymous [`Identity`] when auth is off).
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Identity, Refusal> {
        match &self.auth {
            Some(auth) => auth.check(token).await.map_err(Refusal::Unauthorized),
            None => Ok(Identity::default()),
        }
    }

    /// Takes a place for a client from `ip` (and user `sub`, when the token
    /// has one), or says why there is none. The places are given back when
    /// the returned [`Admitted`] is dropped.
    pub fn admit(
        &self,
        ip: IpAddr,
        sub: Option<&str>,
        node: &Arc<Node>,
    ) -> Result<Admitted, Refusal> {
        let user_place = match (&self.per_user, sub) {
            (Some(limits), Some(sub)) => Some(limits.admit(sub)?),
            _ => None,
        };
        let ip_place = match &self.per_ip {
            Some(limits) => Some(limits.admit(ip)?),
            None => None,
        };
        let counted = node
            .try_connection(self.max_connections)
            .ok_or(Refusal::NodeFull)?;
        Ok(Admitted {
            _user: user_place,
            _ip: ip_place,
            _counted: counted,
        })
    }

    /// Adds user `sub`'s place to `admitted`, for a client whose token came
    /// after the upgrade (`?auth=frame`, [`crate::ws`]): its address and the
    /// node's count were taken at the handshake, with `sub` unknown then.
    pub fn admit_user(&self, admitted: &mut Admitted, sub: Option<&str>) -> Result<(), Refusal> {
        if let (Some(limits), Some(sub)) = (&self.per_user, sub) {
            admitted._user = Some(limits.admit(sub)?);
        }
        Ok(())
    }
}

/// One `X-Forwarded-For` entry as an address: `ip`, `ipv4:port`, `[ipv6]`
/// or `[ipv6]:port`; `None` for anything else.
fn forwarded_ip(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry).ok()?.trim();
    let ip = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|addr| addr.ip()))
        .or_else(|_| {
            entry
                .strip_prefix('[')
                .and_then(|v6| v6.strip_suffix(']'))
                .unwrap_or_default()
                .parse::<std::net::Ipv6Addr>()
                .map(IpAddr::V6)
        })
        .ok()?;
    Some(ip.to_canonical())
}

/// A client's place on this node: counted in the node's connections and its
/// IP's (when a per-IP rule is on), until dropped.
pub struct Admitted {
    _user: Option<UserPlace>,
    _ip: Option<IpPlace>,
    _counted: crate::node::ConnectionGuard,
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn admission(trusted: &[&str]) -> Admission {
        let config = Config {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            ..Config::default()
        };
        Admission::new(&config).unwrap()
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
    fn forwarded_entries_with_ports_are_read_and_unreadable_ones_end_the_trail() {
        let peer: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let behind_lb = admission(&["10.0.0.0/8"]);
        let client = |value: &str| behind_lb.client_ip(peer, &xff(value)).to_string();
        // A proxy that appends ip:port: its entry wins over the client's own.
        assert_eq!(client("6.6.6.6, 1.2.3.4:5678"), "1.2.3.4");
        assert_eq!(client("6.6.6.6, [2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(client("6.6.6.6, [2001:db8::1]"), "2001:db8::1");
        assert_eq!(client("6.6.6.6, 2001:db8::1"), "2001:db8::1");
        assert_eq!(client("6.6.6.6, [::ffff:1.2.3.4]:80"), "1.2.3.4");
        // What the trusted hop wrote is no address: the client is counted as
        // that hop, never as the client-supplied entry further left.
        assert_eq!(client("6.6.6.6, unknown"), "10.0.0.5");
        assert_eq!(client("6.6.6.6, , 10.0.0.9"), "10.0.0.9");
        assert_eq!(client("6.6.6.6, 1.2.3.4:port"), "10.0.0.5");
        assert_eq!(client("6.6.6.6, fe80::1%eth0"), "10.0.0.5");
        // Bytes that are not text in one header line do not hide it.
        let mut headers = xff("6.6.6.6");
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe, 1.2.3.4").unwrap(),
        );
        assert_eq!(behind_lb.client_ip(peer, &headers).to_string(), "1.2.3.4");
        let mut headers = xff("6.6.6.6");
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(behind_lb.client_ip(peer, &headers).to_string(), "10.0.0.5");
    }
}
