//! Who may connect: the JWT on `/ws/dashboard` (`?token=` or
//! `Authorization: Bearer`), checked before the upgrade.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::Refusal;
use crate::config::Config;

/// Seconds of clock skew tolerated on a token's `exp`.
pub const JWT_LEEWAY_SECS: u64 = 10;

#[derive(Debug, Deserialize)]
struct Claims {
    #[allow(dead_code)]
    exp: u64,
}

pub(super) struct Auth {
    key: DecodingKey,
    validation: Validation,
}

impl Auth {
    /// `None` when auth is off (no `AUTH_JWT_SECRET`).
    pub(super) fn from_config(config: &Config) -> Option<Self> {
        config.auth_jwt_secret.as_ref().map(|secret| {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.leeway = JWT_LEEWAY_SECS;
            validation.validate_exp = true;
            validation.set_required_spec_claims(&["exp"]);
            Self {
                key: DecodingKey::from_secret(secret.as_bytes()),
                validation,
            }
        })
    }

    pub(super) fn check(&self, token: Option<&str>) -> Result<(), Refusal> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Refusal::Unauthorized("a token is required: ?token=<JWT>".into()))?;
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
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
}
