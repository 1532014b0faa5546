//! CORS per route. The gateway answers preflights itself (they carry no
//! credentials, so they never reach identity or the upstream) and adds the
//! `Access-Control-Allow-*` headers to actual responses for allowed origins.
//! `*` with credentials cannot be configured (see `gatehouse_policy::CorsOrigins`).

use gatehouse_policy::{Cors, CorsOrigins};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

pub type Headers = Vec<(HeaderName, HeaderValue)>;

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::OPTIONS
        && headers.contains_key(http::header::ORIGIN)
        && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The `Access-Control-Allow-Origin` (and credentials) headers for `origin`,
/// or `None` when the origin is not allowed.
fn allow_origin(cors: &Cors, origin: &HeaderValue) -> Option<Headers> {
    let vary = (http::header::VARY, HeaderValue::from_static("Origin"));
    match &cors.origins {
        CorsOrigins::Any => Some(vec![(
            http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        )]),
        CorsOrigins::List {
            origins,
            allow_credentials,
        } => {
            let origin_text = origin.to_str().ok()?;
            if !origins.iter().any(|o| o == origin_text) {
                return None;
            }
            let mut headers = vec![
                (http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
                vary,
            ];
            if *allow_credentials {
                headers.push((
                    http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                ));
            }
            Some(headers)
        }
    }
}

/// Headers answering an allowed preflight, or `None` to refuse it.
pub fn preflight(cors: &Cors, request: &HeaderMap) -> Option<Headers> {
    let origin = request.get(http::header::ORIGIN)?;
    let mut headers = allow_origin(cors, origin)?;
    let method = request
        .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)?
        .to_str()
        .ok()?;
    if !cors.methods.iter().any(|m| m == method) {
        return None;
    }
    let requested: Vec<String> = request
        .get_all(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if !requested.iter().all(|h| cors.headers.contains(h)) {
        return None;
    }
    headers.push((
        http::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_str(&cors.methods.join(", ")).ok()?,
    ));
    if !cors.headers.is_empty() {
        headers.push((
            http::header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_str(&cors.headers.join(", ")).ok()?,
        ));
    }
    headers.push((
        http::header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(cors.max_age.as_secs()),
    ));
    Some(headers)
}

/// Headers for an actual cross-origin response; empty when not allowed.
pub fn actual(cors: &Cors, request: &HeaderMap) -> Headers {
    request
        .get(http::header::ORIGIN)
        .and_then(|origin| allow_origin(cors, origin))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cors(origins: CorsOrigins) -> Cors {
        Cors {
            origins,
            methods: vec!["GET".into(), "POST".into()],
            headers: vec!["content-type".into()],
            max_age: Duration::from_secs(600),
        }
    }

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    fn listed() -> Cors {
        cors(CorsOrigins::List {
            origins: vec!["https://app.test".into()],
            allow_credentials: true,
        })
    }

    #[test]
    fn allowed_preflight_gets_the_allow_headers() {
        let req = request(&[
            ("origin", "https://app.test"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "Content-Type"),
        ]);
        let headers = preflight(&listed(), &req).unwrap();
        let get = |n: HeaderName| {
            headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get(http::header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
            "https://app.test"
        );
        assert_eq!(
            get(http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS).unwrap(),
            "true"
        );
        assert_eq!(get(http::header::ACCESS_CONTROL_MAX_AGE).unwrap(), "600");
    }

    #[test]
    fn other_origins_methods_and_headers_are_refused() {
        for pairs in [
            &[
                ("origin", "https://evil.test"),
                ("access-control-request-method", "GET"),
            ][..],
            &[
                ("origin", "https://app.test"),
                ("access-control-request-method", "DELETE"),
            ][..],
            &[
                ("origin", "https://app.test"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-secret"),
            ][..],
        ] {
            assert!(preflight(&listed(), &request(pairs)).is_none(), "{pairs:?}");
        }
        assert!(actual(&listed(), &request(&[("origin", "https://evil.test")])).is_empty());
    }

    #[test]
    fn wildcard_never_allows_credentials() {
        let headers = actual(
            &cors(CorsOrigins::Any),
            &request(&[("origin", "https://x.test")]),
        );
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].1, "*");
    }
}
