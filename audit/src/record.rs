//! One audit record: what happened ([`EventKind`], [`Outcome`]), the
//! builder callers fill ([`AuditEvent`]) and the line format on disk
//! ([`AuditRecord`]), chained by [`line_hash`].

use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// `prev` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened. The names are stable: they are what operators grep for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Startup,
    Shutdown,
    PolicyReload,
    LoginSuccess,
    LoginFailure,
    Logout,
    AccessDenied,
    /// How many more anonymous denials followed an `access.denied` record
    /// for the same address and route within its window.
    AccessDeniedSummary,
    RateLimitStart,
    RateLimitEnd,
    ApiKeyNewAddress,
    JobTrigger,
    JobCancel,
    RunStart,
    RunFinish,
    RunSkip,
    RunLost,
    /// A notification about a run was delivered, failed or was dropped.
    NotifyDelivery,
    /// A run refused before any container was created (e.g. a mount
    /// source that a symlink redirects).
    RunRefused,
    /// A restarted scheduler took over a run the previous process left:
    /// supervising its container, recording how it ended, or starting it.
    RunAdopt,
    /// What a restarted scheduler's reconciliation with Docker did, in all.
    Reconcile,
    /// The state gateway replicas share (Redis) stopped answering; what
    /// the gateway does meanwhile is in the record.
    SharedStateDown,
    /// It answers again: shared limits are back.
    SharedStateUp,
    /// Every session of one user was ended at once (`logout-user`): what
    /// each gateway replica records when the revocation reaches it.
    SessionsRevoked,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Startup => "startup",
            EventKind::Shutdown => "shutdown",
            EventKind::PolicyReload => "policy.reload",
            EventKind::LoginSuccess => "login.success",
            EventKind::LoginFailure => "login.failure",
            EventKind::Logout => "logout",
            EventKind::AccessDenied => "access.denied",
            EventKind::AccessDeniedSummary => "access.denied.summary",
            EventKind::RateLimitStart => "rate_limit.start",
            EventKind::RateLimitEnd => "rate_limit.end",
            EventKind::ApiKeyNewAddress => "api_key.new_address",
            EventKind::JobTrigger => "job.trigger",
            EventKind::JobCancel => "job.cancel",
            EventKind::RunStart => "run.start",
            EventKind::RunFinish => "run.finish",
            EventKind::RunSkip => "run.skip",
            EventKind::RunLost => "run.lost",
            EventKind::NotifyDelivery => "notify.delivery",
            EventKind::RunRefused => "run.refused",
            EventKind::RunAdopt => "run.adopt",
            EventKind::Reconcile => "reconcile",
            EventKind::SharedStateDown => "shared_state.down",
            EventKind::SharedStateUp => "shared_state.up",
            EventKind::SessionsRevoked => "sessions.revoked",
        }
    }

    /// Records that reach the disk before the writer takes the next one,
    /// instead of within the fsync interval.
    pub fn is_critical(self) -> bool {
        matches!(
            self,
            EventKind::Startup
                | EventKind::Shutdown
                | EventKind::PolicyReload
                | EventKind::LoginSuccess
                | EventKind::LoginFailure
                | EventKind::Logout
                | EventKind::SessionsRevoked
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
    Info,
}

/// Who acted: the subject and how they proved it (`oidc`, `jwt`,
/// `api_key`, `basic`, `system`). Both absent for anonymous callers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub subject: Option<String>,
    pub method: Option<String>,
}

/// One line of the audit log, in field order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// RFC 3339, UTC, microseconds.
    pub ts: String,
    pub seq: u64,
    pub prev: String,
    pub event: String,
    pub outcome: Outcome,
    pub actor: Actor,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub route: Option<String>,
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// A security event on its way to the log; the writer adds `seq` and `prev`.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    at: SystemTime,
    kind: EventKind,
    outcome: Outcome,
    actor: Actor,
    client_ip: Option<IpAddr>,
    request_id: Option<String>,
    route: Option<String>,
    details: serde_json::Map<String, serde_json::Value>,
}

impl AuditEvent {
    pub fn new(kind: EventKind, outcome: Outcome) -> Self {
        AuditEvent {
            at: SystemTime::now(),
            kind,
            outcome,
            actor: Actor::default(),
            client_ip: None,
            request_id: None,
            route: None,
            details: serde_json::Map::new(),
        }
    }

    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// How the actor identified, if known (`basic`, `oidc`, ...).
    pub fn actor_method(&self) -> Option<&str> {
        self.actor.method.as_deref()
    }

    pub fn actor(mut self, subject: impl Into<String>, method: impl Into<String>) -> Self {
        self.actor = Actor {
            subject: Some(subject.into()),
            method: Some(method.into()),
        };
        self
    }

    /// Only the method is known (a failed login names no one yet).
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.actor.method = Some(method.into());
        self
    }

    pub fn client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    pub fn route(mut self, route: impl Into<String>) -> Self {
        self.route = Some(route.into());
        self
    }

    /// Adds a detail. Never pass a secret, token, cookie or password.
    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    pub(crate) fn into_record(self, seq: u64, prev: String) -> AuditRecord {
        AuditRecord {
            ts: humantime::format_rfc3339_micros(self.at).to_string(),
            seq,
            prev,
            event: self.kind.as_str().to_owned(),
            outcome: self.outcome,
            actor: self.actor,
            client_ip: self.client_ip.map(|ip| ip.to_string()),
            request_id: self.request_id,
            route: self.route,
            details: self.details,
        }
    }
}

/// The hex SHA-256 of a record's line, as the next record's `prev`.
pub fn line_hash(line: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(line))
}
