//! The claims of a token whose signature checked out, judged in our own code:
//! jsonwebtoken reads dates as whole seconds and refuses a fractional `exp`
//! (valid per RFC 7519, "NumericDate"), so it is told to check no claims and
//! everything is decided here, with `f64` dates. Pure: the time is passed in.

use serde::Deserialize;

use super::AuthFailure;

/// What a token says, as far as the gateway cares.
#[derive(Debug, Default, Deserialize)]
pub struct Claims {
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    pub iss: Option<String>,
    pub aud: Option<Audience>,
    pub sub: Option<String>,
    /// The message types this token may receive (`None`: every type).
    pub types: Option<Vec<String>>,
}

/// `aud` is one string or an array of them (RFC 7519 §4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn names(&self, wanted: &str) -> bool {
        match self {
            Audience::One(aud) => aud == wanted,
            Audience::Many(auds) => auds.iter().any(|aud| aud == wanted),
        }
    }
}

/// What the claims are checked against.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// `AUTH_JWT_AUDIENCE`: the token's `aud` must name one (empty: not checked).
    pub audience: Vec<String>,
    /// `AUTH_JWT_ISSUER`: the token's `iss` must equal it.
    pub issuer: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway: f64,
}

impl Expect {
    /// Checks `claims` at `now` (seconds since the Unix epoch). Returns the
    /// moment the token stops being good (its `exp` plus the leeway).
    pub fn check(&self, claims: &Claims, now: f64) -> Result<f64, AuthFailure> {
        let exp = claims
            .exp
            .filter(|e| e.is_finite())
            .ok_or(AuthFailure::NoExpiry)?;
        if now > exp + self.leeway {
            return Err(AuthFailure::Expired);
        }
        if let Some(nbf) = claims.nbf {
            if !nbf.is_finite() {
                return Err(AuthFailure::Malformed);
            }
            if now + self.leeway < nbf {
                return Err(AuthFailure::NotYetValid);
            }
        }
        if let Some(issuer) = &self.issuer
            && claims.iss.as_ref() != Some(issuer)
        {
            return Err(AuthFailure::Issuer);
        }
        if !self.audience.is_empty() {
            let aud = claims.aud.as_ref().ok_or(AuthFailure::Audience)?;
            if !self.audience.iter().any(|wanted| aud.names(wanted)) {
                return Err(AuthFailure::Audience);
            }
        }
        Ok(exp + self.leeway)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_700_000_000.0;

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).unwrap()
    }

    fn expect() -> Expect {
        Expect {
            leeway: 10.0,
            ..Expect::default()
        }
    }

    #[test]
    fn dates_may_be_fractional_and_have_ten_seconds_of_leeway() {
        let e = expect();
        let good_until = e.check(&claims(r#"{"exp": 1700000000.5}"#), NOW).unwrap();
        assert_eq!(good_until, 1_700_000_010.5);
        assert_eq!(
            e.check(&claims(r#"{"exp": 1699999989.9}"#), NOW),
            Err(AuthFailure::Expired)
        );
        assert_eq!(e.check(&claims("{}"), NOW), Err(AuthFailure::NoExpiry));
        let far = e.check(&claims(r#"{"exp": 1e300}"#), NOW).unwrap();
        assert!(
            far > NOW,
            "a huge exp is accepted (and never ends), not a panic"
        );
        let soon = r#"{"exp": 1700003600, "nbf": 1700000009.5}"#;
        assert!(e.check(&claims(soon), NOW).is_ok(), "within the leeway");
        let later = r#"{"exp": 1700007200, "nbf": 1700003600}"#;
        assert_eq!(e.check(&claims(later), NOW), Err(AuthFailure::NotYetValid));
    }

    #[test]
    fn audience_and_issuer_are_checked_only_when_configured() {
        let token = claims(r#"{"exp": 1700000100, "aud": ["api", "dash"], "iss": "https://idp/"}"#);
        assert!(
            expect().check(&token, NOW).is_ok(),
            "aud without config is fine"
        );
        let strict = Expect {
            audience: vec!["other".into(), "dash".into()],
            issuer: Some("https://idp/".into()),
            ..expect()
        };
        assert!(strict.check(&token, NOW).is_ok());
        let bare = claims(r#"{"exp": 1700000100}"#);
        assert_eq!(strict.check(&bare, NOW), Err(AuthFailure::Issuer));
        let wrong_aud = claims(r#"{"exp": 1700000100, "aud": "api", "iss": "https://idp/"}"#);
        assert_eq!(strict.check(&wrong_aud, NOW), Err(AuthFailure::Audience));
        let wrong_iss = claims(r#"{"exp": 1700000100, "aud": "dash", "iss": "https://idp"}"#);
        assert_eq!(strict.check(&wrong_iss, NOW), Err(AuthFailure::Issuer));
    }
}
