//! The request path through the gateway, as one ordered list of stages.
//!
//! `request_filter` runs the stages in this order; the first that refuses
//! the request writes the response (through [`respond::send`], which adds
//! the security headers) and stops:
//!
//! 1. **peer**: the client address is the socket peer, or, when the peer
//!    is a trusted proxy, the right-most untrusted `X-Forwarded-For` /
//!    `Forwarded` entry.
//! 2. **request id**: taken from a trusted proxy's `X-Request-Id`, or made.
//! 3. **strip identity headers**: `X-Gatehouse-*` and `X-Auth-Request-*`
//!    from the client never reach an upstream.
//! 4. **gateway endpoints**: the JWKS at `/.well-known/gatehouse/jwks.json`
//!    and the OIDC login, callback and logout under `/.gatehouse/`.
//! 5. **framing**: ambiguous HTTP/1 framing, oversized heads, CONNECT and
//!    TRACE are refused (400/405/431, connection closed).
//! 6. **path**: the path is normalised; ambiguous encodings get 400.
//! 7. **network**: the global allow/deny lists (403).
//! 8. **route**: host and longest prefix (404), then the route's own
//!    allow/deny lists (403) and its upgrade rule (400).
//! 9. **body limit**: a declared length over the route's `max_body` gets
//!    413; a chunked body is counted in `request_body_filter`.
//! 10. **CORS preflight**: answered here for routes with CORS rules.
//! 11. **login lockout**: an address that failed too many logins gets 429
//!     for any credential until its window clears.
//! 12. **identity**: one credential (API key, JWT, basic, session cookie);
//!     a bad one is 401, never anonymous, and counts towards the lockout;
//!     CSRF for cookie sessions.
//! 13. **rate limit**: the route's own limit, else per identity, else per
//!     client address; 429 with `Retry-After` and `RateLimit` headers.
//! 14. **authorization**: `authz::decide` gives a `Permit` or a 401 (login
//!     redirect for browsers) / 403.
//!
//! Before stage 4, while the audit log cannot be written and the policy
//! fails closed (`on_audit_failure = "deny"`), every request gets 503.
//! Stages 5 to 9 are `stages::admit`, 11 to 14 `stages::identify_and_authorize`.
//! Refusals carry their audit records; `refuse` writes them.
//! `upstream_peer` refuses to pick an upstream without an `Admission` and a
//! `Permit`. After that: `upstream_request_filter` sends exactly the
//! normalised path, the identity headers and the signed assertion, and
//! strips credentials the route does not forward; `response_filter` applies
//! the route's security headers, CORS and session refresh; `fail_to_proxy`
//! answers 502/504 (or the status a stage chose) through `respond::send`;
//! `logging` writes the access log line and the metrics.

mod endpoints;
mod record;
mod stages;

use stages::{admit, identify_and_authorize, is_reserved_identity_header, Admission, Refusal};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::ErrorType;

use http::HeaderValue;

use crate::assertion::{AssertionSigner, JWKS_PATH};
use crate::audit::Audit;
use crate::authz::Permit;
use crate::client_addr;
use crate::cors;
use crate::identity::session::{FLOW_COOKIE, SESSION_COOKIE};
use crate::identity::{self, Principal};
use crate::login::OidcClients;
use crate::metrics::Metrics;
use crate::outcome::{classify_failure, status_label};
use crate::request_id::{trusted_request_id, RequestIds};
use crate::respond::{self, GatewayResponse};
use crate::server::{InFlight, InFlightGuard};
use crate::snapshot::Snapshot;

pub struct Gateway {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub request_ids: RequestIds,
    pub in_flight: Arc<InFlight>,
    pub assertion: Arc<AssertionSigner>,
    pub oidc: Arc<OidcClients>,
    pub audit: Audit,
}

