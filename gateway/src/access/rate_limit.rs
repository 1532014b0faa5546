//! Rate limiting with governor: per client address without an identity,
//! per identity with one, per route where the route says so, and a strict
//! tier for failed logins per address.
//!
//! Addresses are counted per network: IPv4 per address, IPv6 per
//! `ipv6_prefix` (a /64 by default), since one host usually holds a whole
//! /64 and could otherwise be a million clients.
//!
//! Memory stays bounded under a flood from many addresses: each tier tracks
//! at most `max_tracked_keys` keys. When its table is full, idle keys (whose
//! state is the same as a fresh key's) are swept; when it is still full,
//! every key it cannot track shares one overflow bucket with the tier's
//! quota. That fails closed: a flood from a million addresses is limited
//! like one client, at the price of new anonymous clients sharing that
//! bucket until the flood's keys go idle. The overflow bucket is never
//! locked out, though: a lockout on it would refuse every caller the table
//! cannot track, valid credentials included.
//!
//! Limits are per gateway process unless the policy has `[shared_state]`:
//! then the request tiers are also counted in Redis, one quota for every
//! replica, and failed logins too: a lockout started on any replica is
//! added here ([`RateLimits::apply_lockout`]), so every replica refuses
//! the address (`crate::shared_state`).
//!
//! Engagements: the first refusal of a key starts one (an audit record),
//! the next allowed request or [`RateLimits::sweep`] ends it (one summary
//! record), so a flood writes two records, not one per request.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, StateStore};
use governor::{Quota, RateLimiter};
use http::HeaderValue;
use ipnet::IpNet;

use gatehouse_policy::{Policy, Rate, Route};

use crate::edge::client_addr::network_key;
use crate::identity::Principal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Client,
    Identity,
    Route,
    Login,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Client => "client",
            Tier::Identity => "identity",
            Tier::Route => "route",
            Tier::Login => "login",
        }
    }
}

/// The tables keyed by what clients send (addresses, identities). aHash
/// with random keys resists hash flooding as std's SipHash does; SipHash
/// cost about 350 instructions per request over these tables.
type KeyMap<K, V> = DashMap<K, V, ahash::RandomState>;

/// Whom a limit counts: a client network (one IPv4 address, or an IPv6
/// prefix), an identity (its namespaced subject), or the shared bucket of
/// keys a full table cannot track.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    Network(IpNet),
    Identity(Arc<str>),
    Overflow,
}

impl RateKey {
    /// For audit records: an address or network, or the identity.
    pub fn describe(&self) -> String {
        match self {
            RateKey::Network(IpNet::V4(net)) if net.prefix_len() == 32 => net.addr().to_string(),
            RateKey::Network(net) => net.to_string(),
            RateKey::Identity(id) => id.to_string(),
            RateKey::Overflow => "(untracked keys)".to_owned(),
        }
    }
}

/// A request within its limit, with what the `RateLimit` header reports.
#[derive(Debug)]
pub struct Allowance {
    pub tier: Tier,
    /// Whom it counted, at what rate: what the cluster's count needs.
    pub key: RateKey,
    pub rate: Rate,
    pub remaining: u32,
    pub reset: Duration,
    /// The tier's `RateLimit-Policy`, built once with its limiter.
    pub policy_header: HeaderValue,
    /// An engagement this request ended.
    pub ended: Option<EngagementEnd>,
}

/// A refused request.
#[derive(Debug)]
pub struct Limited {
    pub tier: Tier,
    pub rate: Rate,
    pub retry_after: Duration,
    pub key: RateKey,
    /// This refusal started an engagement (audit one record).
    pub started: bool,
}

#[derive(Debug, Clone)]
pub struct EngagementEnd {
    pub tier: Tier,
    pub key: RateKey,
    pub refused: u64,
    pub lasted: Duration,
}

/// Governor's DashMap store with a cap: keys it cannot track share
/// [`RateKey::Overflow`].
struct BoundedStore {
    map: Arc<KeyMap<RateKey, InMemoryState>>,
    max_keys: usize,
    /// Set when a key had to go to the overflow bucket: time to sweep.
    full: Arc<AtomicBool>,
}

impl StateStore for BoundedStore {
    type Key = RateKey;

