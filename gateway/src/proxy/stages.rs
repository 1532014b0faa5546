//! The request path, as one ordered list of stages in [`Gateway::decide`].
//!
//! Each stage is one call that either refuses the request (a
//! [`Refusal`] with a typed [`Reason`]) or lets it go on; two stages may
//! instead answer it themselves. The first refusal ends the path.
//!
//! 1. **client**: the address decisions are made about: the socket peer,
//!    or, when the peer is a trusted proxy, the right-most untrusted entry
//!    of the one header the policy names. The request id too.
//! 2. **network**: the global allow/deny lists (403), before anything else
//!    answers, the gateway's own endpoints included.
//! 3. **audit**: while the audit log cannot be written and the policy
//!    fails closed, 503.
//! 4. **method**: upper case only (400); never CONNECT or TRACE (405).
//! 5. **framing**: ambiguous HTTP/1 framing, `_` in header names,
//!    `Connection` naming headers (400), oversized heads (431).
//! 6. **host**: a valid host (400) that is the connection's SNI name (421).
//! 7. **path**: normalised; ambiguous encodings get 400.
//! 8. **gateway endpoints**: the JWKS and the OIDC login, callback and
//!    logout pages answer here.
//! 9. **route**: host and longest prefix (404).
//! 10. **route rules**: its network lists (403), its methods (405), its
//!     upgrade rule (400) and its body limit (413).
//! 11. **CORS preflight**: answered here for routes with CORS rules.
//! 12. **identity**: one credential, verified; a bad one is 401, never
//!     anonymous. The login lockout (429) and the password-check bounds
//!     live here.
//! 13. **CSRF**: unsafe methods with a credential the browser attaches by
//!     itself need a same-origin proof (403).
//! 14. **rate limit**: 429 with `Retry-After`.
//! 15. **authorization**: a `Permit`, or 401 (the login page for
//!     browsers) or 403.

use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_audit::{AuditEvent, EventKind, Outcome};
use gatehouse_policy::{Access, IdentityKind, Route};
use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use super::refusal::{Reason, Refusal};
use super::respond::GatewayResponse;
use super::{Gateway, RequestCtx};
use crate::access::authz::{self, Denial};
use crate::edge::path::NormalizedPath;
use crate::edge::request_id::{trusted_request_id, X_REQUEST_ID};
use crate::identity::assertion::JWKS_PATH;
use crate::identity::login::LOGIN_PATH;
use crate::identity::Principal;
use crate::snapshot::PreparedRoute;
use crate::{
    access::cors, edge::client_addr, edge::framing, edge::host, edge::method, edge::path, edge::tls,
};

/// What the stages decided for a request they did not refuse.
pub(super) enum Verdict {
    /// Proxy it: the admission, identity and permit are in the context.
    Proxy,
    /// The gateway answers it itself.
    Answer(GatewayResponse),
}

/// Proof that a request passed stages 1 to 10 for a route. Only
/// [`Gateway::decide`] builds one.
pub struct Admission {
    pub route: Arc<PreparedRoute>,
    pub path: NormalizedPath,
    pub query: Option<String>,
    pub client_ip: IpAddr,
}

impl Gateway {
    /// Runs the stages in order; see the module documentation.
    pub(super) async fn decide(
        &self,
        session: &Session,
        peer: IpAddr,
        ctx: &mut RequestCtx,
    ) -> Result<Verdict, Box<Refusal>> {
        let snapshot = ctx.snapshot.clone();
        let policy = &snapshot.policy;
        let req = session.req_header();

        // 1. client
        let client_ip = self.client(req, peer, ctx);
        // 2. network
        if !client_addr::is_allowed(client_ip, &policy.network.allow, &policy.network.deny) {
            return Err(Reason::NetworkDenied.into());
        }
        // 3. audit
        if self.audit.must_refuse() {
            return Err(Reason::AuditUnavailable.into());
        }
        // 4. method
        method::check(&req.method)?;
        // 5. framing
        let raw_head = raw_head_if_needed(session);
        let head = framing::RequestHead::of(req, raw_head.as_deref());
        framing::check_request_head(&head, policy.limits.max_header_bytes)?;
        // 6. host
        let host = host::request_host(req)?;
        host::check_sni(host.as_deref(), tls::server_name(session))?;
        // 7. path
        let (path, query) = path::normalize_path_and_query(req.raw_path())?;
        // 8. gateway endpoints
        if let Some(answer) = self.jwks(req, &path) {
            return Ok(Verdict::Answer(answer));
        }
        if let Some(answer) = self.login_endpoint(req, &path, query, ctx).await? {
            return Ok(Verdict::Answer(answer));
        }
        // 9. route
        let route = snapshot.routes.find(host.as_deref(), &path)?.clone();
        let query = query.map(str::to_owned);
        ctx.admission = Some(Admission {
            route: route.clone(),
            path,
            query,
            client_ip,
        });
        let route = &route.route;
        // 10. route rules
        route_rules(route, req, client_ip)?;
        // 11. CORS preflight
        if let Some(answer) = cors_preflight(route, req)? {
            return Ok(Verdict::Answer(answer));
        }
        // 12. identity
        let principal = self.identify(ctx, req, route, client_ip).await?;
        // 13. CSRF
        csrf(
            req,
            principal.as_ref(),
            policy.listen.public_origin.as_str(),
        )?;
        // 14. rate limit: this replica's, then the cluster's
        let allowance = snapshot
            .rate_limits
            .check_request(route, principal.as_ref(), client_ip)
            .map_err(|limited| Refusal::rate_limited(limited).of(principal.as_ref()))?;
        let allowance = self
            .cluster_limit(&snapshot, route, allowance)
            .await
            .map_err(|refusal| refusal.of(principal.as_ref()))?;
        // 15. authorization
        let permit = self.authorize(req, route, &snapshot, principal.as_ref(), client_ip)?;

        self.passed(ctx, principal, permit, allowance);
        Ok(Verdict::Proxy)
    }

