//! How many and how fast from one address: `MAX_CONNECTIONS_PER_IP` and
//! `HANDSHAKE_RATE_PER_IP`.
//!
//! The table exists only while one of the two rules is on. A handshake
//! touches one entry (O(1) under the lock); idle entries are forgotten by
//! [`IpLimits::sweep`], which a background task runs every few seconds,
//! never the handshake path, so a reconnect storm from many addresses stays
//! linear.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Refusal;
use crate::config::Config;
use crate::rate::{Bucket, burst_for};

/// How often idle entries are swept.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

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
