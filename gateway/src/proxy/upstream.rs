//! What the upstream receives: exactly the path that was matched and
//! checked, the client address the gateway decided on, the identity it
//! verified, and none of the headers a client could use to pose as
//! something it is not.

use gatehouse_policy::{Route, IDENTITY_HEADER_PREFIXES, STRIPPED_REQUEST_HEADERS};
use http::HeaderName;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::ErrorType;

use super::stages::Admission;
use crate::identity::assertion::AssertionSigner;
use crate::identity::session::{self, FLOW_COOKIE, SESSION_COOKIE};
use crate::identity::Principal;

/// Rewrites the upstream request of an admitted request.
pub(super) fn prepare(
    request: &mut RequestHeader,
    admission: &Admission,
    principal: Option<&Principal>,
    request_id: &str,
    assertion: &AssertionSigner,
) -> Result<()> {
    let route = &admission.route.route;
    let target = match &admission.query {
        Some(q) => format!("{}?{q}", admission.path.as_str()),
        None => admission.path.as_str().to_owned(),
    };
    request.set_raw_path(target.as_bytes())?;
    strip_client_headers(request, route);
    request.insert_header("x-forwarded-for", admission.client_ip.to_string())?;
    request.insert_header("x-forwarded-proto", "https")?;
    request.insert_header("x-request-id", request_id)?;
    strip_credentials(request, route)?;
    if let Some(principal) = principal {
        identity_headers(request, principal, route, admission, assertion)?;
    }
    Ok(())
}

/// Removes what a client could set to pose as the gateway or as another
/// client: the gateway's own identity headers (always), `Forwarded` (the
/// address goes as `X-Forwarded-For` alone), and the headers frameworks
/// read as address, host, path, method or user, unless the route lets one
/// through. Header names are case-insensitive and `_` was refused at the
/// framing stage, so one lower-case comparison covers every spelling.
fn strip_client_headers(request: &mut RequestHeader, route: &Route) {
    let doomed: Vec<HeaderName> = request
        .headers
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
        request.remove_header(&name);
    }
}

/// Credentials stay at the gateway unless the route opts in; the login-flow
/// cookie never leaves.
fn strip_credentials(request: &mut RequestHeader, route: &Route) -> Result<()> {
    if !route.forward_authorization {
        request.remove_header(&http::header::AUTHORIZATION);
        request.remove_header("x-api-key");
    }
    // Most requests carry neither cookie, so the header is only rebuilt
    // when needed.
    for name in [FLOW_COOKIE, SESSION_COOKIE] {
        if name == SESSION_COOKIE && route.forward_session_cookie {
            continue;
        }
        if session::cookie_value(&request.headers, name).is_some() {
            let rest = session::without_cookie(&request.headers, name);
            request.remove_header(&http::header::COOKIE);
            if let Some(rest) = rest {
                request.insert_header(http::header::COOKIE, rest)?;
            }
        }
    }
    Ok(())
}

/// `X-Gatehouse-User`, `-Email` (verified addresses only), `-Roles` and the
/// signed `X-Gatehouse-Assertion`.
fn identity_headers(
    request: &mut RequestHeader,
    principal: &Principal,
    route: &Route,
    admission: &Admission,
    assertion: &AssertionSigner,
) -> Result<()> {
    request.insert_header("x-gatehouse-user", principal.subject.as_str())?;
    if let Some(email) = &principal.email {
        request.insert_header("x-gatehouse-email", email.as_str())?;
    }
    let roles = principal
        .roles
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",");
    request.insert_header("x-gatehouse-roles", roles)?;
    let signed = assertion
        .sign(
            principal,
            &route.name,
            request.method.as_str(),
            admission.path.as_str(),
        )
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "cannot sign assertion"))?;
    request.insert_header("x-gatehouse-assertion", signed)?;
    Ok(())
}
