//! Verification keys and the algorithms each may verify.
//!
//! Each key is paired with the algorithms of its kind, and a token is tried
//! only against keys whose list holds its header's `alg`: `none` is never
//! in a list, a secret verifies only HS*, and a public key never verifies
//! an HS* token (the "HS256 signed with the public key" confusion).

use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// One key that may verify a token.
pub struct Key {
    /// The JWKS `kid` (static keys have none).
    pub kid: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

impl Key {
    pub fn verifies(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }

    /// `AUTH_JWT_SECRET`: HS256, HS384 and HS512.
    pub fn secret(secret: &str) -> Self {
        Self {
            kid: None,
            algorithms: HMAC.to_vec(),
            key: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// `AUTH_JWT_PUBLIC_KEY_FILE`: an RSA (RS*, PS*), EC P-256 (ES256),
    /// EC P-384 (ES384) or Ed25519 (EdDSA) public key in PEM.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let key = |key, algorithms: &[Algorithm]| Self {
            kid: None,
            algorithms: algorithms.to_vec(),
            key,
        };
        if let Ok(rsa) = DecodingKey::from_rsa_pem(pem) {
            return Ok(key(rsa, &RSA));
        }
        if let Ok(ec) = DecodingKey::from_ec_pem(pem) {
            // The uncompressed point: 0x04, then x and y.
            return match ec.as_bytes().len() {
                65 => Ok(key(ec, &[Algorithm::ES256])),
                97 => Ok(key(ec, &[Algorithm::ES384])),
                _ => Err("an EC key on a curve other than P-256 or P-384".into()),
            };
        }
        if let Ok(ed) = DecodingKey::from_ed_pem(pem) {
            return Ok(key(ed, &[Algorithm::EdDSA]));
        }
        Err("not an RSA, EC (P-256, P-384) or Ed25519 public key in PEM".into())
    }

    /// A key of an identity provider's JWKS; `None` for keys it cannot use
    /// to verify a signature: encryption keys, symmetric (`oct`) keys, which
    /// have no place in a published set, and unsupported curves.
    pub fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return None;
        }
        let by_kind: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA.to_vec(),
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return None,
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                vec![Algorithm::EdDSA]
            }
            AlgorithmParameters::OctetKeyPair(_) | AlgorithmParameters::OctetKey(_) => {
                return None;
            }
        };
        // A key that names its `alg` verifies that one only (if it fits its kind).
        let algorithms = match &jwk.common.key_algorithm {
            None => by_kind,
            Some(named) => {
                let named = Algorithm::from_str(&named.to_string()).ok()?;
                by_kind.into_iter().filter(|alg| *alg == named).collect()
            }
        };
        if algorithms.is_empty() {
            return None;
        }
        Some(Self {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key: DecodingKey::from_jwk(jwk).ok()?,
        })
    }
}
