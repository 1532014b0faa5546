//! Which request methods pass, and which access rule a method answers to.
//!
//! Methods are case-sensitive tokens (RFC 9110 §9.1), but Django, Flask and
//! others upper-case them before dispatch: `post` would skip a rule written
//! for `POST` here and still be a POST upstream. So a method that is not all
//! upper case is refused outright rather than matched loosely.

use gatehouse_policy::{Route, STANDARD_METHODS};
use http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MethodRejection {
    #[error("method is not upper case")]
    NotUpperCase,
    /// CONNECT would turn the gateway into a tunnel; TRACE reflects
    /// credentials back to scripts (XST). Or an extension method the route
    /// does not list.
    #[error("method not allowed")]
    NotAllowed,
}

impl MethodRejection {
    pub const ALL: [MethodRejection; 2] =
        [MethodRejection::NotUpperCase, MethodRejection::NotAllowed];

    pub fn reason(self) -> &'static str {
        match self {
            MethodRejection::NotUpperCase => "method-not-upper-case",
            MethodRejection::NotAllowed => "method-not-allowed",
        }
    }

    pub fn status(self) -> http::StatusCode {
        match self {
            MethodRejection::NotUpperCase => http::StatusCode::BAD_REQUEST,
            MethodRejection::NotAllowed => http::StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

/// Before routing: upper case, and never CONNECT or TRACE.
pub fn check(method: &Method) -> Result<(), MethodRejection> {
    let name = method.as_str();
    if name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(MethodRejection::NotUpperCase);
    }
    if *method == Method::CONNECT || *method == Method::TRACE {
        return Err(MethodRejection::NotAllowed);
    }
    Ok(())
}

/// After routing: a standard method, or an extension method the route lists.
pub fn check_on_route(method: &Method, route: &Route) -> Result<(), MethodRejection> {
    let name = method.as_str();
    if STANDARD_METHODS.contains(&name) || route.extension_methods.contains(name) {
        Ok(())
    } else {
        Err(MethodRejection::NotAllowed)
    }
}

/// The method whose access rule applies: HEAD is a GET without the body,
/// so it answers to GET's rule.
pub fn rule_method(method: &Method) -> &str {
    if *method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(name: &str) -> Method {
        Method::from_bytes(name.as_bytes()).unwrap()
    }

    #[test]
    fn only_upper_case_methods_pass() {
        for name in ["post", "Post", "gET", "propfind"] {
            assert_eq!(
                check(&method(name)),
                Err(MethodRejection::NotUpperCase),
                "{name}"
            );
        }
        for name in ["GET", "POST", "PROPFIND", "M-SEARCH"] {
            assert_eq!(check(&method(name)), Ok(()), "{name}");
        }
    }

    #[test]
    fn tunnels_and_trace_never_pass() {
        assert_eq!(check(&Method::CONNECT), Err(MethodRejection::NotAllowed));
        assert_eq!(check(&Method::TRACE), Err(MethodRejection::NotAllowed));
    }

    #[test]
    fn head_answers_to_get() {
        assert_eq!(rule_method(&Method::HEAD), "GET");
        assert_eq!(rule_method(&Method::POST), "POST");
    }
}
