//! Message type names.
//!
//! Four types are the product's own; publishers may pick any other name that
//! is safe inside a Redis channel name and a Prometheus label.

use thiserror::Error;

pub const METRICS_UPDATE: &str = "metrics_update";
pub const ALERT: &str = "alert";
pub const INTERVENTION: &str = "intervention";
pub const ANALYTICS_UPDATE: &str = "analytics_update";
/// The four types every dashboard understands.
pub const KNOWN: [&str; 4] = [METRICS_UPDATE, ALERT, INTERVENTION, ANALYTICS_UPDATE];

/// Sent by the server only: after a replay (`?since=`).
pub const RECOVERY: &str = "recovery";
/// Sent by the server only: a reply to input it does not understand.
pub const ERROR: &str = "error";
/// Sent by the server only: the end of a client's current state (`?state=1`).
pub const STATE: &str = "state";

pub const MAX_KIND_LEN: usize = 64;
/// Most types one `?types=` may name: enough for any dashboard, and it keeps
/// parsing a hostile list cheap.
pub const MAX_FILTER_TYPES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KindError {
    #[error("message type is empty")]
    Empty,
    #[error("message type is longer than {MAX_KIND_LEN} characters")]
    TooLong,
    #[error("message type {0:?} may only contain letters, digits, '_', '-' and '.'")]
    BadCharacter(String),
    #[error("message type {0:?} is reserved for messages the server itself sends")]
    Reserved(String),
    #[error("at most {MAX_FILTER_TYPES} types may be asked for")]
    TooManyTypes,
}

/// Checks that `kind` may be published: 1–64 characters of `[A-Za-z0-9_.-]`
/// (so it is safe in a channel name, never a glob), and not one of the
/// server's own types.
pub fn validate_kind(kind: &str) -> Result<(), KindError> {
    if kind.is_empty() {
        return Err(KindError::Empty);
    }
    if kind.len() > MAX_KIND_LEN {
        return Err(KindError::TooLong);
    }
    if !kind
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(KindError::BadCharacter(kind.to_owned()));
    }
    if kind == RECOVERY || kind == ERROR || kind == STATE {
        return Err(KindError::Reserved(kind.to_owned()));
    }
    Ok(())
}

/// Which broadcast types a client asked for with `?types=a,b`.
///
/// The initial `analytics_update`, pong replies, `recovery` and `error` are
/// addressed to the client itself and always pass; the filter only decides
/// which broadcast events reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeFilter {
    /// `None`: everything.
    only: Option<Vec<String>>,
}

impl TypeFilter {
    /// Parses the value of `?types=`. Blank entries are ignored; an empty
    /// list means "everything" (what `?types=` alone would suggest). Linear
    /// in the input: at most [`MAX_FILTER_TYPES`] entries are looked at
    /// before a longer list is refused, each at most [`MAX_KIND_LEN`] long.
    pub fn parse(value: &str) -> Result<Self, KindError> {
        let mut only: Vec<String> = Vec::new();
        for kind in value.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            if only.len() == MAX_FILTER_TYPES {
                return Err(KindError::TooManyTypes);
            }
            validate_kind(kind)?;
            only.push(kind.to_owned());
        }
        only.sort_unstable();
        only.dedup();
        Ok(Self {
            only: (!only.is_empty()).then_some(only),
        })
    }

    /// Exactly `types` (none at all when empty): what a token's `types`
    /// claim allows.
    pub fn exactly(types: &[String]) -> Self {
        let mut only = types.to_vec();
        only.sort_unstable();
        only.dedup();
        Self { only: Some(only) }
    }

    /// The types this filter lets through; `None`: every type.
    pub fn types(&self) -> Option<&[String]> {
        self.only.as_deref()
    }

    pub fn allows(&self, kind: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|k| k == kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_custom_types_are_valid() {
        for kind in KNOWN.iter().copied().chain(["test_message", "a.b-c_9"]) {
            assert_eq!(validate_kind(kind), Ok(()), "{kind}");
        }
    }

    #[test]
    fn unsafe_or_reserved_types_are_refused() {
        assert_eq!(validate_kind(""), Err(KindError::Empty));
        assert_eq!(validate_kind(&"x".repeat(65)), Err(KindError::TooLong));
        assert!(matches!(
            validate_kind("a*"),
            Err(KindError::BadCharacter(_))
        ));
        assert!(matches!(
            validate_kind("a:b"),
            Err(KindError::BadCharacter(_))
        ));
        assert!(matches!(
            validate_kind("recovery"),
            Err(KindError::Reserved(_))
        ));
        assert!(matches!(
            validate_kind("error"),
            Err(KindError::Reserved(_))
        ));
    }

    #[test]
    fn type_filter_lets_through_only_what_was_asked() {
        let filter = TypeFilter::parse("alert, intervention,,alert").unwrap();
        assert!(filter.allows("alert"));
        assert!(filter.allows("intervention"));
        assert!(!filter.allows("metrics_update"));
        assert!(TypeFilter::parse("").unwrap().allows("anything"));
        assert!(TypeFilter::parse("alert,bad type").is_err());
    }

    #[test]
    fn a_hostile_type_list_is_refused_after_the_cap() {
        let many = vec!["a"; MAX_FILTER_TYPES].join(",");
        assert!(
            TypeFilter::parse(&many).is_ok(),
            "repeats are one type each"
        );
        let over: Vec<String> = (0..=MAX_FILTER_TYPES).map(|i| format!("t{i}")).collect();
        assert_eq!(
            TypeFilter::parse(&over.join(",")),
            Err(KindError::TooManyTypes)
        );
        let huge = "x,".repeat(30_000);
        assert_eq!(TypeFilter::parse(&huge), Err(KindError::TooManyTypes));
    }
}
