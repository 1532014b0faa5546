//! Validated `[scheduler.notify]` and `[[job]] notify`: who hears about a
//! run's outcome, over which channel, and where the scheduler may connect
//! to tell them. The guard itself (address classes, DNS pinning) lives in
//! the scheduler; the policy holds only what the operator wrote.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::secret::{Secret, SecretError};

/// `[scheduler.notify]`. The default (no section) sends nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySettings {
    pub channels: Vec<Channel>,
    /// What a job without its own `notify` gets.
    pub default: JobNotify,
    pub guard: GuardSettings,
    /// Deliveries waiting beyond this are dropped (counted and logged):
    /// a slow receiver never holds up a run.
    pub queue: usize,
    /// Attempts after the first, with jittered exponential backoff.
    pub retries: u32,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            channels: Vec::new(),
            default: JobNotify::default(),
            guard: GuardSettings::default(),
            queue: DEFAULT_QUEUE,
            retries: DEFAULT_RETRIES,
        }
    }
}

pub const DEFAULT_QUEUE: usize = 256;
pub const DEFAULT_RETRIES: u32 = 3;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_RESPONSE: u64 = 64 * 1024;

impl NotifySettings {
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// Where the scheduler may connect to deliver a notification. Every
/// destination must match `allow_hosts`, and every address it resolves to
/// must be public unless it lies in `insecure_allow_networks`.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardSettings {
    pub allow_hosts: Vec<HostPattern>,
    /// Loopback, private, link-local... ranges the operator opened. A
    /// cloud metadata address is reached only by a single-address entry.
    pub insecure_allow_networks: Vec<IpNet>,
    /// For one whole attempt: connect, TLS, request and response.
    pub timeout: Duration,
    /// Bytes of a receiver's response read at most.
    pub max_response: u64,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            allow_hosts: Vec::new(),
            insecure_allow_networks: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            max_response: DEFAULT_MAX_RESPONSE,
        }
    }
}

impl GuardSettings {
    /// Whether `host` (of a URL or an SMTP server) matches `allow_hosts`.
    pub fn allows_host(&self, host: &url::Host<&str>) -> bool {
        let allowed = &self.allow_hosts;
        match host {
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                allowed.iter().any(|p| p.matches_name(&name))
            }
            url::Host::Ipv4(ip) => allowed.iter().any(|p| p.matches_ip(IpAddr::V4(*ip))),
            url::Host::Ipv6(ip) => allowed.iter().any(|p| p.matches_ip(IpAddr::V6(*ip))),
        }
    }
}

/// An `allow_hosts` entry: a DNS name, `*.` and a domain (any name below
/// it, not the domain itself), or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    Suffix(String),
    Ip(IpAddr),
}

impl HostPattern {
    /// `host` is a lower-cased DNS name without a trailing dot.
    pub fn matches_name(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => name == host,
            HostPattern::Suffix(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            HostPattern::Ip(_) => false,
        }
    }

    /// IPv4-mapped IPv6 literals compare as their IPv4 address.
    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        matches!(self, HostPattern::Ip(allowed) if allowed.to_canonical() == ip.to_canonical())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChannelKind {
    /// A JSON POST signed with HMAC-SHA256 of the body.
    Webhook {
        url: url::Url,
        secret: SecretRef,
    },
    /// A Slack-compatible incoming webhook; its URL is the credential.
    Slack {
        url: SecretRef,
    },
    Email(EmailChannel),
}

/// SMTP submission with STARTTLS required (no plain-text fallback).
#[derive(Debug, Clone, PartialEq)]
pub struct EmailChannel {
    pub host: String,
    pub port: u16,
    pub from: String,
    pub to: Vec<String>,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    /// A PEM CA the server's certificate may chain to, besides the system roots.
    pub ca_file: Option<PathBuf>,
}

pub const DEFAULT_SMTP_PORT: u16 = 587;

/// A secret the scheduler reads when it starts (and on reload), never the
/// gateway: `key = "${VAR}"`, `key_file = "/path"` or an inline value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Inline(Secret),
    Env(String),
    File(PathBuf),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Inline(_) => f.write_str("Inline(***)"),
            SecretRef::Env(var) => write!(f, "Env({var})"),
            SecretRef::File(path) => write!(f, "File({})", path.display()),
        }
    }
}

impl SecretRef {
    pub fn read(&self) -> Result<Secret, SecretError> {
        let source = match self {
            SecretRef::Inline(secret) => return Ok(secret.clone()),
            SecretRef::Env(var) => crate::secret::SecretSource::Env(var),
            SecretRef::File(path) => crate::secret::SecretSource::File(path),
        };
        source.resolve(|var| std::env::var(var).ok())
    }
}

/// A job's `notify`: channels by name and the events that reach them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobNotify {
    pub to: Vec<String>,
    pub on: BTreeSet<NotifyEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotifyEvent {
    Failed,
    TimedOut,
    Lost,
    /// The first success after one or more failed, timed-out or lost runs.
    Recovered,
    Succeeded,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 5] = [
        NotifyEvent::Failed,
        NotifyEvent::TimedOut,
        NotifyEvent::Lost,
        NotifyEvent::Recovered,
        NotifyEvent::Succeeded,
    ];

    /// Sent when a policy names no `on`.
    pub const DEFAULT: [NotifyEvent; 4] = [
        NotifyEvent::Failed,
        NotifyEvent::TimedOut,
        NotifyEvent::Lost,
        NotifyEvent::Recovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Failed => "failed",
            NotifyEvent::TimedOut => "timed_out",
            NotifyEvent::Lost => "lost",
            NotifyEvent::Recovered => "recovered",
            NotifyEvent::Succeeded => "succeeded",
        }
    }

    pub fn parse(text: &str) -> Option<NotifyEvent> {
        NotifyEvent::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_patterns_match_names_below_the_domain_only() {
        let p = HostPattern::Suffix("example.com".into());
        assert!(p.matches_name("hooks.example.com"));
        assert!(p.matches_name("a.b.example.com"));
        assert!(!p.matches_name("example.com"));
        assert!(!p.matches_name("evilexample.com"));
        assert!(!HostPattern::Exact("example.com".into()).matches_name("x.example.com"));
    }

    #[test]
    fn ip_patterns_compare_mapped_addresses_as_ipv4() {
        let p = HostPattern::Ip("127.0.0.1".parse().expect("ip"));
        assert!(p.matches_ip("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(!p.matches_ip("127.0.0.2".parse().expect("ip")));
    }
}
