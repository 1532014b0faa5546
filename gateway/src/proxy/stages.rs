//! The stages of `request_filter` that decide about a request: framing,
//! path, network, route, body limit (`admit`), then login lockout,
//! identity, rate limit and authorization (`identify_and_authorize`). Each
//! refusal carries its response, a stable reason and its audit records;
//! `proxy::Gateway::refuse` writes it.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderValue;
use pingora::http::RequestHeader;

use gatehouse_policy::audit::{AuditEvent, EventKind, Outcome};
use gatehouse_policy::IdentityKind;

use crate::audit;
use crate::authz::{self, Denial, Permit};
use crate::client_addr;
use crate::framing;
use crate::identity::{self, Principal};
use crate::login::LOGIN_PATH;
use crate::path::{self, NormalizedPath};
use crate::rate_limit::{self, retry_after_secs, Allowance, Limited, Tier};
use crate::respond::GatewayResponse;
use crate::snapshot::{PreparedRoute, Snapshot};

/// Proof that a request passed every stage of `request_filter`. Only
/// [`admit`] builds one.
pub struct Admission {
    pub route: Arc<PreparedRoute>,
    pub path: NormalizedPath,
    pub query: Option<String>,
    pub client_ip: IpAddr,
}

/// What a refusing stage answers, and the stable reason it records.
pub struct Refusal {
    pub response: GatewayResponse,
    pub reason: &'static str,
    /// The authorization rule that denied, when one did.
    pub rule: Option<String>,
    /// Who was refused, when they were identified (for the access log).
    pub principal: Option<Principal>,
    /// Audit records this refusal makes (the caller adds the request's
    /// id, address and route).
    pub events: Vec<AuditEvent>,
    /// The rate-limit tier that refused, for the metrics.
    pub rate_limited: Option<Tier>,
}

impl Refusal {
    pub fn new(status: u16, reason: &'static str) -> Self {
        Self::with_response(GatewayResponse::status(status), reason)
    }

    pub fn closing(status: u16, reason: &'static str) -> Self {
        Self::with_response(GatewayResponse::closing(status), reason)
    }

    fn with_response(response: GatewayResponse, reason: &'static str) -> Self {
        Refusal {
            response,
            reason,
            rule: None,
            principal: None,
            events: Vec::new(),
            rate_limited: None,
        }
    }
}

/// 429 with `Retry-After` and the rate-limit headers; one audit record
/// when this refusal starts an engagement.
pub fn rate_limited(limited: Limited) -> Box<Refusal> {
    let retry = retry_after_secs(limited.retry_after);
    let mut response = GatewayResponse::status(429)
        .with_header(http::header::RETRY_AFTER, HeaderValue::from(retry));
    for (name, value) in rate_limit::headers(limited.tier, limited.rate, 0, limited.retry_after) {
        response = response.with_header(http::HeaderName::from_static(name), value);
    }
    let mut refusal = Refusal::with_response(response, "rate-limited");
    refusal.rate_limited = Some(limited.tier);
    if limited.started {
        refusal.events.push(audit::rate_limit_started(&limited));
    }
    Box::new(refusal)
}

/// A request that may go on: who is calling (if anyone), the permit, and
/// the rate-limit state to report in the response headers.
pub struct Passed {
    pub principal: Option<Principal>,
    pub permit: Permit,
    pub allowance: Allowance,
}

