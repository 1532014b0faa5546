//! Why the gateway refused a request: one typed reason per refusal, with a
//! stable name for the access log, `gatehouse_denials_total{reason}` and
//! alerts. [`Reason::all`] lists every value, so metrics can show each at 0
//! before it first happens and a dashboard can know them all. The reason
//! decides the status; a [`Refusal`] adds what the answer and the audit log
//! need.

use gatehouse_audit::AuditEvent;
use http::{HeaderName, HeaderValue};

use super::respond::GatewayResponse;
use http::StatusCode;

use crate::access::authz::Forbidden;
use crate::access::rate_limit::{self, retry_after_secs, Limited, Tier};
use crate::edge::framing::FramingViolation;
use crate::edge::host::HostRejection;
use crate::edge::method::MethodRejection;
use crate::edge::path::PathRejection;
use crate::identity::login::LoginRefusal;
use crate::identity::IdentityError;
use crate::identity::Principal;
use crate::snapshot::RouteMiss;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The audit log cannot be written and the policy fails closed (503).
    AuditUnavailable,
    /// The global allow/deny lists (403).
    NetworkDenied,
    Method(MethodRejection),
    Framing(FramingViolation),
    Host(HostRejection),
    Path(PathRejection),
    Route(RouteMiss),
    /// The route's own allow/deny lists (403).
    RouteNetworkDenied,
    /// Over the route's `max_body` (413).
    BodyTooLarge,
    CorsPreflightDenied,
    Login(LoginRefusal),
    /// A credential that was presented but did not verify (401), or could
    /// not be checked now (429).
    Credential(IdentityError),
    /// An unsafe method with a browser-attached credential and no
    /// same-origin proof (403).
    CsrfCrossSite,
    RateLimited,
    /// Redis, where the cluster's rate limits live, does not answer and the
    /// policy says to refuse meanwhile (503).
    SharedStateUnavailable,
    /// No credential on a route that needs one (401).
    Unauthenticated,
    /// No credential on a browser navigation: sent to the login page (302).
    RedirectedToLogin,
    /// A verified caller without what the route requires (403).
    Forbidden(Forbidden),
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::AuditUnavailable => "audit-log-unavailable",
            Reason::SharedStateUnavailable => "shared-state-unavailable",
            Reason::NetworkDenied => "network-denied",
            Reason::Method(m) => m.reason(),
            Reason::Framing(f) => f.reason(),
            Reason::Host(h) => h.reason(),
            Reason::Path(p) => p.reason(),
            Reason::Route(r) => r.reason(),
            Reason::RouteNetworkDenied => "route-network-denied",
            Reason::BodyTooLarge => "body-too-large",
            Reason::CorsPreflightDenied => "cors-preflight-denied",
            Reason::Login(l) => l.reason(),
            Reason::Credential(c) => c.reason(),
            Reason::CsrfCrossSite => "csrf-cross-site",
            Reason::RateLimited => "rate-limited",
            Reason::Unauthenticated => "unauthenticated",
            Reason::RedirectedToLogin => "unauthenticated-redirected-to-login",
            Reason::Forbidden(f) => f.reason(),
        }
    }

    /// The status a refusal for this reason answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Reason::AuditUnavailable | Reason::SharedStateUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Reason::NetworkDenied | Reason::RouteNetworkDenied => StatusCode::FORBIDDEN,
            Reason::Method(m) => m.status(),
            Reason::Framing(f) => f.status(),
            Reason::Host(h) => h.status(),
            Reason::Path(_) => StatusCode::BAD_REQUEST,
            Reason::Route(_) => StatusCode::NOT_FOUND,
            Reason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::CorsPreflightDenied | Reason::CsrfCrossSite | Reason::Forbidden(_) => {
                StatusCode::FORBIDDEN
            }
            Reason::Login(l) => l.status(),
            Reason::Credential(IdentityError::AttemptRefused | IdentityError::Busy) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Reason::Credential(_) | Reason::Unauthenticated => StatusCode::UNAUTHORIZED,
            Reason::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Reason::RedirectedToLogin => StatusCode::FOUND,
        }
    }

    /// Whether the connection must close after the answer: the framing of
    /// what follows on it cannot be trusted (odd framing or methods), or the
    /// client is still sending a body we will not read.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            Reason::Framing(_) | Reason::Method(_) | Reason::BodyTooLarge
        )
    }

    /// Every reason there is.
    pub fn all() -> Vec<Reason> {
        let mut all = vec![
            Reason::AuditUnavailable,
            Reason::NetworkDenied,
            Reason::RouteNetworkDenied,
            Reason::BodyTooLarge,
            Reason::CorsPreflightDenied,
            Reason::CsrfCrossSite,
            Reason::RateLimited,
            Reason::SharedStateUnavailable,
            Reason::Unauthenticated,
            Reason::RedirectedToLogin,
        ];
        all.extend(MethodRejection::ALL.map(Reason::Method));
        all.extend(FramingViolation::ALL.map(Reason::Framing));
        all.extend(HostRejection::ALL.map(Reason::Host));
        all.extend(PathRejection::ALL.map(Reason::Path));
        all.extend(RouteMiss::ALL.map(Reason::Route));
        all.extend(LoginRefusal::ALL.map(Reason::Login));
        all.extend(IdentityError::ALL.map(Reason::Credential));
        all.extend(Forbidden::ALL.map(Reason::Forbidden));
        all
    }
}

