//! Security headers: prepared once per policy, applied to every response
//! (proxied or written by the gateway), and upstream fingerprints removed.

use gatehouse_policy::SecurityHeaders;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Upstream headers that only tell an attacker what runs behind us. As
/// `HeaderName`s, so removing them does not parse a name per response.
const FINGERPRINT_HEADERS: [HeaderName; 4] = [
    http::header::SERVER,
    HeaderName::from_static("x-powered-by"),
    HeaderName::from_static("x-aspnet-version"),
    HeaderName::from_static("x-aspnetmvc-version"),
];

/// Marks a value that is never sent twice (the request id) for HTTP/2
/// never to index. HPACK otherwise adds each one to the connection's
/// dynamic table, where it is never used again but pushes the long, fixed
/// security headers out, so those are re-encoded (Huffman and all) every
/// few dozen responses: about 4k instructions per h2 response, for 2.7 bytes
/// saved. `RateLimit` stays indexed: its few values recur. Over HTTP/1 the
/// mark has no effect.
pub fn never_indexed(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// A route's security headers, converted once at policy load so the hot
/// path only clones ready names and values (cheap: both are `Bytes`, and
/// the names are never parsed again).
#[derive(Debug, Clone, Default)]
pub struct PreparedHeaders(Vec<(HeaderName, HeaderValue)>);

impl PreparedHeaders {
    pub fn new(headers: &SecurityHeaders) -> Self {
        PreparedHeaders(
            headers
                .iter()
                .filter_map(|(name, value)| {
                    // The names are the policy crate's lower-case constants
                    // (a static name is cloned without touching a counter);
                    // it has checked the values, and a failure here would
                    // drop one header rather than serve nothing.
                    Some((
                        HeaderName::from_static(name),
                        HeaderValue::from_str(value.as_str()).ok()?,
                    ))
                })
                .collect(),
        )
    }

    /// How many headers `apply` sets.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets every security header, replacing what the upstream sent, and
    /// removes fingerprinting headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &FINGERPRINT_HEADERS {
            headers.remove(name);
        }
        for (name, value) in &self.0 {
            headers.insert(name.clone(), value.clone());
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0.iter().map(|(name, value)| (name, value))
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
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("nginx/1.2.3"));
        headers.insert("x-powered-by", HeaderValue::from_static("PHP/5.1"));
        headers.append("x-frame-options", HeaderValue::from_static("ALLOWALL"));
        headers.append("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
        prepared.apply(&mut headers);
        assert!(headers.get("server").is_none());
        assert!(headers.get("x-powered-by").is_none());
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(headers["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age="));
        assert_eq!(headers.get_all("x-frame-options").iter().count(), 1);
        assert_eq!(prepared.len(), 8);
    }

    #[test]
    fn a_header_turned_off_is_not_sent() {
        let headers = SecurityHeaders {
            x_frame_options: None,
            ..SecurityHeaders::default()
        };
        let mut response = HeaderMap::new();
        PreparedHeaders::new(&headers).apply(&mut response);
        assert!(response.get("x-frame-options").is_none());
        assert!(response.get("content-security-policy").is_some());
    }
}
