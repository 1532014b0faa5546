//! The `jti`s of accepted assertions, each kept until the assertion could
//! no longer verify anyway (`exp` + leeway). The gateway signs a fresh
//! assertion for every request it proxies, so a `jti` seen twice is a
//! captured assertion played again: refused.
//!
//! Bounded: at most `capacity` live entries. When every slot holds an
//! assertion that is still live, a new one is refused (fail closed) rather
//! than evicting a live entry, which would let that assertion be replayed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// Why an assertion's `jti` was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("the assertion was already used")]
    Replayed,
    #[error("too many live assertions to check another for replay")]
    Full,
}

pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// jti → the unix second after which it is forgotten.
    seen: HashMap<String, u64>,
    /// The same entries, oldest `forget_after` first, to drop them cheaply.
    by_expiry: BTreeSet<(u64, String)>,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Accepts `jti` once: it is remembered until `forget_after` (unix
    /// seconds) has passed at `now`.
    pub fn first_use(&self, jti: &str, forget_after: u64, now: u64) -> Result<(), ReplayError> {
        // A poisoned lock means a panic mid-update; refusing is the safe
        // answer, and the same for every later request.
        let mut inner = self.inner.lock().map_err(|_| ReplayError::Full)?;
        inner.forget_before(now);
        if inner.seen.contains_key(jti) {
            return Err(ReplayError::Replayed);
        }
        if inner.seen.len() >= self.capacity {
            return Err(ReplayError::Full);
        }
        inner.seen.insert(jti.to_owned(), forget_after);
        inner.by_expiry.insert((forget_after, jti.to_owned()));
        Ok(())
    }

    /// Live entries, for tests and metrics.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.seen.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn forget_before(&mut self, now: u64) {
        while let Some((forget_after, _)) = self.by_expiry.first() {
            if *forget_after >= now {
                break;
            }
            if let Some((_, jti)) = self.by_expiry.pop_first() {
                self.seen.remove(&jti);
            }
        }
    }
}
