//! The gateway's side of the audit log: which events it records, and the
//! fail-closed switch. The record format, the chain and the writer are the
//! shared `gatehouse_policy::audit`, so the scheduler writes the same thing.
//!
//! Recorded: logins (success, failure with reason), logouts, authorization
//! denials (with rule and reason), rate-limit engagements (start and one
//! summary), an API key's use from a new address, policy reloads (with the
//! policy's SHA-256 before and after), startup and shutdown. Not recorded:
//! network-level refusals (framing, path, allowlist), which a flood could
//! otherwise turn into disk writes; the access log and metrics have them.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use gatehouse_policy::audit::{AuditError, AuditEvent, AuditLog, AuditStats, EventKind, Outcome};
use gatehouse_policy::Policy;

use crate::rate_limit::{EngagementEnd, Limited};

/// Addresses remembered per API key; past this, a key's set starts over.
const ADDRESSES_PER_KEY: usize = 256;
/// API keys whose addresses are remembered.
const KEYS_TRACKED: usize = 10_000;

/// A cheap handle; without `[audit]` in the policy it records nothing.
#[derive(Clone, Default)]
pub struct Audit {
    log: Option<Arc<AuditLog>>,
    key_addresses: Arc<DashMap<String, HashSet<IpAddr>>>,
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
        })
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
