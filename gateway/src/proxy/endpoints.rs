//! Stage 8's login pages: `/.gatehouse/login`, `/callback` and `/logout`
//! (see `identity/login/`), when the policy has OIDC sessions.

use gatehouse_audit::{AuditEvent, EventKind, Outcome};
use http::HeaderValue;
use pingora::http::RequestHeader;

use super::refusal::{Reason, Refusal};
use super::respond::GatewayResponse;
use super::{Gateway, RequestCtx};
use crate::edge::path::NormalizedPath;
use crate::identity::login::{LoginResponse, CALLBACK_PATH};

impl Gateway {
    /// The answer of a login page, `None` when the path is not one (or
    /// sessions are not configured), so routing continues.
    pub async fn login_endpoint(
        &self,
        req: &RequestHeader,
        path: &NormalizedPath,
        query: Option<&str>,
        ctx: &RequestCtx,
    ) -> Result<Option<GatewayResponse>, Box<Refusal>> {
        if !path.as_str().starts_with("/.gatehouse/") {
            return Ok(None);
        }
        let snapshot = &ctx.snapshot;
        let client_ip = ctx
            .client_ip
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
        let is_callback = path.as_str() == CALLBACK_PATH;
        if is_callback && snapshot.authenticator.sealer().is_some() {
            if let Some(limited) = snapshot.rate_limits.login_locked(client_ip) {
                return Err(Refusal::rate_limited(limited));
            }
        }
        let Some(outcome) = self
            .oidc
            .handle(
                &snapshot.policy,
                &snapshot.authenticator,
                &req.method,
                path.as_str(),
                query,
                &req.headers,
            )
            .await
        else {
            return Ok(None);
        };
        match outcome {
            LoginResponse::Redirect {
                location,
                cookies,
                event,
            } => {
                if let Some(event) = event {
                    self.audit.record(self.request_event(ctx, event));
                }
                let location =
                    HeaderValue::from_str(&location).unwrap_or(HeaderValue::from_static("/"));
                let response = GatewayResponse::status(http::StatusCode::FOUND)
                    .with_header(http::header::LOCATION, location);
                Ok(Some(with_cookies(response, cookies)))
            }
            LoginResponse::Page { html } => Ok(Some(
                GatewayResponse::status(http::StatusCode::OK)
                    .with_body("text/html; charset=utf-8", html),
            )),
            LoginResponse::Refused { reason, cookies } => {
                let mut refusal = Refusal::new(Reason::Login(reason));
                refusal.response.extra.extend(set_cookies(cookies));
                // A refused callback is a failed login; the provider being
                // down is not the user's failure.
                if is_callback && reason.is_login_failure() {
                    refusal = refusal.event(
                        AuditEvent::new(EventKind::LoginFailure, Outcome::Failure)
                            .method("oidc")
                            .detail("reason", reason.reason()),
                    );
                    if let Some(limited) = snapshot.rate_limits.login_failed(client_ip) {
                        if limited.started {
                            refusal =
                                refusal.event(crate::admin::audit::rate_limit_started(&limited));
                        }
                    }
                }
                Err(refusal)
            }
        }
    }
}

fn with_cookies(mut response: GatewayResponse, cookies: Vec<String>) -> GatewayResponse {
    response.extra.extend(set_cookies(cookies));
    response
}

fn set_cookies(cookies: Vec<String>) -> impl Iterator<Item = (http::HeaderName, HeaderValue)> {
    cookies
        .into_iter()
        .filter_map(|cookie| HeaderValue::from_str(&cookie).ok())
        .map(|value| (http::header::SET_COOKIE, value))
}
