//! The gateway as a Pingora proxy. The request path itself, the numbered
//! list of stages that admit, answer or refuse a request, is
//! `stages.rs` (`Gateway::decide`); this file wires it into Pingora's
//! phases:
//!
//! - `early_request_filter`: the head has arrived (its deadline stops);
//!   per-read timeouts for the body and the keep-alive wait.
//! - `request_filter`: runs `decide`; a refusal is written by `refuse`
//!   (`record.rs`), an answer through [`respond::send`].
//! - `request_body_filter`: counts chunked bodies against `max_body` (413).
//! - `upstream_peer`: refuses to pick an upstream without an `Admission`
//!   and a `Permit`.
//! - `upstream_request_filter`: what the upstream receives (`upstream.rs`).
//! - `response_filter`: the route's security headers, CORS, rate-limit
//!   headers and session refresh.
//! - `fail_to_proxy`: 502/504 (or the status a stage chose) through
//!   [`respond::send`].
//! - `logging`: the access-log line and the metrics; the connection may
//!   now wait for its next request head.

mod cluster_limit;
mod endpoints;
mod head;
mod identify;
pub mod outcome;
mod record;
pub mod refusal;
pub mod respond;
mod stages;
mod upstream;

pub use stages::Admission;

/// The stage functions that are not methods of [`Gateway`], for
/// `benches/stages.rs` (one benchmark per stage); not an API.
#[doc(hidden)]
pub mod bench_support {
    pub use super::stages::{cors_preflight, csrf, raw_head_if_needed, route_rules};
}
use stages::Verdict;
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

use crate::access::authz::Permit;
use crate::access::cors;
use crate::admin::access_log::{self, AccessRecord};
use crate::admin::audit::Audit;
use crate::admin::metrics::{InFlight, InFlightGuard, Metrics};
use crate::edge::head_deadline;
use crate::edge::request_id::{RequestId, RequestIds, X_REQUEST_ID};
use crate::identity::assertion::AssertionSigner;
use crate::identity::login::OidcClients;
use crate::identity::Principal;
use crate::shared_state::SharedState;
use crate::snapshot::Snapshot;
use outcome::classify_failure;
use refusal::Reason;
use respond::GatewayResponse;

pub struct Gateway {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub request_ids: RequestIds,
    pub in_flight: Arc<InFlight>,
    pub assertion: Arc<AssertionSigner>,
    pub oidc: Arc<OidcClients>,
    pub audit: Audit,
    /// What replicas share in Redis, when `[shared_state]` is set.
    pub shared_state: Option<Arc<SharedState>>,
}

/// Per-request state. The snapshot is loaded once, here, and used to the end.
pub struct RequestCtx {
    snapshot: Arc<Snapshot>,
    started: Instant,
    request_id: RequestId,
    client_ip: Option<IpAddr>,
    admission: Option<Admission>,
    principal: Option<Principal>,
    /// Only authorization builds a `Permit`; `upstream_peer` needs one.
    permit: Option<Permit>,
    /// A re-sealed session cookie to send with the response.
    refreshed_session: Option<String>,
    /// Why the gateway refused the request, for the access log and metrics.
    denial: Option<Reason>,
    /// The authorization rule that denied the request, if one did.
    denial_rule: Option<String>,
    /// `RateLimit-Policy` and `RateLimit` for the upstream's response.
    rate_headers: Option<[(http::HeaderName, HeaderValue); 2]>,
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

    fn headers(&self) -> &crate::edge::headers::PreparedHeaders {
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
            request_id: RequestId::none(),
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
        head_deadline::mark_head_received(session);
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
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no client address"))?;
        match self.decide(session, peer, ctx).await {
            Ok(Verdict::Proxy) => Ok(false),
            Ok(Verdict::Answer(response)) => {
                respond::send(session, ctx.headers(), &ctx.request_id, response).await?;
                Ok(true)
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
            ctx.denial = Some(Reason::BodyTooLarge);
            self.metrics
                .denials
                .with_label_values(&[Reason::BodyTooLarge.as_str()])
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
        upstream::prepare(
            upstream_request,
            admission,
            ctx.principal.as_ref(),
            &ctx.request_id,
            &self.assertion,
        )
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Sized once for everything below, so the map does not grow.
        let cors = ctx
            .admission
            .as_ref()
            .and_then(|admission| admission.route.route.cors.as_ref())
            .map(|cors| cors::actual(cors, &session.req_header().headers));
        let rate_headers = ctx.rate_headers.take();
        let cookie = ctx
            .refreshed_session
            .take()
            .map(HeaderValue::try_from)
            .transpose()
            .or_err(
                ErrorType::InternalError,
                "refreshed session cookie is not a header value",
            )?;
        // The request id, then whatever of the rest this response carries.
        let extra = 1
            + rate_headers.as_ref().map_or(0, |r| r.len())
            + usize::from(cookie.is_some())
            + cors.as_ref().map_or(0, |c| c.len());
        let security = ctx.headers();
        head::edit(upstream_response, |headers| {
            headers.reserve(security.len() + extra);
            security.apply(headers);
            headers.insert(X_REQUEST_ID, ctx.request_id.header_value().clone());
            for (name, value) in rate_headers.into_iter().flatten() {
                headers.insert(name, value);
            }
            if let Some(cookie) = cookie {
                headers.append(http::header::SET_COOKIE, cookie);
            }
            for (name, value) in cors.into_iter().flatten() {
                if name == http::header::VARY {
                    headers.append(name, value);
                } else {
                    headers.insert(name, value);
                }
            }
        });
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
        // Pingora's code 0 means "write nothing" (the client is gone).
        let answer = http::StatusCode::from_u16(status)
            .ok()
            .filter(|_| status > 0);
        if let Some(answer) = answer.filter(|_| !already_answered) {
            let response = match answer {
                http::StatusCode::PAYLOAD_TOO_LARGE | http::StatusCode::REQUEST_TIMEOUT => {
                    GatewayResponse::closing(answer)
                }
                _ => GatewayResponse::status(answer),
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
        head_deadline::mark_request_done(session);
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let route = ctx.route_name();
        let elapsed = ctx.started.elapsed();
        let prepared = ctx.admission.as_ref().map(|a| &*a.route);
        self.metrics.record_request(prepared, status, elapsed);
        let principal = ctx.principal.as_ref();
        access_log::write(&AccessRecord {
            request_id: ctx.request_id.as_str(),
            client: ctx.client_ip,
            method: session.req_header().method.as_str(),
            path: ctx.admission.as_ref().map_or("-", |a| a.path.as_str()),
            route,
            status,
            denial: ctx.denial.map_or("-", Reason::as_str),
            user: principal.map_or("-", |p| p.subject.as_str()),
            auth: principal.map_or("-", |p| p.kind.as_str()),
            identity_source: principal.map_or("-", |p| p.source.as_str()),
            rule: ctx
                .permit
                .as_ref()
                .map(|p| p.rule.as_str())
                .or(ctx.denial_rule.as_deref())
                .unwrap_or("-"),
            error: e.map_or("-", |e| e.etype().as_str()),
            duration: elapsed,
            bytes_in: ctx.request_body_bytes,
            bytes_out: session.body_bytes_sent() as u64,
        });
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Every request already gets one access-log line with its error kind.
        true
    }
}