/// Stages 11 to 14: the login lockout, who is calling, the rate limit,
/// and whether they may. Public routes skip identity entirely. A
/// credential that is present but bad is refused with 401 and never
/// treated as anonymous, and counts against the address's login tier.
pub async fn identify_and_authorize(
    snapshot: &Snapshot,
    req: &RequestHeader,
    admission: &Admission,
) -> Result<Passed, Box<Refusal>> {
    let route = &admission.route.route;
    let limits = &snapshot.rate_limits;
    let ip = admission.client_ip;
    let unauthenticated = |reason| {
        Refusal::with_response(
            GatewayResponse::status(401)
                .with_header(http::header::WWW_AUTHENTICATE, challenge(route)),
            reason,
        )
    };
    // A failed login: 401, one audit record, and a step towards lockout.
    let login_failure = |reason: &'static str, method: Option<IdentityKind>| {
        let mut refusal = unauthenticated(reason);
        let mut event =
            AuditEvent::new(EventKind::LoginFailure, Outcome::Failure).detail("reason", reason);
        if let Some(method) = method {
            event = event.method(method.as_str());
        }
        refusal.events.push(event);
        if let Some(limited) = limits.login_failed(ip) {
            if limited.started {
                refusal.events.push(audit::rate_limit_started(&limited));
            }
        }
        Box::new(refusal)
    };

    // 11, 12: lockout and identity
    let principal = match &route.access {
        gatehouse_policy::Access::Public => None,
        gatehouse_policy::Access::Restricted { accept, .. } => {
            match identity::credential(&req.headers) {
                Err(e) => {
                    if let Some(limited) = limits.login_locked(ip) {
                        return Err(rate_limited(limited));
                    }
                    return Err(login_failure(e.reason(), None));
                }
                Ok(None) => None,
                Ok(Some(credential)) => {
                    let kind = credential.kind();
                    let from_cookie = kind == IdentityKind::Oidc;
                    if !from_cookie {
                        if let Some(limited) = limits.login_locked(ip) {
                            return Err(rate_limited(limited));
                        }
                    }
                    match snapshot.authenticator.verify(credential, ip, accept).await {
                        Ok(principal) => Some(principal),
                        // An expired or stale session on a browser navigation
                        // is a reason to log in again, not a dead end.
                        Err(_) if from_cookie && wants_login_page(req, route) => None,
                        // A sealed cookie cannot be guessed; a stale one is
                        // not a brute-force attempt.
                        Err(e) if from_cookie => return Err(Box::new(unauthenticated(e.reason()))),
                        Err(e) => return Err(login_failure(e.reason(), Some(kind))),
                    }
                }
            }
        }
    };
    let denied = |principal: Option<Principal>, rule: Option<String>, reason: &'static str| {
        let mut event =
            AuditEvent::new(EventKind::AccessDenied, Outcome::Denied).detail("reason", reason);
        if let Some(p) = &principal {
            event = event.actor(p.subject.as_str(), p.kind.as_str());
        }
        if let Some(rule) = &rule {
            event = event.detail("rule", rule.as_str());
        }
        (event, principal, rule)
    };
    if let Some(p) = &principal {
        if p.kind == IdentityKind::Oidc && !cross_site_safe(req, snapshot) {
            let (event, principal, _) = denied(principal.clone(), None, "csrf-cross-site");
            let mut refusal = Refusal::new(403, "csrf-cross-site");
            refusal.events.push(event);
            refusal.principal = principal;
            return Err(Box::new(refusal));
        }
    }

    // 13: rate limit
    let allowance = match limits.check_request(route, principal.as_ref(), ip) {
        Ok(allowance) => allowance,
        Err(limited) => {
            let mut refusal = rate_limited(limited);
            if let Some(p) = &principal {
                refusal.events = std::mem::take(&mut refusal.events)
                    .into_iter()
                    .map(|event| event.actor(p.subject.as_str(), p.kind.as_str()))
                    .collect();
            }
            refusal.principal = principal;
            return Err(refusal);
        }
    };

    // 14: authorization
    match authz::decide(
        route,
        &snapshot.policy.roles,
        principal.as_ref(),
        req.method.as_str(),
    ) {
        Ok(permit) => Ok(Passed {
            principal,
            permit,
            allowance,
        }),
        Err(denial @ Denial::Unauthenticated { .. }) if wants_login_page(req, route) => {
            let target = String::from_utf8_lossy(req.raw_path()).into_owned();
            let rd: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
            let mut refusal = Refusal::with_response(
                GatewayResponse::status(302).with_header(
                    http::header::LOCATION,
                    HeaderValue::from_str(&format!("{LOGIN_PATH}?rd={rd}"))
                        .unwrap_or(HeaderValue::from_static(LOGIN_PATH)),
                ),
                "unauthenticated-redirected-to-login",
            );
            refusal.rule = Some(denial.rule().to_owned());
            Err(Box::new(refusal))
        }
        Err(denial @ Denial::Unauthenticated { .. }) => {
            let (event, _, rule) = denied(None, Some(denial.rule().to_owned()), "unauthenticated");
            let mut refusal = unauthenticated("unauthenticated");
            refusal.rule = rule;
            refusal.events.push(event);
            Err(Box::new(refusal))
        }
        Err(denial @ Denial::Forbidden { .. }) => {
            let (event, principal, rule) =
                denied(principal, Some(denial.rule().to_owned()), denial.reason());
            let mut refusal = Refusal::new(403, denial.reason());
            refusal.rule = rule;
            refusal.principal = principal;
            refusal.events.push(event);
            Err(Box::new(refusal))
        }
    }
}

