//! `redis-server` as managed Redis services run it: TLS only (optionally
//! demanding a client certificate), or with an ACL user and the default
//! user switched off.

use crate::tls::{TestCa, Usage};
use crate::{RedisServer, free_port};

impl RedisServer {
    /// A TLS-only `redis-server` (no plain port) with a certificate from
    /// `ca`; with `require_client_cert`, clients must present one signed by
    /// `ca` (`--tls-auth-clients yes`). [`RedisServer::url`] is `rediss://`.
    pub fn start_tls(ca: &TestCa, require_client_cert: bool) -> Self {
        let port = free_port();
        let server = ca.issue(&format!("redis-{port}"), Usage::Server);
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let auth_clients = if require_client_cert { "yes" } else { "no" };
        let mut args = ca.redis_server_args(port, &server);
        args.extend(["--tls-auth-clients".into(), auth_clients.into()]);
        // redis-cli presents the server's own certificate as its client one.
        let cli_args = vec![
            "--tls".into(),
            "--cacert".into(),
            path(&ca.ca_file),
            "--cert".into(),
            path(&server.cert),
            "--key".into(),
            path(&server.key),
        ];
        Self::start_with(port, args, cli_args, "rediss")
    }

    /// A `redis-server` whose only user is `user` with `password` (all
    /// commands, keys and channels); the passwordless default user is off,
    /// as on managed services.
    pub fn start_acl(user: &str, password: &str) -> Self {
        let args = vec![
            "--user".into(),
            user.into(),
            "on".into(),
            format!(">{password}"),
            "~*".into(),
            "&*".into(),
            "+@all".into(),
            "--user".into(),
            "default".into(),
            "off".into(),
        ];
        let cli_args = vec![
            "--user".into(),
            user.into(),
            "--pass".into(),
            password.into(),
            "--no-auth-warning".into(),
        ];
        Self::start_with(free_port(), args, cli_args, "redis")
    }
}
