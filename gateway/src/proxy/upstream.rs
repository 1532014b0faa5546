//! What the upstream receives: exactly the path that was matched and
//! checked, the client address the gateway decided on, the identity it
//! verified, and none of the headers a client could use to pose as
//! something it is not.

use gatehouse_policy::RoleName;
use gatehouse_policy::{Route, IDENTITY_HEADER_PREFIXES, STRIPPED_REQUEST_HEADERS};
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::ErrorType;

use super::head;
use super::stages::Admission;
use crate::edge::request_id::{RequestId, X_REQUEST_ID};
use crate::identity::assertion::AssertionSigner;
use crate::identity::session::{self, FLOW_COOKIE, SESSION_COOKIE};
use crate::identity::Principal;

/// Rewrites the upstream request of an admitted request.
pub(super) fn prepare(
    request: &mut RequestHeader,
    admission: &Admission,
    principal: Option<&Principal>,
    request_id: &RequestId,
    assertion: &AssertionSigner,
) -> Result<()> {
    let route = &admission.route.route;
    // Most paths arrive normalised already; only a changed one is
    // rebuilt (Pingora re-parses the URI).
    if !is_target(request.raw_path(), admission) {
        let target = match &admission.query {
            Some(q) => format!("{}?{q}", admission.path.as_str()),
            None => admission.path.as_str().to_owned(),
        };
        request.set_raw_path(target.as_bytes())?;
    }
    // The address's String becomes the value without a copy.
    let client_ip = HeaderValue::try_from(address_text(admission.client_ip))
        .or_err(ErrorType::InternalError, "client address as a header")?;
    let identity = match principal {
        Some(principal) => Some(identity_headers(
            principal,
            route,
            admission,
            request.method.as_str(),
            assertion,
        )?),
        None => None,
    };
    // The target is origin-form from here on (checked above), so the head
    // loses nothing by being edited as plain `http` parts.
    head::edit_request(request, |headers| {
        strip_client_headers(headers, route);
        headers.reserve(3 + identity.as_ref().map_or(0, |i| i.len()));
        headers.insert(X_FORWARDED_FOR, client_ip);
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        headers.insert(X_REQUEST_ID, request_id.header_value().clone());
        strip_credentials(headers, route);
        for (name, value) in identity.into_iter().flatten() {
            headers.insert(name, value);
        }
    });
    Ok(())
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_GATEHOUSE_USER: HeaderName = HeaderName::from_static("x-gatehouse-user");
const X_GATEHOUSE_EMAIL: HeaderName = HeaderName::from_static("x-gatehouse-email");
const X_GATEHOUSE_ROLES: HeaderName = HeaderName::from_static("x-gatehouse-roles");
const X_GATEHOUSE_ASSERTION: HeaderName = HeaderName::from_static("x-gatehouse-assertion");

/// The address as text. IPv4 is written digit by digit: `Display` for
/// `Ipv4Addr` supports padding and costs more than the rest of this header.
fn address_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// Whether the request's target is already exactly the checked path and
/// query.
fn is_target(raw: &[u8], admission: &Admission) -> bool {
    let path = admission.path.as_str().as_bytes();
    match &admission.query {
        None => raw == path,
        Some(query) => {
            raw.len() == path.len() + 1 + query.len()
                && raw.starts_with(path)
                && raw[path.len()] == b'?'
                && raw.ends_with(query.as_bytes())
        }
    }
}

/// Removes what a client could set to pose as the gateway or as another
/// client: the gateway's own identity headers (always), `Forwarded` (the
/// address goes as `X-Forwarded-For` alone), and the headers frameworks
/// read as address, host, path, method or user, unless the route lets one
/// through. Header names are case-insensitive and `_` was refused at the
/// framing stage, so one lower-case comparison covers every spelling.
fn strip_client_headers(headers: &mut HeaderMap, route: &Route) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            IDENTITY_HEADER_PREFIXES.iter().any(|p| name.starts_with(p))
                || name == "forwarded"
                || (STRIPPED_REQUEST_HEADERS.contains(&name)
                    && !route.pass_headers.iter().any(|p| p == name))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Credentials stay at the gateway unless the route opts in; the login-flow
/// cookie never leaves.
fn strip_credentials(headers: &mut HeaderMap, route: &Route) {
    if !route.forward_authorization {
        headers.remove(&http::header::AUTHORIZATION);
        headers.remove(&X_API_KEY);
    }
    // Most requests carry neither cookie, so the header is only rebuilt
    // when needed.
    if !headers.contains_key(http::header::COOKIE) {
        return;
    }
    for name in [FLOW_COOKIE, SESSION_COOKIE] {
        if name == SESSION_COOKIE && route.forward_session_cookie {
            continue;
        }
        if session::cookie_value(headers, name).is_some() {
            let rest = session::without_cookie(headers, name);
            headers.remove(&http::header::COOKIE);
            if let Some(rest) = rest.and_then(|r| HeaderValue::try_from(r).ok()) {
                headers.insert(http::header::COOKIE, rest);
            }
        }
    }
}

/// `X-Gatehouse-User`, `-Email` (verified addresses only), `-Roles` and the
/// signed `X-Gatehouse-Assertion`.
fn identity_headers(
    principal: &Principal,
    route: &Route,
    admission: &Admission,
    method: &str,
    assertion: &AssertionSigner,
) -> Result<Vec<(HeaderName, HeaderValue)>> {
    let value = |text: String| {
        HeaderValue::try_from(text).or_err(ErrorType::InternalError, "identity header value")
    };
    let mut headers = Vec::with_capacity(4);
    headers.push((X_GATEHOUSE_USER, value(principal.subject.clone())?));
    if let Some(email) = &principal.email {
        headers.push((X_GATEHOUSE_EMAIL, value(email.clone())?));
    }
    let roles = principal
        .roles
        .iter()
        .map(RoleName::as_str)
        .collect::<Vec<_>>()
        .join(",");
    headers.push((X_GATEHOUSE_ROLES, value(roles)?));
    let mac = admission.route.assertion_mac.as_ref();
    let signed = assertion
        .sign(principal, &route.name, mac, method, admission.path.as_str())
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "cannot sign assertion"))?;
    headers.push((X_GATEHOUSE_ASSERTION, value(signed)?));
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::address_text;

    #[test]
    fn addresses_read_as_std_writes_them() {
        for text in [
            "0.0.0.0",
            "10.20.3.255",
            "127.0.0.1",
            "192.168.100.9",
            "::1",
            "2001:db8::7",
        ] {
            let ip: std::net::IpAddr = text.parse().expect("an address");
            assert_eq!(address_text(ip), ip.to_string());
        }
    }
}
