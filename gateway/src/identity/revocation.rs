//! Sessions ended by logout. A session cookie is sealed and stateless, so
//! without this list a copy of it would keep working after logout until
//! its idle timeout. Each entry lives until the session's own lifetime
//! ends, when the cookie would be refused anyway.
//!
//! The list is per process and kept across policy reloads; it does not
//! survive a restart (a shared store is a later step).

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

/// Past this many live revocations, the one that expires soonest makes room.
const MAX_REVOKED: usize = 1_000_000;

#[derive(Default)]
pub struct SessionRevocations {
    /// Session id → Unix second after which the session is dead anyway.
    until: DashMap<String, u64>,
    evicted: AtomicU64,
}

impl SessionRevocations {
    pub fn revoke(&self, session_id: &str, until: u64, now: u64) {
        if self.until.len() >= MAX_REVOKED {
            self.sweep(now);
        }
        if self.until.len() >= MAX_REVOKED {
            // Only after a million logouts within one session lifetime; the
            // evicted session is the one closest to dying by itself.
            let soonest = self
                .until
                .iter()
                .min_by_key(|entry| *entry.value())
                .map(|entry| entry.key().clone());
            if let Some(id) = soonest {
                self.until.remove(&id);
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.until.insert(session_id.to_owned(), until);
    }

    pub fn is_revoked(&self, session_id: &str) -> bool {
        self.until.contains_key(session_id)
    }

    /// Drops entries whose sessions have expired by themselves.
    pub fn sweep(&self, now: u64) {
        self.until.retain(|_, until| *until > now);
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }

    /// Revocations dropped early to stay within the bound.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_until_the_session_would_have_expired() {
        let list = SessionRevocations::default();
        list.revoke("a", 100, 10);
        assert!(list.is_revoked("a"));
        assert!(!list.is_revoked("b"));
        list.sweep(99);
        assert!(list.is_revoked("a"));
        list.sweep(100);
        assert!(!list.is_revoked("a"));
        assert!(list.is_empty());
    }
}
