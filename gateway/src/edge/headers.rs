//! Security headers: prepared once per policy, applied to every response
//! (proxied or written by the gateway), and upstream fingerprints removed.

use gatehouse_policy::SecurityHeaders;
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;

/// Upstream headers that only tell an attacker what runs behind us. As
/// `HeaderName`s, so removing them does not parse a name per response.
const FINGERPRINT_HEADERS: [HeaderName; 4] = [
    http::header::SERVER,
    HeaderName::from_static("x-powered-by"),
    HeaderName::from_static("x-aspnet-version"),
    HeaderName::from_static("x-aspnetmvc-version"),
];

/// A route's security headers, converted once at policy load so the hot
/// path only clones ready `HeaderValue`s (cheap: they are `Bytes`).
///
/// Names stay `&'static str`: Pingora records each inserted name for the
/// HTTP/1 wire, and a static string is kept as it is, where a `HeaderName`
/// would be copied (and re-parsed) on every response.
#[derive(Debug, Clone, Default)]
pub struct PreparedHeaders(Vec<(&'static str, HeaderValue)>);

impl PreparedHeaders {
    pub fn new(headers: &SecurityHeaders) -> Self {
        PreparedHeaders(
            headers
                .iter()
                .filter_map(|(name, value)| {
                    // The policy crate has checked both are valid; a failure
                    // here would drop one header rather than serve nothing.
                    Some((name, HeaderValue::from_str(value.as_str()).ok()?))
                })
                .collect(),
        )
    }

    /// Sets every security header, replacing what the upstream sent, and
    /// removes fingerprinting headers.
    pub fn apply(&self, response: &mut ResponseHeader) {
        for name in &FINGERPRINT_HEADERS {
            response.remove_header(name);
        }
        for (name, value) in &self.0 {
            // insert_header only fails on invalid values, which `new` excluded.
            let _ = response.insert_header(*name, value.clone());
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (HeaderName, &HeaderValue)> {
        self.0
            .iter()
            .map(|(name, value)| (HeaderName::from_static(name), value))
    }

    /// A response the gateway's own listeners write (redirect, admin),
    /// with these headers added. A builder that cannot make a response
    /// (it never happens with the values we give it) becomes a bare 500.
    pub fn finish(
        &self,
        mut builder: http::response::Builder,
        body: Vec<u8>,
    ) -> http::Response<Vec<u8>> {
        for (name, value) in self.iter() {
            builder = builder.header(name, value);
        }
        builder.body(body).unwrap_or_else(|_| {
            let mut fallback = http::Response::new(Vec::new());
            *fallback.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            fallback
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_applied_and_fingerprints_removed() {
        let prepared = PreparedHeaders::new(&SecurityHeaders::default());
        let mut response = ResponseHeader::build(200, None).unwrap();
        response.insert_header("server", "nginx/1.2.3").unwrap();
        response.insert_header("x-powered-by", "PHP/5.1").unwrap();
        response
            .insert_header("x-frame-options", "ALLOWALL")
            .unwrap();
        prepared.apply(&mut response);
        assert!(response.headers.get("server").is_none());
        assert!(response.headers.get("x-powered-by").is_none());
        assert_eq!(response.headers["x-frame-options"], "DENY");
        assert_eq!(response.headers["x-content-type-options"], "nosniff");
        assert!(response.headers["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age="));
        assert_eq!(
            response.headers.get_all("x-frame-options").iter().count(),
            1
        );
    }

    #[test]
    fn a_header_turned_off_is_not_sent() {
        let headers = SecurityHeaders {
            x_frame_options: None,
            ..SecurityHeaders::default()
        };
        let mut response = ResponseHeader::build(200, None).unwrap();
        PreparedHeaders::new(&headers).apply(&mut response);
        assert!(response.headers.get("x-frame-options").is_none());
        assert!(response.headers.get("content-security-policy").is_some());
    }
}