    /// The gateway's public keys, for upstreams verifying assertions.
    pub fn jwks(&self, req: &RequestHeader, path: &NormalizedPath) -> Option<GatewayResponse> {
        (req.method == http::Method::GET && path.as_str() == JWKS_PATH).then(|| {
            GatewayResponse::status(http::StatusCode::OK)
                .with_body("application/jwk-set+json", self.assertion.jwks().to_owned())
        })
    }

    /// Stage 1: the client address, and a request id (a trusted proxy's,
    /// or a new one).
    pub fn client(&self, req: &RequestHeader, peer: IpAddr, ctx: &mut RequestCtx) -> IpAddr {
        let policy = &ctx.snapshot.policy;
        let client_ip = client_addr::client_ip(
            peer,
            &req.headers,
            &policy.trusted_proxies,
            policy.client_ip_header,
        );
        ctx.client_ip = Some(client_ip);
        ctx.request_id = req
            .headers
            .get(X_REQUEST_ID)
            .filter(|_| client_addr::is_trusted(peer, &policy.trusted_proxies))
            .and_then(trusted_request_id)
            .unwrap_or_else(|| self.request_ids.make());
        client_ip
    }

    /// Stage 15: the permit, or why not.
    pub fn authorize(
        &self,
        req: &RequestHeader,
        route: &Route,
        snapshot: &crate::snapshot::Snapshot,
        principal: Option<&Principal>,
        client_ip: IpAddr,
    ) -> Result<authz::Permit, Box<Refusal>> {
        let rule_method = method::rule_method(&req.method);
        let denial = match authz::decide(route, &snapshot.policy.roles, principal, rule_method) {
            Ok(permit) => return Ok(permit),
            Err(denial) => denial,
        };
        let mut refusal = match &denial {
            Denial::Unauthenticated { .. } if wants_login_page(req, route) => {
                let target = String::from_utf8_lossy(req.raw_path()).into_owned();
                let rd: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
                let location = HeaderValue::from_str(&format!("{LOGIN_PATH}?rd={rd}"))
                    .unwrap_or(HeaderValue::from_static(LOGIN_PATH));
                Refusal::new(Reason::RedirectedToLogin).header(http::header::LOCATION, location)
            }
            Denial::Unauthenticated { .. } => {
                let refusal = challenged(Refusal::new(Reason::Unauthenticated), route);
                // Anyone can send these as fast as they like: one record
                // per address and route opens a window, the rest of the
                // window is one summary (see `audit`).
                let client = snapshot.rate_limits.client_key(client_ip).describe();
                if self.audit.first_anonymous_denial(client, &route.name) {
                    refusal.event(denied_event(denial.rule(), "unauthenticated"))
                } else {
                    refusal
                }
            }
            Denial::Forbidden { reason, .. } => Refusal::new(Reason::Forbidden(*reason))
                .event(denied_event(denial.rule(), reason.reason())),
        };
        refusal.rule = Some(denial.rule().to_owned());
        Err(refusal.of(principal))
    }
}

/// The HTTP/1 head as received, copied only when the parsed head may have
/// lost a Content-Length (see `framing::RequestHead`).
pub fn raw_head_if_needed(session: &Session) -> Option<bytes::Bytes> {
    session
        .req_header()
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
        .then(|| session.as_http1().map(|h1| h1.get_headers_raw_bytes()))
        .flatten()
}

