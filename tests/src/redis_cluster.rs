//! A real Redis Cluster on loopback for the cluster-mode tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tls::{TestCa, Usage};
use crate::{free_port, redis_server, wait_for_child_port};

/// A real Redis Cluster on loopback: `masters` masters with one replica
/// each, `redis-server` processes in cluster mode joined with
/// `redis-cli --cluster create`. Killed and removed on drop.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Option<Child>>,
    dir: PathBuf,
    /// What `redis-cli` needs (TLS files).
    cli_args: Vec<String>,
    /// `redis` or `rediss`.
    scheme: &'static str,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Self {
        Self::start_with(masters, None)
    }

    /// The same with TLS only (clients, replication and the cluster bus),
    /// certificates from `ca`: [`RedisCluster::seeds`] are `rediss://`.
    pub fn start_tls(masters: usize, ca: &TestCa) -> Self {
        Self::start_with(masters, Some(ca))
    }

    fn start_with(masters: usize, tls: Option<&TestCa>) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gateway-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ports = cluster_ports(masters * 2);
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let (cli_args, scheme) = match tls {
            Some(ca) => {
                // redis-cli presents a client certificate of its own.
                let cli = ca.issue("cluster-cli", Usage::Client);
                (
                    vec![
                        "--tls".to_owned(),
                        "--cacert".to_owned(),
                        path(&ca.ca_file),
                        "--cert".to_owned(),
                        path(&cli.cert),
                        "--key".to_owned(),
                        path(&cli.key),
                    ],
                    "rediss",
                )
            }
            None => (Vec::new(), "redis"),
        };
        let mut cluster = Self {
            ports: ports.clone(),
            children: Vec::new(),
            dir,
            cli_args,
            scheme,
        };
        for port in &ports {
            let node_dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let tls_args: Vec<String> = match tls {
                Some(ca) => {
                    let files = ca.issue(&format!("cluster-{port}"), Usage::Server);
                    let mut args = ca.redis_server_args(*port, &files);
                    args.extend(
                        ["--tls-cluster", "yes", "--tls-replication", "yes"].map(str::to_owned),
                    );
                    args
                }
                None => Vec::new(),
            };
            let child = redis_server(*port)
                .args(&tls_args)
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--cluster-node-timeout", "1000", "--dir"])
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            cluster.children.push(Some(child));
        }
        for (port, child) in ports.iter().zip(&mut cluster.children) {
            let child = child.as_mut().expect("just started");
            // A node that cannot bind its port, or its bus port (+10000), exits.
            wait_for_child_port(*port, "redis-server (cluster node)", child);
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(&cluster.cli_args)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        cluster.wait_healthy();
        cluster
    }

    /// `REDIS_CLUSTER_NODES` for this cluster.
    pub fn seeds(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("{}://127.0.0.1:{p}", self.scheme))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(&self.cli_args)
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn live_port(&self) -> u16 {
        let i = self
            .children
            .iter()
            .position(Option::is_some)
            .expect("a live node");
        self.ports[i]
    }

    /// Waits until every live node reports `cluster_state:ok` and every
    /// live replica's link to its master is up (a replica that never synced
    /// would refuse to take over from a failed master).
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .ports
                .iter()
                .zip(&self.children)
                .filter(|(_, c)| c.is_some())
                .all(|(port, _)| {
                    let replication = self.cli(*port, &["INFO", "replication"]);
                    self.cli(*port, &["CLUSTER", "INFO"])
                        .contains("cluster_state:ok")
                        && (replication.contains("role:master")
                            || replication.contains("master_link_status:up"))
                });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port of the master serving the slot of `name` (a key or a shard channel).
    pub fn master_of(&self, name: &str) -> u16 {
        self.try_master_of(name)
            .unwrap_or_else(|| panic!("no healthy master serves {name}"))
    }

    /// Waits until a master other than `old` serves `name`'s slot (a replica
    /// was promoted) and the cluster is healthy again; returns its port.
    pub fn wait_failover(&self, name: &str, old: u16) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(port) = self.try_master_of(name).filter(|p| *p != old) {
                self.wait_healthy();
                return port;
            }
            assert!(
                Instant::now() < deadline,
                "no replica took over {name} from {old}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_master_of(&self, name: &str) -> Option<u16> {
        let port = self.live_port();
        let slot: u16 = self
            .cli(port, &["CLUSTER", "KEYSLOT", name])
            .parse()
            .expect("a slot");
        for line in self.cli(port, &["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| {
                let mut bounds = range.split('-').filter_map(|b| b.parse::<u16>().ok());
                match (bounds.next(), bounds.next()) {
                    (Some(lo), Some(hi)) => (lo..=hi).contains(&slot),
                    (Some(only), None) => only == slot,
                    _ => false,
                }
            });
            if owns {
                let addr = fields[1].split('@').next().unwrap_or_default();
                return addr.rsplit(':').next().and_then(|p| p.parse().ok());
            }
        }
        None
    }

    /// SIGKILLs the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let i = self
            .ports
            .iter()
            .position(|p| *p == port)
            .expect("a node of this cluster");
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `count` loopback ports p with p + 10000 (the cluster bus port) free too.
fn cluster_ports(count: usize) -> Vec<u16> {
    // Below the kernel's ephemeral range, the port and its cluster bus port
    // (+10000) alike: a port from that range can be taken between this check
    // and the node's bind by any outgoing connection of the tests running
    // beside this one.
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let top = low.saturating_sub(10_000).max(11_000);
    let mut ports = Vec::new();
    while ports.len() < count {
        let port = fastrand::u16(10_000..top);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if !ports.contains(&port) && free(port) && free(port + 10_000) {
            ports.push(port);
        }
    }
    ports
}
