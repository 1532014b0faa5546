//! The login tier: failed logins per address and the lockouts they start,
//! with the lockouts the cluster's count starts (`crate::shared_state`).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gatehouse_policy::Rate;
use ipnet::IpNet;

use super::{Limited, RateKey, RateLimits, Tier};

impl RateLimits {
    /// Refuses a login attempt from an address that is locked out.
    pub fn login_locked(&self, client_ip: IpAddr) -> Option<Limited> {
        if self.millis_since_start(Instant::now()) >= self.lockouts_end_ms.load(Ordering::Relaxed) {
            return None;
        }
        let key = self.client_key(client_ip);
        let until = *self.lockouts.get(&key)?;
        let now = Instant::now();
        if until <= now {
            return None;
        }
        self.engagements.refused(Tier::Login, &key, until);
        Some(Limited {
            tier: Tier::Login,
            rate: self.login_failures.rate,
            retry_after: until - now,
            key,
            started: false,
        })
    }

    /// Counts a password check as it starts. The check that uses up the
    /// address's allowance still runs, and locks the address out for the
    /// tier's window; past that the attempt is refused. Addresses the full
    /// table cannot track are not counted (see inside).
    pub fn login_attempt(&self, client_ip: IpAddr) -> Result<Option<Limited>, Limited> {
        let key = self.client_key(client_ip);
        if !self.login_failures.tracks(&key) {
            // The table is full (a flood from many addresses). Sharing one
            // bucket would lock every untracked address out together, the
            // legitimate ones too; the global bound on password checks
            // (one per core) is what limits guessing from them.
            return Ok(None);
        }
        match self.login_failures.check(&key) {
            Ok((remaining, _)) if remaining > 0 => Ok(None),
            Ok(_) => Ok(self.lock_out(key)),
            Err(wait) => Err(self.lock_out(key.clone()).unwrap_or(Limited {
                tier: Tier::Login,
                rate: self.login_failures.rate,
                retry_after: wait,
                started: false,
                key,
            })),
        }
    }

    /// Counts a failed login; when it uses up the address's allowance, the
    /// address is locked out for the tier's whole window.
    pub fn login_failed(&self, client_ip: IpAddr) -> Option<Limited> {
        let key = self.client_key(client_ip);
        let exhausted = match self.login_failures.check(&key) {
            Ok((remaining, _)) => remaining == 0,
            Err(_) => true,
        };
        if exhausted {
            self.lock_out(key)
        } else {
            None
        }
    }

    /// Locks `key` out for the login tier's window. Never a key the tables
    /// cannot track: those share one bucket, and locking it would refuse
    /// every such caller, whoever failed.
    fn lock_out(&self, key: RateKey) -> Option<Limited> {
        if !self.login_failures.tracks(&key) {
            return None;
        }
        let window = self.login_failures.rate.per;
        self.lock_out_until(key, Instant::now() + window, window)
    }

    /// A lockout the cluster's count of failed logins started with a
    /// failure on this replica: applied, and recorded as an engagement as
    /// this replica's own lockouts are.
    pub fn cluster_lockout(&self, network: IpNet, until: Instant) -> Option<Limited> {
        let retry_after = until.saturating_duration_since(Instant::now());
        self.lock_out_until(RateKey::Network(network), until, retry_after)
    }

    /// A lockout the cluster started (another replica, or this one through
    /// Redis): refuses logins from `network` until `until`, within the
    /// table's bound.
    pub fn apply_lockout(&self, network: IpNet, until: Instant) {
        self.store_lockout(RateKey::Network(network), until);
    }

    /// Stores a lockout and records it as an engagement.
    fn lock_out_until(
        &self,
        key: RateKey,
        until: Instant,
        retry_after: Duration,
    ) -> Option<Limited> {
        let key = self.store_lockout(key, until)?;
        Some(Limited {
            tier: Tier::Login,
            rate: self.login_failures.rate,
            retry_after,
            started: self.engagements.refused(Tier::Login, &key, until),
            key,
        })
    }

    /// Refuses logins from `key` until `until` (a later lockout of the same
    /// key wins). Returns the key it is stored under, `None` when it has
    /// passed or the table is full.
    fn store_lockout(&self, key: RateKey, until: Instant) -> Option<RateKey> {
        if until <= Instant::now() {
            return None;
        }
        let key = self.lockout_key(key)?;
        let mut entry = self.lockouts.entry(key.clone()).or_insert(until);
        *entry = (*entry).max(until);
        drop(entry);
        self.lockouts_end_ms
            .fetch_max(self.millis_since_start(until) + 1, Ordering::Relaxed);
        Some(key)
    }

    /// The login tier's rate: what the cluster counts failures at.
    pub fn login_rate(&self) -> Rate {
        self.login_failures.rate
    }

    fn millis_since_start(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX)
    }

    /// The key a lockout is stored under, or `None` when the table is full
    /// of live lockouts (then the limiter alone slows the address down).
    fn lockout_key(&self, key: RateKey) -> Option<RateKey> {
        if self.lockouts.len() < self.settings.0.max_tracked_keys
            || self.lockouts.contains_key(&key)
        {
            return Some(key);
        }
        let now = Instant::now();
        self.lockouts.retain(|_, until| *until > now);
        (self.lockouts.len() < self.settings.0.max_tracked_keys).then_some(key)
    }
}
