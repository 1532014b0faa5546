//! Stage 12: who is calling, and the login lockout around it.
//!
//! A credential that is present but bad is refused with 401 and never
//! treated as anonymous. Failures count towards the address's login
//! allowance; once it is used up the address gets 429 for the window, for
//! every credential except a session cookie (a sealed cookie cannot be
//! guessed). Password checks count when they *start*, so that concurrent
//! guesses cannot all run before the first one fails.

use std::net::IpAddr;
use std::sync::Mutex;

use gatehouse_audit::{AuditEvent, EventKind, Outcome};
use gatehouse_policy::{Access, IdentityKind, Route};
use http::HeaderValue;
use pingora::http::RequestHeader;

use super::refusal::{Reason, Refusal};
use super::stages::{challenged, wants_login_page};
use super::{Gateway, RequestCtx};
use crate::access::rate_limit::{Limited, RateLimits};
use crate::identity::{self, IdentityError, LoginAttempts, Principal};
use crate::shared_state::lists::LoginCount;
use crate::snapshot::Snapshot;

impl Gateway {
    pub async fn identify(
        &self,
        ctx: &RequestCtx,
        req: &RequestHeader,
        route: &Route,
        client_ip: IpAddr,
    ) -> Result<Option<Principal>, Box<Refusal>> {
        let snapshot: &Snapshot = &ctx.snapshot;
        let Access::Restricted { accept, .. } = &route.access else {
            // Public routes skip identity entirely.
            return Ok(None);
        };
        let limits = &snapshot.rate_limits;
        let failed = |error: IdentityError, kind: Option<IdentityKind>, counted: bool| {
            login_failure(route, limits, client_ip, error, kind, counted)
        };
        let credential = match identity::credential(&req.headers) {
            Ok(Some(credential)) => credential,
            Ok(None) => return Ok(None),
            Err(error) => {
                locked_out(limits, client_ip)?;
                let refusal = failed(error, None, false);
                return Err(self.counted_in_cluster(limits, client_ip, refusal).await);
            }
        };
        let kind = credential.kind();
        // Password checks meet the lockout as they start (`Attempts`);
        // other credentials are cheap to check, so they meet it first.
        if !matches!(kind, IdentityKind::Oidc | IdentityKind::Basic) {
            locked_out(limits, client_ip)?;
        }
        let attempts = Attempts::new(limits, client_ip);
        let verified = snapshot
            .authenticator
            .verify(credential, client_ip, accept, &attempts)
            .await;
        for limited in attempts.locked_now().iter().filter(|l| l.started) {
            let event =
                crate::admin::audit::rate_limit_started(limited).detail("cause", "password-checks");
            self.audit.record(self.request_event(ctx, event));
        }
        match verified {
            Ok(principal) => Ok(Some(principal)),
            // A stale or logged-out session on a browser navigation is a
            // reason to log in again, not a dead end.
            Err(_) if kind == IdentityKind::Oidc && wants_login_page(req, route) => Ok(None),
            Err(error) if kind == IdentityKind::Oidc => {
                Err(challenged(Refusal::new(Reason::Credential(error)), route))
            }
            Err(IdentityError::AttemptRefused) => Err(attempts.refusal()),
            Err(IdentityError::Busy) => Err(Refusal::new(Reason::Credential(IdentityError::Busy))
                .header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))),
            // A password check already counted when it started.
            Err(error) => {
                let refusal = failed(error, Some(kind), kind == IdentityKind::Basic);
                Err(self.counted_in_cluster(limits, client_ip, refusal).await)
            }
        }
    }

    /// With `[shared_state]`: the failed login counted across replicas too.
    /// The failure that uses up the address's allowance there locks it out
    /// on every replica (`shared_state::lists`); here it is recorded as
    /// this replica's own lockouts are. Redis being down leaves this
    /// replica's own count, whatever `when_unavailable` says: the failure
    /// is refused already.
    async fn counted_in_cluster(
        &self,
        limits: &RateLimits,
        client_ip: IpAddr,
        mut refusal: Box<Refusal>,
    ) -> Box<Refusal> {
        let Some(shared) = &self.shared_state else {
            return refusal;
        };
        let network = limits.client_network(client_ip);
        // Boxed, as in `cluster_limit`: the call's future is large and
        // this one is rarely awaited.
        let count = Box::pin(shared.login_failed(network, limits.login_rate())).await;
        if let LoginCount::LockedOut { until_ms } = count {
            let until = crate::shared_state::instant_at(until_ms);
            if let Some(limited) = limits.cluster_lockout(network, until) {
                if limited.started {
                    refusal.events.push(
                        crate::admin::audit::rate_limit_started(&limited)
                            .detail("cause", "cluster-login-failures"),
                    );
                }
            }
        }
        refusal
    }
}

/// 429 while the address is locked out.
fn locked_out(limits: &RateLimits, client_ip: IpAddr) -> Result<(), Box<Refusal>> {
    match limits.login_locked(client_ip) {
        Some(limited) => Err(Refusal::rate_limited(limited)),
        None => Ok(()),
    }
}

/// A failed login: 401, one audit record, and (unless it was counted when
/// it started) a step towards the lockout.
fn login_failure(
    route: &Route,
    limits: &RateLimits,
    client_ip: IpAddr,
    error: IdentityError,
    kind: Option<IdentityKind>,
    counted: bool,
) -> Box<Refusal> {
    let mut event =
        AuditEvent::new(EventKind::LoginFailure, Outcome::Failure).detail("reason", error.reason());
    if let Some(kind) = kind {
        event = event.method(kind.as_str());
    }
    let mut refusal = challenged(Refusal::new(Reason::Credential(error)), route).event(event);
    if !counted {
        if let Some(limited) = limits.login_failed(client_ip) {
            if limited.started {
                refusal
                    .events
                    .push(crate::admin::audit::rate_limit_started(&limited));
            }
        }
    }
    refusal
}

/// The lockout's side of a password check, see [`LoginAttempts`].
struct Attempts<'a> {
    limits: &'a RateLimits,
    client_ip: IpAddr,
    /// Why an attempt was refused, for the 429.
    refused: Mutex<Option<Limited>>,
    /// Lockouts an allowed attempt started, for the audit log.
    locked: Mutex<Vec<Limited>>,
}

impl<'a> Attempts<'a> {
    fn new(limits: &'a RateLimits, client_ip: IpAddr) -> Self {
        Attempts {
            limits,
            client_ip,
            refused: Mutex::new(None),
            locked: Mutex::new(Vec::new()),
        }
    }

    fn refusal(&self) -> Box<Refusal> {
        let limited = self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .or_else(|| self.limits.login_locked(self.client_ip));
        match limited {
            Some(limited) => Refusal::rate_limited(limited),
            None => Refusal::new(Reason::Credential(IdentityError::AttemptRefused)),
        }
    }

    fn locked_now(&self) -> Vec<Limited> {
        std::mem::take(&mut *self.locked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl LoginAttempts for Attempts<'_> {
    fn start(&self) -> bool {
        let outcome = match self.limits.login_locked(self.client_ip) {
            Some(limited) => Err(limited),
            None => self.limits.login_attempt(self.client_ip),
        };
        match outcome {
            Ok(None) => true,
            Ok(Some(lockout)) => {
                self.locked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(lockout);
                true
            }
            Err(limited) => {
                *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(limited);
                false
            }
        }
    }
}
