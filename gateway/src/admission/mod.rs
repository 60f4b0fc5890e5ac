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
pub use self::auth::{AuthFailure, Identity, JWT_LEEWAY_SECS, Jwks, read_key_file};
pub use self::limits::{IpLimits, IpPlace, SWEEP_EVERY};
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

/// A client's place on this node: counted in the node's connections and its
/// IP's (when a per-IP rule is on), until dropped.
pub struct Admitted {
    _user: Option<UserPlace>,
    _ip: Option<IpPlace>,
    _counted: crate::node::ConnectionGuard,
}

#[cfg(test)]
mod tests {
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
}
