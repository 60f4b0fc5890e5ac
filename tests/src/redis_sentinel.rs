//! Self-hosted Redis high availability on loopback: a master, one replica
//! and three `redis-server --sentinel` processes watching them, for the
//! failover tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tls::{TestCa, Usage};
use crate::{RedisServer, free_port, wait_for_port};

/// The master's name at the Sentinels.
pub const MASTER_NAME: &str = "dashboards";
/// How long the Sentinels wait before they call a silent master down.
const DOWN_AFTER_MS: u64 = 1000;

/// How the master and replica are secured. With TLS the Sentinels take TLS
/// only too; they never take a password.
#[derive(Default, Clone, Copy)]
pub struct Secured<'a> {
    /// TLS only, certificates from this CA (replication over TLS too).
    pub tls: Option<&'a TestCa>,
    /// One ACL user (`user`, `password`), the default user off.
    pub acl: Option<(&'a str, &'a str)>,
}

impl Secured<'_> {
    /// `redis-server` options, `redis-cli` options and the URL scheme of a
    /// data node on `port`.
    fn server(&self, port: u16) -> (Vec<String>, Vec<String>, &'static str) {
        let mut args = Vec::new();
        let mut cli = Vec::new();
        let mut scheme = "redis";
        if let Some(ca) = self.tls {
            let files = ca.issue(&format!("redis-{port}"), Usage::Server);
            let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
            args.extend(ca.redis_server_args(port, &files));
            args.extend(
                ["--tls-replication", "yes", "--tls-auth-clients", "no"].map(str::to_owned),
            );
            cli.extend(["--tls", "--cacert", &path(&ca.ca_file)].map(str::to_owned));
            scheme = "rediss";
        }
        if let Some((user, password)) = self.acl {
            args.extend(
                [
                    "--user",
                    user,
                    "on",
                    &format!(">{password}"),
                    "~*",
                    "&*",
                    "+@all",
                    "--user",
                    "default",
                    "off",
                    "--masteruser",
                    user,
                    "--masterauth",
                    password,
                ]
                .map(str::to_owned),
            );
            cli.extend(
                ["--user", user, "--pass", password, "--no-auth-warning"].map(str::to_owned),
            );
        }
        (args, cli, scheme)
    }

    /// Lines of a Sentinel's configuration that let it reach the nodes.
    fn sentinel_config(&self, port: u16) -> String {
        let mut config = String::new();
        if let Some(ca) = self.tls {
            let files = ca.issue(&format!("sentinel-{port}"), Usage::Server);
            // Sentinels talk to each other over TLS too, so they listen on TLS only.
            config.push_str(&format!(
                "port 0\ntls-port {port}\ntls-auth-clients no\n\
                 tls-replication yes\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n",
                files.cert.display(),
                files.key.display(),
                ca.ca_file.display()
            ));
        }
        if let Some((user, password)) = self.acl {
            config.push_str(&format!(
                "sentinel auth-user {MASTER_NAME} {user}\nsentinel auth-pass {MASTER_NAME} {password}\n"
            ));
        }
        config
    }
}

/// A master, a replica and three Sentinels (quorum 2), killed on drop.
pub struct RedisSentinel {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel_ports: Vec<u16>,
    /// What `redis-cli` needs to reach a Sentinel (TLS files).
    sentinel_cli_args: Vec<String>,
    /// `redis` or `rediss`.
    sentinel_scheme: &'static str,
    sentinels: Vec<Child>,
    dir: PathBuf,
}

impl RedisSentinel {
    /// Starts them all and waits until the replica is in sync and every
    /// Sentinel knows the replica and the other Sentinels (so a failover can
    /// be agreed on at once).
    pub fn start() -> Self {
        Self::start_secured(Secured::default())
    }