    fn measure_and_replace<T, F, E>(&self, key: &RateKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // Known keys take the fast path; only a new key pays for `len`,
        // which visits every shard.
        if !self.map.contains_key(key) && self.map.len() >= self.max_keys {
            self.full.store(true, Ordering::Relaxed);
            return self.map.as_ref().measure_and_replace(&RateKey::Overflow, f);
        }
        self.map.as_ref().measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<RateKey> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.map.as_ref().retain_recent(drop_below)
    }
    fn shrink_to_fit(&self) {
        self.map.as_ref().shrink_to_fit()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

type Keyed = RateLimiter<RateKey, BoundedStore, DefaultClock, StateInformationMiddleware>;

/// One quota over many keys.
struct TierLimiter {
    tier: Tier,
    rate: Rate,
    policy_header: HeaderValue,
    limiter: Keyed,
    /// The limiter's own table (governor keeps the store to itself).
    keys: Arc<KeyMap<RateKey, InMemoryState>>,
    max_keys: usize,
    clock: DefaultClock,
    full: Arc<AtomicBool>,
    /// Milliseconds since `started` of the last sweep, so a full table is
    /// swept at most once a second.
    last_sweep_ms: AtomicU64,
    started: Instant,
}

fn quota(rate: Rate) -> Quota {
    let interval = rate.per / rate.count.get();
    Quota::with_period(interval.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(rate.count)
}

impl TierLimiter {
    fn new(tier: Tier, rate: Rate, max_keys: usize) -> Self {
        let clock = DefaultClock::default();
        let full = Arc::new(AtomicBool::new(false));
        let keys = Arc::new(KeyMap::default());
        let store = BoundedStore {
            map: keys.clone(),
            max_keys,
            full: full.clone(),
        };
        TierLimiter {
            tier,
            rate,
            policy_header: policy_header(tier, rate),
            keys,
            max_keys,
            limiter: Keyed::new(quota(rate), store, clock.clone()),
            clock,
            full,
            last_sweep_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn check(&self, key: &RateKey) -> Result<(u32, Duration), Duration> {
        if self.full.load(Ordering::Relaxed) {
            self.sweep_if_due();
        }
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = self.rate.count.get().saturating_sub(remaining);
                Ok((remaining, self.rate.per / self.rate.count.get() * used))
            }
            Err(not_until) => Err(not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Whether `key` has (or would get) its own entry rather than the
    /// overflow bucket.
    fn tracks(&self, key: &RateKey) -> bool {
        self.keys.contains_key(key) || self.keys.len() < self.max_keys
    }

    fn sweep_if_due(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.full.store(false, Ordering::Relaxed);
            self.limiter.retain_recent();
        }
    }

    fn tracked_keys(&self) -> usize {
        self.limiter.len()
    }
}

struct Engagement {
    since: Instant,
    last: Instant,
    refused: u64,
    /// When the refusals stop by themselves (lockouts), else `last + window`.
    until: Instant,
}

/// Keys currently being refused, per tier, bounded like the limiters.
struct Engagements {
    map: KeyMap<(Tier, RateKey), Engagement>,
    max_keys: usize,
    /// How many there are, so the common case (none) skips the map:
    /// DashMap's own `len` visits every shard.
    active: AtomicUsize,
}

impl Engagements {
    /// Records a refusal; true when it starts an engagement.
    fn refused(&self, tier: Tier, key: &RateKey, until: Instant) -> bool {
        let now = Instant::now();
        let key = if self.map.len() >= self.max_keys && !self.map.contains_key(&(tier, key.clone()))
        {
            RateKey::Overflow
        } else {
            key.clone()
        };
        let mut started = false;
        let mut entry = self.map.entry((tier, key)).or_insert_with(|| {
            started = true;
            self.active.fetch_add(1, Ordering::Relaxed);
            Engagement {
                since: now,
                last: now,
                refused: 0,
                until,
            }
        });
        entry.refused += 1;
        entry.last = now;
        entry.until = entry.until.max(until);
        started
    }

    /// Ends the key's engagement, if it has one.
    fn allowed(&self, tier: Tier, key: &RateKey) -> Option<EngagementEnd> {
        if self.active.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let ((tier, key), e) = self.map.remove(&(tier, key.clone()))?;
        self.active.fetch_sub(1, Ordering::Relaxed);
        Some(EngagementEnd {
            tier,
            key,
            refused: e.refused,
            lasted: e.last.duration_since(e.since),
        })
    }

    fn expired(&self, now: Instant) -> Vec<EngagementEnd> {
        let mut ended = Vec::new();
        self.map.retain(|(tier, key), e| {
            if e.until > now {
                return true;
            }
            self.active.fetch_sub(1, Ordering::Relaxed);
            ended.push(EngagementEnd {
                tier: *tier,
                key: key.clone(),
                refused: e.refused,
                lasted: e.last.duration_since(e.since),
            });
            false
        });
        ended
    }
}

/// Every limiter one policy declares. Kept across reloads that do not
/// change the rates, so a reload does not reset anyone's counters.
pub struct RateLimits {
    settings: (gatehouse_policy::RateLimits, Vec<(String, Rate)>),
    client: TierLimiter,
    identity: TierLimiter,
    routes: Vec<(String, TierLimiter)>,
    login_failures: TierLimiter,
    /// Addresses refused logins until the instant.
    lockouts: KeyMap<RateKey, Instant>,
    /// When the last lockout ends (ms after `started`): until then the
    /// table may hold one, after it the check skips the table.
    lockouts_end_ms: AtomicU64,
    started: Instant,
    engagements: Engagements,
}

fn settings_of(policy: &Policy) -> (gatehouse_policy::RateLimits, Vec<(String, Rate)>) {
    let routes = policy
        .routes
        .iter()
        .filter_map(|r| Some((r.name.clone(), r.rate_limit?)))
        .collect();
    (policy.rate_limits.clone(), routes)
}

impl RateLimits {
    pub fn new(policy: &Policy) -> Self {
        let (limits, routes) = settings_of(policy);
        let max = limits.max_tracked_keys;
        RateLimits {
            client: TierLimiter::new(Tier::Client, limits.client, max),
            identity: TierLimiter::new(Tier::Identity, limits.identity, max),
            routes: routes
                .iter()
                .map(|(name, rate)| (name.clone(), TierLimiter::new(Tier::Route, *rate, max)))
                .collect(),
            login_failures: TierLimiter::new(Tier::Login, limits.login, max),
            lockouts: KeyMap::default(),
            engagements: Engagements {
                map: KeyMap::default(),
                max_keys: max,
                active: AtomicUsize::new(0),
            },
            lockouts_end_ms: AtomicU64::new(0),
            started: Instant::now(),
            settings: (limits, routes),
        }
    }

    /// Whether `policy` declares exactly these limits.
    pub fn same_settings(&self, policy: &Policy) -> bool {
        self.settings == settings_of(policy)
    }

    /// The key for a client address: its network.
    pub fn client_key(&self, client_ip: IpAddr) -> RateKey {
        RateKey::Network(network_key(client_ip, self.settings.0.ipv6_prefix))
    }

    /// The network a client address is counted under.
    pub fn client_network(&self, client_ip: IpAddr) -> IpNet {
        network_key(client_ip, self.settings.0.ipv6_prefix)
    }

    fn request_key(&self, principal: Option<&Principal>, client_ip: IpAddr) -> RateKey {
        match principal {
            Some(p) => RateKey::Identity(p.subject.as_str().into()),
            None => self.client_key(client_ip),
        }
    }

    /// The request tier: the route's own limit if it has one, else the
    /// identity tier for identified callers and the client tier for the rest.
    pub fn check_request(
        &self,
        route: &Route,
        principal: Option<&Principal>,
        client_ip: IpAddr,
    ) -> Result<Allowance, Limited> {
        let key = self.request_key(principal, client_ip);
        let limiter = self
            .routes
            .iter()
            .find(|(name, _)| *name == route.name)
            .map(|(_, l)| l)
            .unwrap_or(if principal.is_some() {
                &self.identity
            } else {
                &self.client
            });
        match limiter.check(&key) {
            Ok((remaining, reset)) => Ok(Allowance {
                tier: limiter.tier,
                remaining,
                reset,
                policy_header: limiter.policy_header.clone(),
                ended: self.engagements.allowed(limiter.tier, &key),
                key,
                rate: limiter.rate,
            }),
            Err(wait) => Err(self.refused(limiter.tier, limiter.rate, key, wait)),
        }
    }

    /// A refusal of `key` in `tier`, recorded as an engagement that lasts
    /// at least one emission interval.
    fn refused(&self, tier: Tier, rate: Rate, key: RateKey, retry_after: Duration) -> Limited {
        let until = Instant::now() + retry_after.max(rate.per / rate.count.get());
        Limited {
            tier,
            rate,
            retry_after,
            started: self.engagements.refused(tier, &key, until),
            key,
        }
    }

    /// A request this replica allowed and the cluster's count refused
    /// ([`shared`]): recorded as this replica's own refusals are.
    pub fn refused_in_cluster(&self, allowance: &Allowance, retry_after: Duration) -> Limited {
        self.refused(
            allowance.tier,
            allowance.rate,
            allowance.key.clone(),
            retry_after,
        )
    }

    /// Drops idle keys and ends engagements whose window has passed.
    pub fn sweep(&self) -> Vec<EngagementEnd> {
        for limiter in self.all_limiters() {
            limiter.limiter.retain_recent();
        }
        let now = Instant::now();
        self.lockouts.retain(|_, until| *until > now);
        self.engagements.expired(now)
    }

    /// Keys tracked per tier, for the metrics (route tiers summed).
    pub fn tracked_keys(&self) -> Vec<(Tier, usize)> {
        let routes = self.routes.iter().map(|(_, l)| l.tracked_keys()).sum();
        vec![
            (Tier::Client, self.client.tracked_keys()),
            (Tier::Identity, self.identity.tracked_keys()),
            (Tier::Route, routes),
            (
                Tier::Login,
                self.login_failures.tracked_keys().max(self.lockouts.len()),
            ),
        ]
    }

    fn all_limiters(&self) -> impl Iterator<Item = &TierLimiter> {
        [&self.client, &self.identity, &self.login_failures]
            .into_iter()
            .chain(self.routes.iter().map(|(_, l)| l))
    }
}

mod headers;
mod lockouts;
pub use headers::{policy_header, retry_after_secs, state_header};

#[cfg(test)]
mod tests;
