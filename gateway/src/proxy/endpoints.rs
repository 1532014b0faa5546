//! The gateway's own endpoints on the public listener: the OIDC login,
//! callback and logout pages (see `login.rs`).

use http::HeaderValue;
use pingora::prelude::*;

use super::{Gateway, RequestCtx};
use gatehouse_policy::audit::{AuditEvent, EventKind, Outcome};

use crate::login::{LoginResponse, CALLBACK_PATH};
use crate::path;
use crate::respond::{self, GatewayResponse};
use crate::snapshot::Snapshot;

impl Gateway {
    /// Serves `/.gatehouse/login`, `/callback` and `/logout`. `None` when the
    /// path is not one of them (or sessions are not configured), so routing
    /// continues and answers 404.
    pub(super) async fn login_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
    ) -> Result<Option<bool>> {
        let Some(sealer) = snapshot.authenticator.sealer() else {
            return Ok(None);
        };
        let Ok((path, query)) = path::normalize_path_and_query(session.req_header().raw_path())
        else {
            return Ok(None);
        };
        let is_callback = path.as_str() == CALLBACK_PATH;
        let client_ip = ctx
            .client_ip
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
        if is_callback {
            if let Some(limited) = snapshot.rate_limits.login_locked(client_ip) {
                let refusal = super::stages::rate_limited(limited);
                self.refuse(session, ctx, refusal).await?;
                return Ok(Some(true));
            }
        }
        let req = session.req_header();
        let Some(outcome) = self
            .oidc
            .handle(
                &snapshot.policy,
                sealer,
                &req.method,
                path.as_str(),
                query,
                &req.headers,
            )
            .await
        else {
            return Ok(None);
        };
        let set_cookie = http::header::SET_COOKIE;
        let with_cookies = |mut response: GatewayResponse, cookies: Vec<String>| {
            for cookie in cookies {
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response = response.with_header(set_cookie.clone(), value);
                }
            }
            response
        };
        let response = match outcome {
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
                with_cookies(
                    GatewayResponse::status(302).with_header(http::header::LOCATION, location),
                    cookies,
                )
            }
            LoginResponse::Page { html } => {
                GatewayResponse::status(200).with_body("text/html; charset=utf-8", html)
            }
            LoginResponse::Refused {
                status,
                reason,
                cookies,
            } => {
                ctx.denial = Some(reason);
                self.metrics.denials.with_label_values(&[reason]).inc();
                // A refused callback is a failed login; the provider being
                // down is not the user's failure.
                if is_callback && (400..500).contains(&status) {
                    let failure = AuditEvent::new(EventKind::LoginFailure, Outcome::Failure)
                        .method("oidc")
                        .detail("reason", reason);
                    self.count_login_failure(&failure);
                    self.audit.record(self.request_event(ctx, failure));
                    if let Some(limited) = snapshot.rate_limits.login_failed(client_ip) {
                        self.note_rate_limited(ctx, &limited);
                    }
                }
                with_cookies(GatewayResponse::status(status), cookies)
            }
        };
        respond::send(
            session,
            &snapshot.default_headers,
            &ctx.request_id,
            response,
        )
        .await?;
        Ok(Some(true))
    }
}
