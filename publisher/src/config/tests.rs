//! What an operator sees of a configuration: passwords never shown, every
//! mistake named at start.

use super::*;

#[test]
fn redact_url_hides_every_password_form() {
    for (url, shown) in [
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
        (
            "rediss://app:s3cret@cache.example.com:6380/0",
            "rediss://app:***@cache.example.com:6380/0",
        ),
        (
            "rediss://:s3cret@cache.example.com:6380",
            "rediss://:***@cache.example.com:6380",
        ),
        ("redis://s3cret@host", "redis://***@host"),
        ("redis://u:p%40ss@word@host:1", "redis://u:***@host:1"),
        ("redis://host/0?password=s3cret", "redis://host/0?***"),
        ("app:s3cret@10.0.0.1:26379", "app:***@10.0.0.1:26379"),
        ("10.0.0.1:26379", "10.0.0.1:26379"),
    ] {
        assert_eq!(redact_url(url), shown);
        assert!(!redact_url(url).contains("s3cret"));
    }
}

fn sentinels(list: &[&str], master: Option<&str>) -> RedisConfig {
    RedisConfig {
        redis_sentinels: list.iter().map(|s| (*s).to_owned()).collect(),
        redis_sentinel_master: master.map(str::to_owned),
        ..RedisConfig::default()
    }
}

#[test]
fn one_target_at_most_and_sentinels_need_a_master_name() {
    assert!(RedisConfig::default().target().unwrap().is_none());
    let both = RedisConfig {
        redis_url: Some("redis://a:1".into()),
        ..sentinels(&["b:26379"], Some("mymaster"))
    };
    assert_eq!(
        both.target().unwrap_err(),
        ConfigError::TooManyTargets("REDIS_URL and REDIS_SENTINELS".into())
    );
    assert_eq!(
        sentinels(&["b:26379"], None).target().unwrap_err(),
        ConfigError::NoMasterName
    );
    assert_eq!(
        sentinels(&[], Some("mymaster")).target().unwrap_err(),
        ConfigError::MasterWithoutSentinels
    );
    let target = sentinels(&["a:26379", "b:26379"], Some("mymaster"))
        .target()
        .unwrap()
        .unwrap();
    assert_eq!(
        target.describe(),
        "master mymaster via sentinels a:26379,b:26379"
    );
}

#[test]
fn credentials_are_used_but_never_shown() {
    let config = sentinels(
        &["redis://sentinel:pw1@a:26379"],
        Some("rediss://app:pw2@mymaster"),
    );
    let Some(RedisTarget::Sentinel(target)) = config.target().unwrap() else {
        panic!("a sentinel target");
    };
    assert_eq!(target.sentinel_auth.password.as_deref(), Some("pw1"));
    assert_eq!(target.master_auth.username.as_deref(), Some("app"));
    assert_eq!(target.master_auth.password.as_deref(), Some("pw2"));
    assert!(target.master_tls && !target.sentinel_tls);
    assert!(!target.shown.contains("pw1"));

    let err = RedisConfig::url("http://app:hunter2@x")
        .target()
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let single = RedisConfig::url("rediss://app:hunter2@x:6380")
        .target()
        .unwrap()
        .unwrap();
    assert!(!format!("{single:?}").contains("hunter2"));
}

#[test]
fn a_redis_config_prints_no_password() {
    let config = RedisConfig {
        redis_url: Some("rediss://app:url-pw@cache.example.com:6380/0?password=q-pw".into()),
        redis_cluster_nodes: vec!["redis://:seed-pw@a:7000".into(), "redis://b:7001".into()],
        redis_sentinels: vec![
            "redis://sentinel:sentinel-pw@s1:26379".into(),
            "app:bare-pw@s2:26379".into(),
        ],
        redis_sentinel_master: Some("rediss://app:master-pw@mymaster".into()),
        redis_tls_ca_file: Some("/etc/redis-tls/ca.pem".into()),
        ..RedisConfig::default()
    };
    let shown = format!("{config:?} {config:#?}");
    for password in [
        "url-pw",
        "q-pw",
        "seed-pw",
        "sentinel-pw",
        "bare-pw",
        "master-pw",
    ] {
        assert!(!shown.contains(password), "{password} in {shown}");
    }
    for kept in [
        "rediss://app:***@cache.example.com:6380/0?***",
        "redis://b:7001",
        "app:***@s2:26379",
        "/etc/redis-tls/ca.pem",
    ] {
        assert!(shown.contains(kept), "{kept} not in {shown}");
    }
}

#[test]
fn tls_files_are_checked_at_start() {
    let missing = RedisConfig {
        redis_tls_ca_file: Some("/nonexistent/ca.pem".into()),
        ..RedisConfig::url("rediss://x:6380")
    };
    let err = missing.target().unwrap_err().to_string();
    assert!(
        err.contains("REDIS_TLS_CA_FILE") && err.contains("cannot be read"),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("redis-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let bad = RedisConfig {
        redis_tls_ca_file: Some(junk.clone()),
        ..RedisConfig::url("rediss://x:6380")
    };
    let err = bad.target().unwrap_err().to_string();
    assert!(err.contains("no PEM certificate"), "{err}");
    let half = RedisConfig {
        redis_tls_cert_file: Some(junk.clone()),
        ..RedisConfig::url("rediss://x:6380")
    };
    assert_eq!(half.target().unwrap_err(), ConfigError::ClientCertPair);
    let _ = std::fs::remove_dir_all(&dir);

    let plain = RedisConfig {
        redis_tls_ca_file: Some("/etc/hostname".into()),
        ..RedisConfig::url("redis://x:6379")
    };
    assert!(matches!(
        plain.target(),
        Err(ConfigError::TlsWithoutRediss(_)) | Err(ConfigError::File { .. })
    ));
}
