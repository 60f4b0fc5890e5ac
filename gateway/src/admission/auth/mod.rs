//! Who may connect: the JWT on `/ws/dashboard` (`?token=` or
//! `Authorization: Bearer`), checked before the upgrade.
//!
//! - [`keys`]: the verification keys and the algorithms each may verify
//!   (`AUTH_JWT_SECRET`, `AUTH_JWT_PUBLIC_KEY_FILE`, the JWKS's keys).
//! - [`jwks`]: an identity provider's key set (`AUTH_JWKS_URL`), cached and
//!   refreshed by a background task, never fetched by the handshake itself.
//! - [`claims`]: `exp`, `nbf`, `aud`, `iss`, judged in our own code with
//!   fractional dates; `sub` and `types` are what the connection carries on.
//!
//! Verification: the header's `alg` picks the keys that may verify it (a
//! `kid` narrows them to that JWKS key); jsonwebtoken checks the signature
//! only, with every claim check of its own off.

mod claims;
mod jwks;
mod keys;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};

use self::claims::{Claims, Expect};
pub use self::jwks::Jwks;
pub use self::keys::Key;
use crate::config::{Config, ConfigError};

/// Why a token was refused: the `cause` label of
/// `gateway_handshakes_rejected_total{reason="auth"}`, and the 401's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Malformed,
    /// No (numeric) `exp`.
    NoExpiry,
    Expired,
    NotYetValid,
    /// No configured key verifies the signature.
    BadSignature,
    /// An `alg` none of the configured keys may verify (`none` included).
    Algorithm,
    /// A `kid` the JWKS does not hold, even after a refetch.
    UnknownKey,
    Audience,
    Issuer,
}

impl AuthFailure {
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::NoExpiry => "no_exp",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Algorithm => "algorithm",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::Audience => "audience",
            AuthFailure::Issuer => "issuer",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => "a token is required: ?token=<JWT> or Authorization: Bearer",
            AuthFailure::Malformed => "the token is malformed",
            AuthFailure::NoExpiry => "the token has no exp claim",
            AuthFailure::Expired => "the token has expired",
            AuthFailure::NotYetValid => "the token is not valid yet (nbf)",
            AuthFailure::BadSignature => "the token's signature is not valid",
            AuthFailure::Algorithm => "the token's algorithm is not accepted",
            AuthFailure::UnknownKey => "the token's key (kid) is not known",
            AuthFailure::Audience => "the token is not meant for this service (aud)",
            AuthFailure::Issuer => "the token is not from the expected issuer (iss)",
        }
    }
}

/// Who a connection is, from its token (all `None` when auth is off).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The token's `sub`: `MAX_CONNECTIONS_PER_USER` counts by it.
    pub sub: Option<String>,
    /// The token's `types` claim: the most this connection may receive.
    pub types: Option<Vec<String>>,
    /// When the token stops being good (`exp` plus the leeway).
    pub good_until: Option<SystemTime>,
}

pub struct Auth {
    /// `AUTH_JWT_SECRET` and `AUTH_JWT_PUBLIC_KEY_FILE`.
    fixed: Vec<Key>,
    jwks: Option<Arc<Jwks>>,
    expect: Expect,
}

impl Auth {
    /// `None` when auth is off (no key of any kind configured). Reads the
    /// public key file.
    pub fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        let mut fixed = Vec::new();
        if let Some(secret) = &config.auth_jwt_secret {
            fixed.push(Key::secret(secret.expose()));
        }
        if let Some(path) = &config.auth_jwt_public_key_file {
            fixed.push(read_key_file(path)?);
        }
        let jwks = match &config.auth_jwks_url {
            Some(url) => Some(Arc::new(Jwks::new(url)?)),
            None => None,
        };
        if fixed.is_empty() && jwks.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            fixed,
            jwks,
            expect: Expect {
                audience: config.auth_jwt_audience.clone(),
                issuer: config.auth_jwt_issuer.clone(),
                leeway: config.auth_jwt_leeway_secs as f64,
            },
        }))
    }

    /// The JWKS cache, for its refresher task.
    pub fn jwks(&self) -> Option<Arc<Jwks>> {
        self.jwks.clone()
    }

    /// Checks a token; an empty one counts as none. May wait (at most
    /// [`jwks::KID_WAIT`]) for a JWKS refetch when the token names a `kid`
    /// the cached set does not hold.
    pub async fn check(&self, token: Option<&str>) -> Result<Identity, AuthFailure> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::Missing)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::Malformed)?;
        let claims = self.verify(token, &header).await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let good_until = self.expect.check(&claims, now)?;
        Ok(Identity {
            sub: claims.sub,
            types: claims.types,
            // `None` (no end) only for an `exp` past what a clock can hold.
            good_until: std::time::Duration::try_from_secs_f64(good_until.max(0.0))
                .ok()
                .and_then(|d| UNIX_EPOCH.checked_add(d)),
        })
    }

    /// The claims of `token` if a configured key verifies its signature.
    async fn verify(&self, token: &str, header: &Header) -> Result<Claims, AuthFailure> {
        let alg = header.alg;
        let fixed = self.fixed.iter().filter(|k| k.verifies(alg));
        // A JWKS holds no HMAC key: an HS* token (a service token) never
        // makes the node look there, or refetch it for its `kid`.
        let hmac = matches!(
            alg,
            jsonwebtoken::Algorithm::HS256
                | jsonwebtoken::Algorithm::HS384
                | jsonwebtoken::Algorithm::HS512
        );
        let Some(jwks) = self.jwks.as_ref().filter(|_| !hmac) else {
            return try_keys(token, header, fixed);
        };
        let mut set = jwks.keys();
        let named = |set: &[Key], kid: &str| set.iter().any(|k| k.kid.as_deref() == Some(kid));
        if let Some(kid) = &header.kid
            && !named(&set, kid)
        {
            if jwks.refetch_for_unknown_kid().await {
                set = jwks.keys();
            }
            if !named(&set, kid) {
                // A fixed key may still verify it (a kid the IdP did not set).
                return match try_keys(token, header, fixed) {
                    Err(AuthFailure::Algorithm | AuthFailure::BadSignature) => {
                        Err(AuthFailure::UnknownKey)
                    }
                    other => other,
                };
            }
        }
        let published = set
            .iter()
            .filter(|k| k.verifies(alg))
            .filter(|k| header.kid.is_none() || k.kid == header.kid);
        try_keys(token, header, fixed.chain(published))
    }
}

/// Reads and parses `AUTH_JWT_PUBLIC_KEY_FILE` (also from `Config::validate`,
/// so a bad file stops the node with exit code 2 like any bad setting).
pub fn read_key_file(path: &std::path::Path) -> Result<Key, ConfigError> {
    let bad = |why: String| ConfigError::AuthKey(path.display().to_string(), why);
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    Key::from_pem(&pem).map_err(bad)
}

/// Tries each key in turn; the claims of the first that verifies.
fn try_keys<'k>(
    token: &str,
    header: &Header,
    keys: impl Iterator<Item = &'k Key>,
) -> Result<Claims, AuthFailure> {
    let mut validation = Validation::new(header.alg);
    // Signature only: every claim is checked by `claims::Expect`.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    let mut failure = AuthFailure::Algorithm;
    for key in keys {
        match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(err) => match err.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidKeyFormat
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidRsaKey(_) => failure = AuthFailure::BadSignature,
                _ => return Err(AuthFailure::Malformed),
            },
        }
    }
    Err(failure)
}