/// Per-request state. The snapshot is loaded once, here, and used to the end.
pub struct RequestCtx {
    snapshot: Arc<Snapshot>,
    started: Instant,
    request_id: String,
    client_ip: Option<IpAddr>,
    admission: Option<Admission>,
    principal: Option<Principal>,
    /// Only authorization builds a `Permit`; `upstream_peer` needs one.
    permit: Option<Permit>,
    /// A re-sealed session cookie to send with the response.
    refreshed_session: Option<String>,
    /// Why the gateway refused the request, for the access log and metrics.
    denial: Option<&'static str>,
    /// The authorization rule that denied the request, if one did.
    denial_rule: Option<String>,
    /// `RateLimit-Policy` and `RateLimit` for the upstream's response.
    rate_headers: Option<[(&'static str, HeaderValue); 2]>,
    request_body_bytes: u64,
    _in_flight: InFlightGuard,
}

impl RequestCtx {
    fn route_name(&self) -> &str {
        self.admission
            .as_ref()
            .map(|a| a.route.route.name.as_str())
            .unwrap_or("-")
    }

    fn headers(&self) -> &crate::headers::PreparedHeaders {
        self.admission
            .as_ref()
            .map(|a| &a.route.headers)
            .unwrap_or(&self.snapshot.default_headers)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            snapshot: self.snapshot.load_full(),
            started: Instant::now(),
            request_id: String::new(),
            client_ip: None,
            admission: None,
            principal: None,
            permit: None,
            refreshed_session: None,
            denial: None,
            denial_rule: None,
            rate_headers: None,
            request_body_bytes: 0,
            _in_flight: self.in_flight.enter(),
        }
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Slow clients: bound every read of the body, so a trickling upload
        // cannot hold a connection forever.
        let timeout = ctx.snapshot.policy.limits.client_read_timeout;
        session.set_read_timeout(Some(timeout));
        // Pingora waits without limit for the next request on a kept-alive
        // HTTP/1.1 connection (`Some(0)` is its "infinite"); bound that wait
        // the same way. A client that asked to close keeps `None`.
        if session.get_keepalive() == Some(0) {
            session.set_keepalive(Some(timeout.as_secs().max(1)));
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = ctx.snapshot.clone();
        let policy = &snapshot.policy;

        // 1. peer
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no client address"))?;
        let from_trusted_proxy = policy.trusted_proxies.iter().any(|net| net.contains(&peer));
        let client_ip =
            client_addr::client_ip(peer, &session.req_header().headers, &policy.trusted_proxies);
        ctx.client_ip = Some(client_ip);

        // 2. request id
        ctx.request_id = session
            .req_header()
            .headers
            .get("x-request-id")
            .filter(|_| from_trusted_proxy)
            .and_then(trusted_request_id)
            .unwrap_or_else(|| self.request_ids.make());

        // Fail closed while security events cannot be recorded.
        if self.audit.must_refuse() {
            return self
                .refuse(
                    session,
                    ctx,
                    Box::new(Refusal::new(503, "audit-log-unavailable")),
                )
                .await;
        }

        // 3. strip identity headers
        let reserved: Vec<http::HeaderName> = session
            .req_header()
            .headers
            .keys()
            .filter(|name| is_reserved_identity_header(name.as_str()))
            .cloned()
            .collect();
        for name in reserved {
            session.req_header_mut().remove_header(&name);
        }

        // The gateway's own public keys, for upstreams verifying assertions.
        if session.req_header().method == http::Method::GET
            && session.req_header().raw_path() == JWKS_PATH.as_bytes()
        {
            let response = GatewayResponse::status(200)
                .with_body("application/jwk-set+json", self.assertion.jwks().to_owned());
            respond::send(
                session,
                &snapshot.default_headers,
                &ctx.request_id,
                response,
            )
            .await?;
            return Ok(true);
        }

        // The login endpoints, when the policy has OIDC sessions.
        if session.req_header().raw_path().starts_with(b"/.gatehouse/") {
            if let Some(handled) = self.login_endpoint(session, ctx, &snapshot).await? {
                return Ok(handled);
            }
        }

        // 4 to 8
        // The raw head is only needed (and only copied) when the parsed one
        // may have lost a Content-Length; see `framing::RequestHead`.
        let raw_head = session
            .req_header()
            .headers
            .contains_key(http::header::TRANSFER_ENCODING)
            .then(|| session.as_http1().map(|h1| h1.get_headers_raw_bytes()))
            .flatten();
        let admitted = admit(
            &snapshot,
            session.req_header(),
            raw_head.as_deref(),
            client_ip,
        );
        let admission = match admitted {
            Ok(admission) => admission,
            Err(refusal) => return self.refuse(session, ctx, refusal).await,
        };

        // CORS preflights carry no credentials: answered here, before identity.
        if let Some(cors) = &admission.route.route.cors {
            let req = session.req_header();
            if cors::is_preflight(&req.method, &req.headers) {
                let allowed = cors::preflight(cors, &req.headers);
                ctx.admission = Some(admission);
                return match allowed {
                    Some(headers) => {
                        let mut response = GatewayResponse::status(204);
                        for (name, value) in headers {
                            response = response.with_header(name, value);
                        }
                        respond::send(session, ctx.headers(), &ctx.request_id, response).await?;
                        Ok(true)
                    }
                    None => {
                        self.refuse(
                            session,
                            ctx,
                            Box::new(Refusal::new(403, "cors-preflight-denied")),
                        )
                        .await
                    }
                };
            }
        }

        // 11 to 14
        let decided = identify_and_authorize(&snapshot, session.req_header(), &admission).await;
        ctx.admission = Some(admission);
        match decided {
            Ok(passed) => {
                if passed
                    .principal
                    .as_ref()
                    .is_some_and(|p| p.kind == gatehouse_policy::IdentityKind::Oidc)
                {
                    ctx.refreshed_session = snapshot
                        .authenticator
                        .refreshed_session_cookie(&session.req_header().headers);
                }
                self.passed(ctx, passed);
                Ok(false)
            }
            Err(refusal) => self.refuse(session, ctx, refusal).await,
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(chunk) = body else { return Ok(()) };
        ctx.request_body_bytes += chunk.len() as u64;
        let limit = ctx
            .admission
            .as_ref()
            .map(|a| a.route.route.max_body)
            .unwrap_or(0);
        if ctx.request_body_bytes > limit {
            ctx.denial = Some("body-too-large");
            self.metrics
                .denials
                .with_label_values(&["body-too-large"])
                .inc();
            return Error::e_explain(ErrorType::HTTPStatus(413), "request body over max_body");
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // Fail closed: without an Admission and a Permit nothing reaches an
        // upstream.
        let (Some(admission), Some(_permit)) = (ctx.admission.as_ref(), ctx.permit.as_ref()) else {
            return Error::e_explain(
                ErrorType::InternalError,
                "upstream requested without admission",
            );
        };
        let upstream = &admission.route.route.upstream;
        let addr = match upstream.host.parse::<IpAddr>() {
            Ok(ip) => std::net::SocketAddr::new(ip, upstream.port),
            Err(_) => tokio::net::lookup_host(upstream.authority())
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| {
                    Error::explain(ErrorType::ConnectNoRoute, "upstream name did not resolve")
                })?,
        };
        let tls = upstream.scheme == gatehouse_policy::UpstreamScheme::Https;
        let mut peer = HttpPeer::new(addr, tls, upstream.tls_server_name.clone());
        peer.options.connection_timeout = Some(upstream.connect_timeout);
        peer.options.total_connection_timeout = Some(upstream.connect_timeout);
        peer.options.read_timeout = Some(upstream.read_timeout);
        peer.options.write_timeout = Some(upstream.read_timeout);
        if upstream.insecure_skip_verify {
            peer.options.verify_cert = false;
            peer.options.verify_hostname = false;
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(admission) = ctx.admission.as_ref() else {
            return Error::e_explain(
                ErrorType::InternalError,
                "upstream request without admission",
            );
        };
        // The upstream receives exactly the path that was matched and checked.
        let target = match &admission.query {
            Some(q) => format!("{}?{q}", admission.path.as_str()),
            None => admission.path.as_str().to_owned(),
        };
        upstream_request.set_raw_path(target.as_bytes())?;
        upstream_request.remove_header("forwarded");
        upstream_request.insert_header("x-forwarded-for", admission.client_ip.to_string())?;
        upstream_request.insert_header("x-forwarded-proto", "https")?;
        upstream_request.insert_header("x-request-id", ctx.request_id.as_str())?;

        let route = &admission.route.route;
        if !route.forward_authorization {
            upstream_request.remove_header(&http::header::AUTHORIZATION);
            upstream_request.remove_header("x-api-key");
        }
        // The login-flow cookie never leaves; the session cookie only by opt-in.
        // Most requests carry neither, so the header is only rebuilt when needed.
        for name in [FLOW_COOKIE, SESSION_COOKIE] {
            if name == SESSION_COOKIE && route.forward_session_cookie {
                continue;
            }
            if identity::session::cookie_value(&upstream_request.headers, name).is_some() {
                let rest = identity::session::without_cookie(&upstream_request.headers, name);
                upstream_request.remove_header(&http::header::COOKIE);
                if let Some(rest) = rest {
                    upstream_request.insert_header(http::header::COOKIE, rest)?;
                }
            }
        }
        if let Some(principal) = &ctx.principal {
            upstream_request.insert_header("x-gatehouse-user", principal.subject.as_str())?;
            if let Some(email) = &principal.email {
                upstream_request.insert_header("x-gatehouse-email", email.as_str())?;
            }
            let roles = principal
                .roles
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(",");
            upstream_request.insert_header("x-gatehouse-roles", roles)?;
            let assertion = self
                .assertion
                .sign(
                    principal,
                    &route.name,
                    upstream_request.method.as_str(),
                    admission.path.as_str(),
                )
                .ok_or_else(|| Error::explain(ErrorType::InternalError, "cannot sign assertion"))?;
            upstream_request.insert_header("x-gatehouse-assertion", assertion)?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.headers().apply(upstream_response);
        upstream_response.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let Some(rate_headers) = ctx.rate_headers.take() {
            for (name, value) in rate_headers {
                upstream_response.insert_header(name, value)?;
            }
        }
        if let Some(cookie) = ctx.refreshed_session.take() {
            upstream_response.append_header(http::header::SET_COOKIE, cookie)?;
        }
        if let Some(admission) = &ctx.admission {
            if let Some(cors) = &admission.route.route.cors {
                for (name, value) in cors::actual(cors, &session.req_header().headers) {
                    if name == http::header::VARY {
                        upstream_response.append_header(name, value)?;
                    } else {
                        upstream_response.insert_header(name, value)?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (status, kind) = classify_failure(e);
        if let Some(kind) = kind {
            self.metrics
                .upstream_errors
                .with_label_values(&[ctx.route_name(), kind])
                .inc();
        }
        let already_answered = session.response_written().is_some();
        if status > 0 && !already_answered {
            let response = if status == 413 || status == 408 {
                GatewayResponse::closing(status)
            } else {
                GatewayResponse::status(status)
            };
            if let Err(write_error) =
                respond::send(session, ctx.headers(), &ctx.request_id, response).await
            {
                tracing::debug!(request_id = %ctx.request_id, error = %write_error, "could not send error response");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let route = ctx.route_name();
        let elapsed = ctx.started.elapsed();
        self.metrics
            .requests
            .with_label_values(&[route, status_label(status)])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        let req = session.req_header();
        tracing::info!(
            target: "gatehouse::access",
            request_id = %ctx.request_id,
            client = %ctx.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            method = %req.method,
            path = %ctx.admission.as_ref().map(|a| a.path.as_str()).unwrap_or("-"),
            route,
            status,
            denial = ctx.denial.unwrap_or("-"),
            user = ctx.principal.as_ref().map(|p| p.subject.as_str()).unwrap_or("-"),
            auth = ctx.principal.as_ref().map(|p| p.kind.as_str()).unwrap_or("-"),
            identity_source = ctx.principal.as_ref().map(|p| p.source.as_str()).unwrap_or("-"),
            rule = ctx
                .permit
                .as_ref()
                .map(|p| p.rule.as_str())
                .or(ctx.denial_rule.as_deref())
                .unwrap_or("-"),
            error = %e.map(|e| e.etype().as_str()).unwrap_or("-"),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            bytes_in = ctx.request_body_bytes,
            bytes_out = session.body_bytes_sent(),
            "request"
        );
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Every request already gets one access-log line with its error kind.
        true
    }
}