/// A browser navigation (GET/HEAD asking for HTML) to a route that accepts
/// OIDC sessions is sent to the login page instead of a bare 401.
fn wants_login_page(req: &RequestHeader, route: &gatehouse_policy::Route) -> bool {
    let navigates = matches!(req.method, http::Method::GET | http::Method::HEAD)
        && req
            .headers
            .get(http::header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    let accepts_oidc = matches!(&route.access, gatehouse_policy::Access::Restricted { accept, .. }
        if accept.contains(&gatehouse_policy::IdentityKind::Oidc));
    navigates && accepts_oidc
}

/// CSRF for cookie-authenticated requests: unsafe methods need an `Origin`
/// equal to ours, or, without one or with `Origin: null`,
/// `Sec-Fetch-Site: same-origin`.
///
/// Browsers send `Origin: null` on a same-origin form POST when the page's
/// `Referrer-Policy` is `no-referrer` (our default; Fetch, "serializing a
/// request origin"), and also from opaque origins (sandboxed frames, `data:`
/// URLs). `Sec-Fetch-Site`, which pages cannot set, tells the two apart: an
/// opaque origin is never `same-origin`.
fn cross_site_safe(req: &RequestHeader, snapshot: &Snapshot) -> bool {
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
        Some(origin) => {
            origin.as_bytes() == snapshot.policy.listen.public_origin.as_str().as_bytes()
        }
        None => req
            .headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"same-origin"),
    }
}

/// `WWW-Authenticate` for a route: Bearer, plus Basic when it accepts it.
fn challenge(route: &gatehouse_policy::Route) -> HeaderValue {
    let basic = matches!(&route.access, gatehouse_policy::Access::Restricted { accept, .. }
        if accept.contains(&gatehouse_policy::IdentityKind::Basic));
    HeaderValue::from_static(if basic {
        "Bearer realm=\"gatehouse\", Basic realm=\"gatehouse\", charset=\"UTF-8\""
    } else {
        "Bearer realm=\"gatehouse\""
    })
}

/// Stages 4 to 8. Pure over the request head and snapshot, so every refusal
/// reason is visible in one place.
pub fn admit(
    snapshot: &Snapshot,
    req: &RequestHeader,
    raw_head: Option<&[u8]>,
    client_ip: IpAddr,
) -> Result<Admission, Box<Refusal>> {
    let policy = &snapshot.policy;
    let raw_target = req.raw_path();

    // 4. framing
    let head = framing::RequestHead {
        method: &req.method,
        version: req.version,
        headers: &req.headers,
        raw_target_len: raw_target.len(),
        raw_head,
    };
    framing::check_request_head(&head, policy.limits.max_header_bytes)
        .map_err(|v| Refusal::closing(v.status(), v.reason()))?;

    // 5. path
    let (path, query) =
        path::normalize_path_and_query(raw_target).map_err(|r| Refusal::new(400, r.reason()))?;
    let query = query.map(str::to_owned);

    // 6. network
    if !client_addr::is_allowed(client_ip, &policy.network.allow, &policy.network.deny) {
        return Err(Box::new(Refusal::new(403, "network-denied")));
    }

    // 7. route
    let host = request_host(req);
    let route = snapshot
        .routes
        .find(host, &path)
        .ok_or_else(|| Refusal::new(404, "no-route"))?;
    let rules = &route.route.network;
    if !client_addr::is_allowed(client_ip, &rules.allow, &rules.deny) {
        return Err(Box::new(Refusal::new(403, "route-network-denied")));
    }
    framing::check_upgrade(&req.headers, route.route.websocket)
        .map_err(|v| Refusal::closing(v.status(), v.reason()))?;

    // 8. body limit (declared length; chunked bodies are counted as they arrive)
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > route.route.max_body) {
        return Err(Box::new(Refusal::closing(413, "body-too-large")));
    }

    Ok(Admission {
        route: route.clone(),
        path,
        query,
        client_ip,
    })
}

/// The request's host without port, from `Host` (HTTP/1) or the URI
/// authority (HTTP/2).
fn request_host(req: &RequestHeader) -> Option<&str> {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    Some(strip_port(raw))
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Client-sent headers that only the gateway may set towards upstreams.
pub fn is_reserved_identity_header(name: &str) -> bool {
    name.starts_with("x-gatehouse-") || name.starts_with("x-auth-request-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_is_stripped() {
        assert_eq!(strip_port("example.com:8443"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8443"), "::1");
    }

    #[test]
    fn reserved_identity_headers_are_recognised() {
        assert!(is_reserved_identity_header("x-gatehouse-user"));
        assert!(is_reserved_identity_header("x-auth-request-email"));
        assert!(!is_reserved_identity_header("x-gatehousex"));
    }
}
