//! How many and how fast from one address: `MAX_CONNECTIONS_PER_IP` and
//! `HANDSHAKE_RATE_PER_IP`.
//!
//! The table exists only while one of the two rules is on. A handshake
//! touches one entry (O(1) under the lock); idle entries are forgotten by
//! [`IpLimits::sweep`], which a background task runs every few seconds,
//! never the handshake path, so a reconnect storm from many addresses stays
//! linear.
//!
//! An IPv6 client is counted by its /64 ([`ip_key`]): one subscriber (a
//! home, a VM, a phone) is routinely handed a whole /64, so counting single
//! addresses would give it 2^64 "IPs" and make both limits moot.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Refusal;
use crate::config::Config;
use crate::rate::{Bucket, burst_for};

/// How often idle entries are swept.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The prefix an IPv6 client is counted under.
const IPV6_PREFIX: u32 = 64;

/// What an address is counted under: an IPv4 address itself, an IPv6 one
/// by its /64 (an IPv4-mapped one as the IPv4 address it is).
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(
            u128::from(v6) & (u128::MAX << (128 - IPV6_PREFIX)),
        )),
        v4 => v4,
    }
}

#[derive(Debug)]
struct IpEntry {
    connections: u32,
    handshakes: Bucket,
}

#[derive(Debug)]
pub struct IpLimits {
    max_per_ip: u32,
    handshake_rate: f64,
    ips: Mutex<HashMap<IpAddr, IpEntry>>,
}

impl IpLimits {
    /// `None` when neither per-IP rule is on.
    pub(super) fn from_config(config: &Config) -> Option<Self> {
        (config.max_connections_per_ip > 0 || config.handshake_rate_per_ip > 0.0).then(|| Self {
            max_per_ip: config.max_connections_per_ip,
            handshake_rate: config.handshake_rate_per_ip,
            ips: Mutex::default(),
        })
    }

    fn ips(&self) -> MutexGuard<'_, HashMap<IpAddr, IpEntry>> {
        self.ips.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<IpPlace, Refusal> {
        let ip = ip_key(ip);
        let burst = burst_for(self.handshake_rate);
        let mut ips = self.ips();
        let entry = ips.entry(ip).or_insert_with(|| IpEntry {
            connections: 0,
            handshakes: Bucket::full(burst),
        });
        if self.handshake_rate > 0.0 && !entry.handshakes.take(self.handshake_rate, burst) {
            return Err(Refusal::RateLimited);
        }
        if self.max_per_ip > 0 && entry.connections >= self.max_per_ip {
            return Err(Refusal::IpFull);
        }
        entry.connections += 1;
        Ok(IpPlace {
            limits: self.clone(),
            ip,
        })
    }

    /// Forgets entries with no connection whose bucket has refilled: they
    /// would answer exactly as a new entry does.
    pub fn sweep(&self) {
        let now = Instant::now();
        let (rate, burst) = (self.handshake_rate, burst_for(self.handshake_rate));
        self.ips()
            .retain(|_, e| e.connections > 0 || !e.handshakes.refilled_by(now, rate, burst));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ips().len()
    }
}

/// A client's place in its address's count, given back when dropped.
pub struct IpPlace {
    limits: Arc<IpLimits>,
    /// The [`ip_key`] it is counted under.
    ip: IpAddr,
}

impl Drop for IpPlace {
    fn drop(&mut self) {
        if let Some(entry) = self.limits.ips().get_mut(&self.ip) {
            entry.connections = entry.connections.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_table_is_kept_when_no_per_ip_rule_is_on() {
        assert!(IpLimits::from_config(&Config::default()).is_none());
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let limits = Arc::new(
            IpLimits::from_config(&Config {
                max_connections_per_ip: 1,
                ..Config::default()
            })
            .unwrap(),
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _held = limits.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            limits.admit(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")).err(),
            Some(Refusal::IpFull),
            "another address of the same /64"
        );
        let _next = limits.admit(ip("2001:db8:1:3::1")).unwrap();
        let _v4 = limits.admit(ip("192.0.2.1")).unwrap();
        let _v4_next = limits.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(
            limits.admit(ip("::ffff:192.0.2.1")).err(),
            Some(Refusal::IpFull),
            "IPv4-mapped is the IPv4 address"
        );
        assert_eq!(ip_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
    }

    #[test]
    fn idle_entries_are_swept_and_held_ones_kept() {
        let limits = Arc::new(
            IpLimits::from_config(&Config {
                max_connections_per_ip: 5,
                ..Config::default()
            })
            .unwrap(),
        );
        let held = limits.admit("10.0.0.1".parse().unwrap()).unwrap();
        drop(limits.admit("10.0.0.2".parse().unwrap()).unwrap());
        assert_eq!(limits.len(), 2);
        limits.sweep();
        assert_eq!(limits.len(), 1, "the idle address is forgotten");
        drop(held);
        limits.sweep();
        assert_eq!(limits.len(), 0);
    }
}
