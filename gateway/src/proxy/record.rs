//! What the gateway does with a decision: writing a refusal with its
//! metrics and audit records, and keeping what a passed request leaves
//! behind (rate-limit headers, engagement ends, API key addresses).

use gatehouse_audit::{AuditEvent, EventKind, Outcome};
use pingora::prelude::*;

use super::refusal::Refusal;
use super::respond;
use super::{Gateway, RequestCtx};
use crate::access::authz::Permit;
use crate::access::rate_limit::Allowance;
use crate::admin::audit;
use crate::identity::Principal;

impl Gateway {
    /// Writes a refusal and records why: metrics, and its audit records.
    pub(super) async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        refusal: Box<Refusal>,
    ) -> Result<bool> {
        let refusal = *refusal;
        ctx.denial = Some(refusal.reason);
        ctx.denial_rule = refusal.rule;
        ctx.principal = refusal.principal;
        self.metrics
            .denials
            .with_label_values(&[refusal.reason.as_str()])
            .inc();
        if let Some(tier) = refusal.rate_limited {
            self.metrics
                .rate_limited
                .with_label_values(&[tier.as_str(), ctx.route_name()])
                .inc();
        }
        for event in refusal.events {
            self.count_login_failure(&event);
            self.audit.record(self.request_event(ctx, event));
        }
        respond::send(session, ctx.headers(), &ctx.request_id, refusal.response).await?;
        Ok(true)
    }

    /// Every `login.failure` audit record is also counted, so alerts need
    /// not guess failed logins from denial reasons.
    pub(super) fn count_login_failure(&self, event: &AuditEvent) {
        if event.kind() == EventKind::LoginFailure {
            self.metrics
                .login_failures
                .with_label_values(&[event.actor_method().unwrap_or("unknown")])
                .inc();
        }
    }

    /// Adds the request's id, client address and route to an audit record.
    pub(super) fn request_event(&self, ctx: &RequestCtx, event: AuditEvent) -> AuditEvent {
        let mut event = event.request_id(ctx.request_id.as_str());
        if let Some(ip) = ctx.client_ip {
            event = event.client_ip(ip);
        }
        match &ctx.admission {
            Some(a) => event.route(a.route.route.name.as_str()),
            None => event,
        }
    }

    /// What a passed request leaves behind: a refreshed session cookie, the
    /// rate-limit headers for the response, an ended engagement, an API
    /// key's first use from here.
    pub(super) fn passed(
        &self,
        ctx: &mut RequestCtx,
        principal: Option<Principal>,
        permit: Permit,
        allowance: Allowance,
    ) {
        // A session's idle timeout slides with use: re-seal it now and then.
        ctx.refreshed_session = principal
            .as_ref()
            .and_then(|p| ctx.snapshot.authenticator.refreshed_session_cookie(p));
        ctx.rate_headers = Some(allowance.headers());
        if let Some(ended) = &allowance.ended {
            self.audit
                .record(self.request_event(ctx, audit::rate_limit_ended(ended)));
        }
        if let (Some(p), Some(ip)) = (&principal, ctx.client_ip) {
            if p.kind == gatehouse_policy::IdentityKind::ApiKey
                && self.audit.api_key_from_new_address(&p.source, ip)
            {
                let event = AuditEvent::new(EventKind::ApiKeyNewAddress, Outcome::Info)
                    .actor(p.subject.as_str(), p.kind.as_str())
                    .detail("key", p.source.as_str());
                self.audit.record(self.request_event(ctx, event));
            }
        }
        ctx.principal = principal;
        ctx.permit = Some(permit);
    }
}
