//! [`RedisServer`]: a real `redis-server` on a free loopback port, killed
//! on drop, and [`send`], one event published to it through the CLI.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{PATIENCE, free_port, publisher_cli, redis_server};

/// A real `redis-server` on a free loopback port; never a standard one.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Extra `redis-server` options (TLS, ACL users, replication).
    args: Vec<String>,
    /// What `redis-cli` needs to reach it (TLS files, credentials).
    cli_args: Vec<String>,
    /// `redis` or `rediss`.
    scheme: &'static str,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(free_port(), Vec::new(), Vec::new(), "redis")
    }

    /// Starts `redis-server` on `port` with extra `args`; `cli_args` are
    /// what `redis-cli` needs to talk to it.
    pub fn start_with(
        port: u16,
        args: Vec<String>,
        cli_args: Vec<String>,
        scheme: &'static str,
    ) -> Self {
        let mut server = Self {
            port,
            child: None,
            args,
            cli_args,
            scheme,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` for a TLS server), no credentials.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    fn spawn(&mut self) {
        let child = redis_server(self.port)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (the README's test command installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the server (all data is lost: it keeps nothing on disk).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs a `redis-cli` command against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(&self.cli_args)
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Locks every client that did not log in (gateways among them) out:
    /// the default user is turned off and its connections killed, while an
    /// `admin` user keeps working. Returns the admin's URL, for publishers
    /// that must go on meanwhile; [`Self::admin_cli`] runs commands as it and
    /// [`Self::let_default_user_back`] ends the lock-out.
    pub fn lock_out_default_user(&self) -> String {
        self.cli(&["ACL", "SETUSER", "admin", "on", ">pw", "~*", "&*", "+@all"]);
        self.cli(&["ACL", "SETUSER", "default", "off"]);
        self.admin_cli(&["CLIENT", "KILL", "USER", "default"]);
        self.url().replace("redis://", "redis://admin:pw@")
    }

    /// Runs a `redis-cli` command as the `admin` of [`Self::lock_out_default_user`].
    pub fn admin_cli(&self, args: &[&str]) -> String {
        let admin = ["--user", "admin", "--pass", "pw", "--no-auth-warning"];
        self.cli(&[&admin[..], args].concat())
    }

    pub fn let_default_user_back(&self) {
        self.admin_cli(&["ACL", "SETUSER", "default", "on"]);
    }
}

/// `publisher send` of one event to `redis` (more settings in `env`); the
/// event's position, as the CLI printed it.
pub fn send(redis: &RedisServer, kind: &str, data: &Value, env: &[(&str, &str)]) -> String {
    let url = redis.url();
    let mut all = vec![("REDIS_URL", url.as_str())];
    all.extend_from_slice(env);
    let output = publisher_cli(&["send", "--type", kind, "--data", &data.to_string()], &all);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
