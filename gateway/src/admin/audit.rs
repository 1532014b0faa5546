//! The gateway's side of the audit log: which events it records, and the
//! fail-closed switch. The record format, the chain and the writer are the
//! shared `gatehouse_audit`, so the scheduler writes the same thing.
//!
//! Recorded: logins (success, failure with reason), logouts, authorization
//! denials (with rule and reason), rate-limit engagements (start and one
//! summary), an API key's use from a new address, policy reloads (with the
//! policy's SHA-256 before and after), startup and shutdown. Not recorded:
//! network-level refusals (framing, path, allowlist), which a flood could
//! otherwise turn into disk writes; the access log and metrics have them.
//!
//! Anonymous denials (a protected route, no credential at all) are the
//! same risk: anyone can send them, as fast as they like. The first from an
//! address to a route opens a window of [`SUMMARY_WINDOW`] with one
//! `access.denied` record; the rest of the window is counted into one
//! `access.denied.summary` record when it ends.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use gatehouse_audit::{AuditError, AuditEvent, AuditLog, AuditStats, EventKind, Outcome};
use gatehouse_policy::Policy;

use crate::access::rate_limit::{EngagementEnd, Limited};

/// Addresses remembered per API key; past this, a key's set starts over.
const ADDRESSES_PER_KEY: usize = 256;
/// API keys whose addresses are remembered.
const KEYS_TRACKED: usize = 10_000;

/// How long one `access.denied` record stands for an address and route.
pub const SUMMARY_WINDOW: Duration = Duration::from_secs(60);
/// Windows tracked at once; past it, new addresses share one window.
const SUMMARY_WINDOWS: usize = 100_000;

/// A cheap handle; without `[audit]` in the policy it records nothing.
#[derive(Clone, Default)]
pub struct Audit {
    log: Option<Arc<AuditLog>>,
    key_addresses: Arc<DashMap<String, HashSet<IpAddr>>>,
    anonymous_denials: Arc<DashMap<(String, String), DenialWindow>>,
}

struct DenialWindow {
    opened: Instant,
    /// Denials after the first.
    more: u64,
}

impl Audit {
    pub fn open(policy: &Policy) -> Result<Self, AuditError> {
        let log = match &policy.audit {
            Some(settings) => Some(Arc::new(AuditLog::open(settings)?)),
            None => {
                tracing::warn!(
                    "the policy has no [audit] section: security events are not recorded"
                );
                None
            }
        };
        Ok(Audit {
            log,
            key_addresses: Arc::default(),
            anonymous_denials: Arc::default(),
        })
    }

    /// Whether an anonymous denial from `client` (an address or network)
    /// to `route` gets its own record: only the first in its window does.
    pub fn first_anonymous_denial(&self, client: String, route: &str) -> bool {
        if self.log.is_none() {
            return false;
        }
        let mut key = (client, route.to_owned());
        if self.anonymous_denials.len() >= SUMMARY_WINDOWS
            && !self.anonymous_denials.contains_key(&key)
        {
            key.0 = "(untracked addresses)".to_owned();
        }
        let mut first = false;
        let mut window = self.anonymous_denials.entry(key).or_insert_with(|| {
            first = true;
            DenialWindow {
                opened: Instant::now(),
                more: 0,
            }
        });
        if !first {
            window.more += 1;
        }
        first
    }

    /// Closes the windows that have run their time (or all of them, at
    /// shutdown), recording a summary for each that counted more denials.
    pub fn summarise_anonymous_denials(&self, all: bool) {
        let mut ended = Vec::new();
        self.anonymous_denials.retain(|(client, route), window| {
            if !all && window.opened.elapsed() < SUMMARY_WINDOW {
                return true;
            }
            if window.more > 0 {
                ended.push((client.clone(), route.clone(), window.more));
            }
            false
        });
        for (client, route, more) in ended {
            self.record(
                AuditEvent::new(EventKind::AccessDeniedSummary, Outcome::Denied)
                    .route(route.as_str())
                    .detail("client", client)
                    .detail("reason", "unauthenticated")
                    .detail("denied", more)
                    .detail("seconds", SUMMARY_WINDOW.as_secs()),
            );
        }
    }

    pub fn record(&self, event: AuditEvent) {
        if let Some(log) = &self.log {
            log.record(event);
        }
    }

    /// True while the log cannot be written and the policy says to fail
    /// closed; the gateway then answers 503.
    pub fn must_refuse(&self) -> bool {
        self.log.as_ref().is_some_and(|l| l.must_refuse())
    }

    pub fn is_healthy(&self) -> bool {
        self.log.as_ref().is_none_or(|l| l.is_healthy())
    }

    pub fn stats(&self) -> Option<AuditStats> {
        self.log.as_ref().map(|l| l.stats())
    }

    /// Writes what is queued and fsyncs; for shutdown.
    pub fn close(&self) {
        self.summarise_anonymous_denials(true);
        if let Some(log) = &self.log {
            log.flush(Duration::from_secs(5));
            log.close();
        }
    }

    /// The path the log writes to, if any; it cannot change on reload.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.log.as_ref().map(|l| l.settings().path.as_path())
    }

    /// True the first time an API key is seen from an address (since start).
    pub fn api_key_from_new_address(&self, key_name: &str, ip: IpAddr) -> bool {
        if self.log.is_none() {
            return false;
        }
        if let Some(mut seen) = self.key_addresses.get_mut(key_name) {
            if seen.len() >= ADDRESSES_PER_KEY {
                seen.clear();
            }
            return seen.insert(ip);
        }
        if self.key_addresses.len() >= KEYS_TRACKED {
            self.key_addresses.clear();
        }
        self.key_addresses
            .entry(key_name.to_owned())
            .or_default()
            .insert(ip)
    }
}

/// The record for a rate limit that just engaged.
pub fn rate_limit_started(limited: &Limited) -> AuditEvent {
    AuditEvent::new(EventKind::RateLimitStart, Outcome::Denied)
        .detail("tier", limited.tier.as_str())
        .detail("key", limited.key.describe())
        .detail("limit", limited.rate.to_string())
}

/// The summary record when an engagement ends.
pub fn rate_limit_ended(end: &EngagementEnd) -> AuditEvent {
    AuditEvent::new(EventKind::RateLimitEnd, Outcome::Info)
        .detail("tier", end.tier.as_str())
        .detail("key", end.key.describe())
        .detail("refused", end.refused)
        .detail("seconds", end.lasted.as_secs())
}
