//! How many connections one user may hold: `MAX_CONNECTIONS_PER_USER`, by
//! the token's `sub`.
//!
//! Counted per node, not across the cluster: a user's connections spread
//! over N nodes may reach N times the cap. Entries exist only while a user
//! has a connection here (removed when the count falls to zero), so the
//! table is bounded by the node's connections; nothing to sweep.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::Refusal;

#[derive(Debug)]
pub struct UserLimits {
    max_per_user: u32,
    users: Mutex<HashMap<String, u32>>,
}

impl UserLimits {
    /// `None` when the rule is off.
    pub(super) fn new(max_per_user: u32) -> Option<Self> {
        (max_per_user > 0).then(|| Self {
            max_per_user,
            users: Mutex::default(),
        })
    }

    fn users(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn admit(self: &Arc<Self>, sub: &str) -> Result<UserPlace, Refusal> {
        let mut users = self.users();
        let count = users.entry(sub.to_owned()).or_insert(0);
        if *count >= self.max_per_user {
            return Err(Refusal::UserFull);
        }
        *count += 1;
        Ok(UserPlace {
            limits: self.clone(),
            sub: sub.to_owned(),
        })
    }
}

/// A connection's place in its user's count, given back when dropped.
pub struct UserPlace {
    limits: Arc<UserLimits>,
    sub: String,
}

impl Drop for UserPlace {
    fn drop(&mut self) {
        let mut users = self.limits.users();
        if let Some(count) = users.get_mut(&self.sub) {
            *count -= 1;
            if *count == 0 {
                users.remove(&self.sub);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_their_places_back_and_the_table_empties() {
        let limits = Arc::new(UserLimits::new(2).unwrap());
        let a = limits.admit("ana").unwrap();
        let b = limits.admit("ana").unwrap();
        assert_eq!(limits.admit("ana").err(), Some(Refusal::UserFull));
        let other = limits.admit("bo").unwrap();
        drop(a);
        let c = limits.admit("ana").unwrap();
        drop((b, c, other));
        assert!(limits.users().is_empty());
    }
}
