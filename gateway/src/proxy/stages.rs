//! The stages of `request_filter` that decide about a request: framing,
//! path, network, route, body limit (`admit`), then identity and
//! authorization (`identify_and_authorize`). Each refusal carries its
//! response and a stable reason; `proxy::Gateway::refuse` writes it.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderValue;
use pingora::http::RequestHeader;

use crate::authz::{self, Denial, Permit};
use crate::client_addr;
use crate::framing;
use crate::identity::{self, Principal};
use crate::login::LOGIN_PATH;
use crate::path::{self, NormalizedPath};
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
}

impl Refusal {
    pub fn new(status: u16, reason: &'static str) -> Self {
        Refusal {
            response: GatewayResponse::status(status),
            reason,
            rule: None,
            principal: None,
        }
    }

    pub fn closing(status: u16, reason: &'static str) -> Self {
        Refusal {
            response: GatewayResponse::closing(status),
            reason,
            rule: None,
            principal: None,
        }
    }
}

/// Stages 9 and 10: who is calling, and may they? Public routes skip
/// identity entirely. A credential that is present but bad is refused with
/// 401 and never treated as anonymous.
pub async fn identify_and_authorize(
    snapshot: &Snapshot,
    req: &RequestHeader,
    admission: &Admission,
) -> Result<(Option<Principal>, Permit), Box<Refusal>> {
    let route = &admission.route.route;
    let unauthenticated = |reason| Refusal {
        response: GatewayResponse::status(401)
            .with_header(http::header::WWW_AUTHENTICATE, challenge(route)),
        reason,
        rule: None,
        principal: None,
    };
    let principal = match &route.access {
        gatehouse_policy::Access::Public => None,
        gatehouse_policy::Access::Restricted { accept, .. } => {
            match identity::credential(&req.headers) {
                Err(e) => return Err(Box::new(unauthenticated(e.reason()))),
                Ok(None) => None,
                Ok(Some(credential)) => {
                    let from_cookie = matches!(credential, identity::Credential::Session(_));
                    match snapshot
                        .authenticator
                        .verify(credential, admission.client_ip, accept)
                        .await
                    {
                        Ok(principal) => Some(principal),
                        // An expired or stale session on a browser navigation
                        // is a reason to log in again, not a dead end.
                        Err(_) if from_cookie && wants_login_page(req, route) => None,
                        Err(e) => return Err(Box::new(unauthenticated(e.reason()))),
                    }
                }
            }
        }
    };
    if let Some(p) = &principal {
        if p.kind == gatehouse_policy::IdentityKind::Oidc && !cross_site_safe(req, snapshot) {
            return Err(Box::new(Refusal {
                principal: principal.clone(),
                ..Refusal::new(403, "csrf-cross-site")
            }));
        }
    }
    match authz::decide(
        route,
        &snapshot.policy.roles,
        principal.as_ref(),
        req.method.as_str(),
    ) {
        Ok(permit) => Ok((principal, permit)),
        Err(denial @ Denial::Unauthenticated { .. }) if wants_login_page(req, route) => {
            let target = String::from_utf8_lossy(req.raw_path()).into_owned();
            let rd: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
            Err(Box::new(Refusal {
                response: GatewayResponse::status(302).with_header(
                    http::header::LOCATION,
                    HeaderValue::from_str(&format!("{LOGIN_PATH}?rd={rd}"))
                        .unwrap_or(HeaderValue::from_static(LOGIN_PATH)),
                ),
                reason: "unauthenticated-redirected-to-login",
                rule: Some(denial.rule().to_owned()),
                principal: None,
            }))
        }
        Err(denial @ Denial::Unauthenticated { .. }) => Err(Box::new(Refusal {
            rule: Some(denial.rule().to_owned()),
            ..unauthenticated("unauthenticated")
        })),
        Err(denial @ Denial::Forbidden { .. }) => Err(Box::new(Refusal {
            rule: Some(denial.rule().to_owned()),
            principal,
            ..Refusal::new(403, denial.reason())
        })),
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
/// equal to ours, or, without one, `Sec-Fetch-Site: same-origin`.
fn cross_site_safe(req: &RequestHeader, snapshot: &Snapshot) -> bool {
    if matches!(
        req.method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    ) {
        return true;
    }
    match req.headers.get(http::header::ORIGIN) {
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
