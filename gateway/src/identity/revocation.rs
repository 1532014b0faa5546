//! Sessions ended by logout. A session cookie is sealed and stateless, so
//! without this list a copy of it would keep working after logout until
//! its idle timeout. Each entry lives until the session's own lifetime
//! ends, when the cookie would be refused anyway.
//!
//! A user's sessions can also be ended all at once (`logout-user`): every
//! session of theirs issued until then is refused.
//!
//! The lists are per process and kept across policy reloads. With
//! `[shared_state]` every replica's lists are kept in step through Redis
//! (`crate::shared_state::lists`), which also outlives restarts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dashmap::DashMap;

/// Past this many live revocations, the one that expires soonest makes room.
const MAX_REVOKED: usize = 1_000_000;

#[derive(Default)]
pub struct SessionRevocations {
    /// Session id → Unix second after which the session is dead anyway.
    until: DashMap<String, u64>,
    /// Subject → (sessions issued at or before this Unix second are ended,
    /// the Unix second after which all of them are dead anyway).
    users: DashMap<String, (u64, u64)>,
    /// Set by the first user revocation and never cleared (clearing could
    /// race a new one), so that until then a session check does not
    /// touch `users` at all: it is on every session request.
    any_users: AtomicBool,
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

    /// Ends every session of `subject` issued at or before `before`.
    /// Entries are few (one per user, by an operator's hand), so they are
    /// not bounded beyond their lifetime.
    pub fn revoke_user(&self, subject: &str, before: u64, until: u64) {
        let mut entry = self
            .users
            .entry(subject.to_owned())
            .or_insert((before, until));
        let (old_before, old_until) = *entry;
        *entry = (old_before.max(before), old_until.max(until));
        drop(entry);
        self.any_users.store(true, Ordering::Release);
    }

    /// Whether `subject`'s session issued at `iat` was ended with all of
    /// theirs.
    pub fn is_user_revoked(&self, subject: &str, iat: u64) -> bool {
        self.any_users.load(Ordering::Acquire)
            && self.users.get(subject).is_some_and(|entry| iat <= entry.0)
    }

    /// Drops entries whose sessions have expired by themselves.
    pub fn sweep(&self, now: u64) {
        self.until.retain(|_, until| *until > now);
        self.users.retain(|_, (_, until)| *until > now);
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

    #[test]
    fn a_users_sessions_end_up_to_the_moment_they_were_revoked() {
        let list = SessionRevocations::default();
        list.revoke_user("oidc:idp:alice", 50, 200);
        assert!(list.is_user_revoked("oidc:idp:alice", 49));
        assert!(list.is_user_revoked("oidc:idp:alice", 50));
        assert!(!list.is_user_revoked("oidc:idp:alice", 51), "a later login");
        assert!(!list.is_user_revoked("oidc:idp:bob", 10));
        // An older revocation arriving late does not shorten a newer one.
        list.revoke_user("oidc:idp:alice", 40, 190);
        assert!(list.is_user_revoked("oidc:idp:alice", 50));
        list.sweep(199);
        assert!(list.is_user_revoked("oidc:idp:alice", 50));
        list.sweep(200);
        assert!(!list.is_user_revoked("oidc:idp:alice", 50));
    }
}