    /// The same with TLS-only and/or ACL-protected master and replica.
    pub fn start_secured(secured: Secured<'_>) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gateway-sentinel-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // A replica receives the master's data as an RDB file on disk: keep
        // it in the temporary directory, not the tests' working directory.
        // (One directory each.)
        let in_dir = |mut args: Vec<String>, port: u16| {
            let own = dir.join(port.to_string());
            std::fs::create_dir_all(&own).expect("node dir");
            args.extend(["--dir".to_owned(), own.to_string_lossy().into_owned()]);
            args
        };
        let port = free_port();
        let (args, cli, scheme) = secured.server(port);
        let master = RedisServer::start_with(port, in_dir(args, port), cli, scheme);
        let port = free_port();
        let (args, cli, scheme) = secured.server(port);
        let mut args = in_dir(args, port);
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ]);
        let replica = RedisServer::start_with(port, args, cli, scheme);
        wait_until("the replica to sync", Duration::from_secs(10), || {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let config = dir.join(format!("sentinel-{port}.conf"));
            // Sentinels rewrite their configuration file: one each.
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\nlogfile {}\n{}",
                    master.port,
                    dir.join(format!("sentinel-{port}.log")).display(),
                    secured.sentinel_config(port),
                ),
            )
            .expect("sentinel config");
            let child = Command::new("redis-server")
                .arg(&config)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server --sentinel starts");
            sentinels.push(child);
            sentinel_ports.push(port);
        }
        for port in &sentinel_ports {
            wait_for_port(*port, "redis sentinel");
        }
        let (sentinel_cli_args, sentinel_scheme) = match secured.tls {
            Some(ca) => (
                vec![
                    "--tls".to_owned(),
                    "--cacert".to_owned(),
                    ca.ca_file.to_string_lossy().into_owned(),
                ],
                "rediss",
            ),
            None => (Vec::new(), "redis"),
        };
        let set = Self {
            master,
            replica,
            sentinel_ports,
            sentinel_cli_args,
            sentinel_scheme,
            sentinels,
            dir,
        };
        wait_until(
            "the Sentinels to find the replica and each other",
            Duration::from_secs(15),
            || {
                set.sentinel_ports.iter().all(|port| {
                    let info = set.sentinel_cli(*port, &["SENTINEL", "MASTER", MASTER_NAME]);
                    let field = |name: &str| {
                        let lines: Vec<&str> = info.lines().collect();
                        lines
                            .iter()
                            .position(|l| *l == name)
                            .and_then(|i| lines.get(i + 1))
                            .map(|v| v.to_string())
                    };
                    field("num-slaves").as_deref() == Some("1")
                        && field("num-other-sentinels").as_deref() == Some("2")
                })
            },
        );
        set
    }

    /// `REDIS_SENTINELS` for this set (`host:port`, or `rediss://` URLs
    /// when the Sentinels take TLS).
    pub fn sentinels(&self) -> String {
        self.sentinel_ports
            .iter()
            .map(|p| match self.sentinel_scheme {
                "redis" => format!("127.0.0.1:{p}"),
                scheme => format!("{scheme}://127.0.0.1:{p}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The master's port as the first Sentinel that answers names it.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinel_ports.iter().find_map(|port| {
            let reply =
                self.sentinel_cli(*port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
            reply.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// SIGKILLs the master (its data is gone with it: it keeps nothing).
    pub fn kill_master(&mut self) {
        self.master.kill();
    }

    /// Waits until every Sentinel names the replica as master and the
    /// replica says it is one.
    pub fn wait_failover(&self) {
        let replica = self.replica.port;
        let promoted = try_until(Duration::from_secs(20), || {
            self.sentinel_ports.iter().all(|port| {
                self.sentinel_cli(*port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME])
                    .lines()
                    .nth(1)
                    == Some(&replica.to_string())
            }) && self
                .replica
                .cli(&["INFO", "replication"])
                .contains("role:master")
        });
        assert!(
            promoted,
            "timed out waiting for the Sentinels to promote the replica; their logs:\n{}",
            self.logs()
        );
    }
}

impl RedisSentinel {
    /// The last lines of every Sentinel's log, for failure messages.
    pub fn logs(&self) -> String {
        self.sentinel_ports
            .iter()
            .map(|port| {
                let log = std::fs::read_to_string(self.dir.join(format!("sentinel-{port}.log")))
                    .unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                format!(
                    "-- {port}\n{}",
                    lines[lines.len().saturating_sub(30)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        for child in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisSentinel {
    fn sentinel_cli(&self, port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(&self.sentinel_cli_args)
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

fn wait_until(what: &str, patience: Duration, check: impl FnMut() -> bool) {
    assert!(try_until(patience, check), "timed out waiting for {what}");
}

/// Polls `check` until it holds (`true`) or `patience` runs out (`false`).
fn try_until(patience: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience;
    while !check() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}