/// Stage 10: what the route itself rules out.
pub fn route_rules(
    route: &Route,
    req: &RequestHeader,
    client_ip: IpAddr,
) -> Result<(), Box<Refusal>> {
    if !client_addr::is_allowed(client_ip, &route.network.allow, &route.network.deny) {
        return Err(Reason::RouteNetworkDenied.into());
    }
    method::check_on_route(&req.method, route)?;
    framing::check_upgrade(&req.headers, route.websocket)?;
    // A declared length; chunked bodies are counted as they arrive.
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > route.max_body) {
        return Err(Reason::BodyTooLarge.into());
    }
    Ok(())
}

/// Stage 11: preflights carry no credentials, so they are answered before
/// identity.
pub fn cors_preflight(
    route: &Route,
    req: &RequestHeader,
) -> Result<Option<GatewayResponse>, Box<Refusal>> {
    let Some(rules) = &route.cors else {
        return Ok(None);
    };
    if !cors::is_preflight(&req.method, &req.headers) {
        return Ok(None);
    }
    let headers = cors::preflight(rules, &req.headers).ok_or(Reason::CorsPreflightDenied)?;
    let mut response = GatewayResponse::status(http::StatusCode::NO_CONTENT);
    for (name, value) in headers {
        response = response.with_header(name, value);
    }
    Ok(Some(response))
}

/// Stage 13: CSRF. Browsers attach session cookies and cached basic
/// credentials to cross-site requests by themselves, so for unsafe methods
/// those credentials need proof the request came from our own pages: an
/// `Origin` equal to ours, or, without one or with `Origin: null`,
/// `Sec-Fetch-Site: same-origin`. Bearer tokens and API keys are never
/// attached by a browser on its own, so they need no proof.
///
/// Browsers send `Origin: null` on a same-origin form POST when the page's
/// `Referrer-Policy` is `no-referrer` (our default; Fetch, "serializing a
/// request origin"), and also from opaque origins (sandboxed frames, `data:`
/// URLs). `Sec-Fetch-Site`, which pages cannot set, tells the two apart: an
/// opaque origin is never `same-origin`.
pub fn csrf(
    req: &RequestHeader,
    principal: Option<&Principal>,
    public_origin: &str,
) -> Result<(), Box<Refusal>> {
    let Some(principal) = principal else {
        return Ok(());
    };
    let browser_attached = matches!(principal.kind, IdentityKind::Oidc | IdentityKind::Basic);
    if !browser_attached || same_origin_proof(req, public_origin) {
        return Ok(());
    }
    Err(Refusal::new(Reason::CsrfCrossSite)
        .event(denied_event("csrf", "csrf-cross-site"))
        .of(Some(principal)))
}

fn same_origin_proof(req: &RequestHeader, public_origin: &str) -> bool {
    if matches!(
        req.method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    ) {
        return true;
    }
    match req
        .headers
        .get(http::header::ORIGIN)
        .filter(|origin| origin.as_bytes() != b"null")
    {
        Some(origin) => origin.as_bytes() == public_origin.as_bytes(),
        None => req
            .headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"same-origin"),
    }
}

/// An `access.denied` record; `Refusal::of` names the caller as its actor.
fn denied_event(rule: &str, reason: &str) -> AuditEvent {
    AuditEvent::new(EventKind::AccessDenied, Outcome::Denied)
        .detail("reason", reason)
        .detail("rule", rule)
}

/// A browser navigation (GET/HEAD asking for HTML) to a route that accepts
/// OIDC sessions is sent to the login page instead of a bare 401.
pub(super) fn wants_login_page(req: &RequestHeader, route: &Route) -> bool {
    let navigates = matches!(req.method, http::Method::GET | http::Method::HEAD)
        && req
            .headers
            .get(http::header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    let accepts_oidc = matches!(&route.access, Access::Restricted { accept, .. }
        if accept.contains(&IdentityKind::Oidc));
    navigates && accepts_oidc
}

/// `WWW-Authenticate` for a route: Bearer, and Basic when it accepts it.
/// One challenge per header line: browsers read only the first challenge
/// of a line, so `Bearer ..., Basic ...` in one line never shows the
/// password prompt.
pub(super) fn challenged(refusal: Box<Refusal>, route: &Route) -> Box<Refusal> {
    let basic = matches!(&route.access, Access::Restricted { accept, .. }
        if accept.contains(&IdentityKind::Basic));
    let refusal = if basic {
        refusal.header(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"gatehouse\", charset=\"UTF-8\""),
        )
    } else {
        refusal
    };
    refusal.header(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"gatehouse\""),
    )
}
