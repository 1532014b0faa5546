//! Basic auth against argon2id or bcrypt hashes, under three bounds, so
//! that guessing costs the guesser and not the gateway:
//!
//! - at most `password_checks_per_address` distinct checks in flight per
//!   client network (more: busy, 429);
//! - each check counts against the address's login allowance when it
//!   *starts* ([`LoginAttempts::start`]), so a burst of concurrent guesses
//!   cannot all run before the first failure locks the address out;
//! - at most one check per core runs at once ([`PasswordPool`]).
//!
//! Requests carrying the same credential while it is being checked wait for
//! that one check (a browser sends several at once after the prompt). A
//! correct password is remembered for [`VERIFIED_FOR`], keyed by an HMAC of
//! user and password under a per-process key, so a basic-auth client does
//! not pay a check on every request; the password itself is never stored.
//! Unknown users cost the same check as known ones, and every failure waits
//! a little before answering.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use dashmap::DashMap;
use gatehouse_policy::{BasicUser, IdentityKind};
use tokio::sync::OnceCell;

use super::password::PasswordPool;
use super::{IdentityError, LoginAttempts, Principal};
use crate::edge::client_addr::{network_key, PerNetwork};

/// Delay added to every failed login, to slow online guessing.
const FAILURE_DELAY: Duration = Duration::from_millis(300);

/// How long a verified password is remembered.
pub const VERIFIED_FOR: Duration = Duration::from_secs(300);

/// Bound on remembered credentials; past it the oldest are dropped.
const VERIFIED_ENTRIES: usize = 10_000;

/// A valid argon2id hash of a random password, verified for unknown users
/// so their timing matches known ones.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bm90LWEtcmVhbC1zYWx0$2Yw3yKXH3X3nCVlXJ0Hq3PjY8dHkB2a3iKeE2sVf3nE";

type CredentialKey = [u8; 32];
type Outcome = Result<Principal, IdentityError>;

pub(super) struct BasicUsers {
    users: HashMap<String, (BasicUser, Arc<str>)>,
    dummy: Arc<str>,
    pool: Arc<PasswordPool>,
    /// Per process, so cache keys mean nothing outside it.
    mac_key: ring::hmac::Key,
    verified: Mutex<HashMap<CredentialKey, (Principal, Instant)>>,
    in_flight: DashMap<CredentialKey, Arc<OnceCell<Outcome>>>,
    in_flight_per_address: PerNetwork,
    max_per_address: usize,
    ipv6_prefix: u8,
}

impl BasicUsers {
    pub(super) fn new(
        users: &[BasicUser],
        pool: Arc<PasswordPool>,
        limits: &gatehouse_policy::RateLimits,
    ) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let mac_key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            // The kernel's random source failing at startup leaves nothing
            // safe to do; the key then only ever labels a cache.
            .unwrap_or_else(|_| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"unavailable"));
        BasicUsers {
            users: users
                .iter()
                .map(|u| (u.name.clone(), (u.clone(), u.password_hash.as_str().into())))
                .collect(),
            dummy: DUMMY_HASH.into(),
            pool,
            mac_key,
            verified: Mutex::new(HashMap::new()),
            in_flight: DashMap::new(),
            in_flight_per_address: PerNetwork::default(),
            max_per_address: limits.password_checks_per_address,
            ipv6_prefix: limits.ipv6_prefix,
        }
    }

    pub(super) async fn verify(
        &self,
        user: &str,
        password: &str,
        client_ip: IpAddr,
        attempts: &dyn LoginAttempts,
    ) -> Outcome {
        let key = self.credential_key(user, password);
        if let Some(principal) = self.remembered(&key) {
            return Ok(principal);
        }
        let cell = self.in_flight.entry(key).or_default().clone();
        let outcome = cell
            .get_or_init(|| self.check(user, password, client_ip, attempts))
            .await
            .clone();
        self.in_flight
            .remove_if(&key, |_, current| Arc::ptr_eq(current, &cell));
        if let Ok(principal) = &outcome {
            self.remember(key, principal.clone());
        }
        outcome
    }

    /// One real check: a slot for the address, an attempt counted, a
    /// worker's verdict.
    async fn check(
        &self,
        user: &str,
        password: &str,
        client_ip: IpAddr,
        attempts: &dyn LoginAttempts,
    ) -> Outcome {
        let network = network_key(client_ip, self.ipv6_prefix);
        let _slot = self
            .in_flight_per_address
            .try_take(network, self.max_per_address)
            .ok_or(IdentityError::Busy)?;
        if !attempts.start() {
            return Err(IdentityError::AttemptRefused);
        }
        let entry = self.users.get(user);
        let hash = entry.map_or_else(|| self.dummy.clone(), |(_, hash)| hash.clone());
        let matches = self
            .pool
            .matches(hash, password)
            .await
            .map_err(|_| IdentityError::Busy)?;
        match entry {
            Some((user, _)) if matches => Ok(Principal::new(
                format!("basic:{}", user.name),
                None,
                user.roles.clone(),
                IdentityKind::Basic,
                user.name.clone(),
            )),
            Some(_) => {
                tokio::time::sleep(FAILURE_DELAY).await;
                Err(IdentityError::WrongPassword)
            }
            None => {
                tokio::time::sleep(FAILURE_DELAY).await;
                Err(IdentityError::Unknown)
            }
        }
    }

    fn credential_key(&self, user: &str, password: &str) -> CredentialKey {
        let mut context = ring::hmac::Context::with_key(&self.mac_key);
        context.update(user.as_bytes());
        // A NUL cannot appear in a basic-auth user id, so `a` + `b:c` and
        // `a:b` + `c` never share a key.
        context.update(&[0]);
        context.update(password.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(context.sign().as_ref());
        key
    }

    fn remembered(&self, key: &CredentialKey) -> Option<Principal> {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        let (principal, at) = verified.get(key)?;
        (at.elapsed() < VERIFIED_FOR).then(|| principal.clone())
    }

    fn remember(&self, key: CredentialKey, principal: Principal) {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_ENTRIES {
            verified.retain(|_, (_, at)| at.elapsed() < VERIFIED_FOR);
            if verified.len() >= VERIFIED_ENTRIES {
                verified.clear();
            }
        }
        verified.insert(key, (principal, Instant::now()));
    }
}

/// An argon2id hash (OWASP parameters: 19 MiB, 2 passes) with a fresh salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))
}

#[cfg(test)]
mod tests;