/// A refused request: the reason, the answer, and what it leaves in the
/// access log, the metrics and the audit log.
pub struct Refusal {
    pub reason: Reason,
    pub response: GatewayResponse,
    /// The authorization rule that denied, when one did.
    pub rule: Option<String>,
    /// Who was refused, when they were identified.
    pub principal: Option<Principal>,
    /// Audit records this refusal makes (the caller adds the request's
    /// id, address and route).
    pub events: Vec<AuditEvent>,
    /// The rate-limit tier that refused, for the metrics.
    pub rate_limited: Option<Tier>,
}

impl Refusal {
    pub fn new(reason: Reason) -> Box<Refusal> {
        let status = reason.status();
        let response = if reason.closes_connection() {
            GatewayResponse::closing(status)
        } else {
            GatewayResponse::status(status)
        };
        Box::new(Refusal {
            reason,
            response,
            rule: None,
            principal: None,
            events: Vec::new(),
            rate_limited: None,
        })
    }

    /// 429 with `Retry-After` and the rate-limit headers; one audit record
    /// when this refusal starts an engagement.
    pub fn rate_limited(limited: Limited) -> Box<Refusal> {
        let mut refusal = Refusal::new(Reason::RateLimited).header(
            http::header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs(limited.retry_after)),
        );
        refusal = refusal
            .header(
                HeaderName::from_static("ratelimit-policy"),
                rate_limit::policy_header(limited.tier, limited.rate),
            )
            .header(
                HeaderName::from_static("ratelimit"),
                rate_limit::state_header(limited.tier, 0, limited.retry_after),
            );
        refusal.rate_limited = Some(limited.tier);
        if limited.started {
            refusal
                .events
                .push(crate::admin::audit::rate_limit_started(&limited));
        }
        refusal
    }

    pub fn header(mut self: Box<Self>, name: HeaderName, value: HeaderValue) -> Box<Self> {
        self.response.extra.push((name, value));
        self
    }

    pub fn event(mut self: Box<Self>, event: AuditEvent) -> Box<Self> {
        self.events.push(event);
        self
    }

    /// Who was refused: named in the access log and as the actor of the
    /// refusal's audit records that name none yet.
    pub fn of(mut self: Box<Self>, principal: Option<&Principal>) -> Box<Self> {
        if let Some(p) = principal {
            self.events = std::mem::take(&mut self.events)
                .into_iter()
                .map(|event| match event.actor_method() {
                    Some(_) => event,
                    None => event.actor(p.subject.as_str(), p.kind.as_str()),
                })
                .collect();
            self.principal = Some(p.clone());
        }
        self
    }
}

impl From<Reason> for Box<Refusal> {
    fn from(reason: Reason) -> Self {
        Refusal::new(reason)
    }
}

/// Lets a stage's own error end the request path with `?`.
macro_rules! refuse_with {
    ($($error:ty),*) => {$(
        impl From<$error> for Box<Refusal> {
            fn from(error: $error) -> Self {
                Refusal::new(Reason::from(error))
            }
        }
    )*};
}

refuse_with!(
    MethodRejection,
    FramingViolation,
    HostRejection,
    PathRejection,
    RouteMiss
);

impl From<MethodRejection> for Reason {
    fn from(m: MethodRejection) -> Self {
        Reason::Method(m)
    }
}

impl From<FramingViolation> for Reason {
    fn from(f: FramingViolation) -> Self {
        Reason::Framing(f)
    }
}

impl From<HostRejection> for Reason {
    fn from(h: HostRejection) -> Self {
        Reason::Host(h)
    }
}

impl From<PathRejection> for Reason {
    fn from(p: PathRejection) -> Self {
        Reason::Path(p)
    }
}

impl From<RouteMiss> for Reason {
    fn from(r: RouteMiss) -> Self {
        Reason::Route(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_name() {
        let all = Reason::all();
        let names: std::collections::BTreeSet<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), all.len(), "two reasons share a name");
        assert!(names.iter().all(|n| n
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')));
    }
}
