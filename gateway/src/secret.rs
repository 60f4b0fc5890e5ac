//! [`Secret`]: a setting that must never be printed (`PUBLISH_API_KEY`,
//! `AUTH_JWT_SECRET`). Its `Debug` is `Secret(***)`, so `{:?}` of a whole
//! [`crate::Config`] — in a log line, a panic, a test failure — shows none
//! of them; it has no `Display`, and no `Deref` to the string (through
//! which `.to_string()` or `{}` would print it after all): code that needs
//! the value says so with [`Secret::expose`].

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the one place that uses it (comparing a
    /// bearer key, building a verification key).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Empty or only spaces: a variable set to nothing (`PUBLISH_API_KEY=`),
    /// which counts as unset.
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What clap parses a flag or variable into.
impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use publisher::RedisConfig;

    #[test]
    fn a_config_with_secrets_set_prints_none_of_them() {
        let config = Config {
            publish_api_key: Some("publish-k3y".into()),
            auth_jwt_secret: Some("jwt-s3cret".into()),
            redis: RedisConfig {
                redis_sentinels: vec!["redis://sentinel:sentinel-pw@10.0.0.1:26379".into()],
                redis_sentinel_master: Some("rediss://app:master-pw@mymaster".into()),
                ..RedisConfig::url("rediss://app:redis-pw@cache.example.com:6380")
            },
            ..Config::default()
        };
        let shown = format!("{config:?} {config:#?}");
        for secret in [
            "publish-k3y",
            "jwt-s3cret",
            "sentinel-pw",
            "master-pw",
            "redis-pw",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("Secret(***)"), "{shown}");
        assert!(
            shown.contains("rediss://app:***@cache.example.com:6380"),
            "{shown}"
        );
        assert_eq!(
            config.publish_api_key.as_ref().map(Secret::expose),
            Some("publish-k3y")
        );
    }
}
