//! Self-hosted Redis high availability on loopback: a master, one replica
//! and three `redis-server --sentinel` processes watching them, for the
//! failover tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{RedisServer, free_port, wait_for_port};

/// The master's name at the Sentinels.
pub const MASTER_NAME: &str = "dashboards";
/// How long the Sentinels wait before they call a silent master down.
const DOWN_AFTER_MS: u64 = 1000;

/// A master, a replica and three Sentinels (quorum 2), killed on drop.
pub struct RedisSentinel {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel_ports: Vec<u16>,
    sentinels: Vec<Child>,
    dir: PathBuf,
}

impl RedisSentinel {
    /// Starts them all and waits until the replica is in sync and every
    /// Sentinel knows the replica and the other Sentinels (so a failover can
    /// be agreed on at once).
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gateway-sentinel-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let master = RedisServer::start();
        let replica = RedisServer::start_with(
            free_port(),
            vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ],
            Vec::new(),
            "redis",
        );
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
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    master.port
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
        let set = Self {
            master,
            replica,
            sentinel_ports,
            sentinels,
            dir,
        };
        wait_until(
            "the Sentinels to find the replica and each other",
            Duration::from_secs(15),
            || {
                set.sentinel_ports.iter().all(|port| {
                    let info = sentinel_cli(*port, &["SENTINEL", "MASTER", MASTER_NAME]);
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

    /// `REDIS_SENTINELS` for this set.
    pub fn sentinels(&self) -> String {
        self.sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The master's port as the first Sentinel that answers names it.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinel_ports.iter().find_map(|port| {
            let reply = sentinel_cli(*port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
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
        wait_until(
            "the Sentinels to promote the replica",
            Duration::from_secs(20),
            || {
                self.sentinel_ports.iter().all(|port| {
                    sentinel_cli(*port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME])
                        .lines()
                        .nth(1)
                        == Some(&replica.to_string())
                }) && self
                    .replica
                    .cli(&["INFO", "replication"])
                    .contains("role:master")
            },
        );
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

fn sentinel_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn wait_until(what: &str, patience: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
