//! Every response the gateway writes itself goes through [`send`].
//!
//! Pingora does not run `response_filter` for responses written from
//! `request_filter` or `fail_to_proxy`, so this is where those responses get
//! the security headers. Bodies are short fixed phrases: the cause stays in
//! the request context for the access log, never in the response.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, StatusCode};
use pingora::http::ResponseHeader;
use pingora::prelude::*;

use crate::edge::headers::PreparedHeaders;
use crate::edge::request_id::{RequestId, X_REQUEST_ID};
use crate::proxy::head;

/// A gateway-written response: status, optional extra headers, and whether
/// the connection must close afterwards (framing errors, where the rest of
/// the stream cannot be trusted).
pub struct GatewayResponse {
    pub status: StatusCode,
    pub extra: Vec<(HeaderName, HeaderValue)>,
    pub close: bool,
    /// A body of the gateway's own (content type, text) instead of the
    /// fixed status phrase.
    pub body: Option<(&'static str, String)>,
}

impl GatewayResponse {
    pub fn status(status: StatusCode) -> Self {
        GatewayResponse {
            status,
            extra: Vec::new(),
            close: false,
            body: None,
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.extra.push((name, value));
        self
    }

    pub fn with_body(mut self, content_type: &'static str, body: String) -> Self {
        self.body = Some((content_type, body));
        self
    }

    pub fn closing(status: StatusCode) -> Self {
        GatewayResponse {
            close: true,
            ..Self::status(status)
        }
    }
}

/// Writes `response` with the security headers of `headers` and the request
/// id. Returns the status written, for logging.
pub async fn send(
    session: &mut Session,
    headers: &PreparedHeaders,
    request_id: &RequestId,
    response: GatewayResponse,
) -> Result<StatusCode> {
    let (content_type, body) = match response.body {
        Some((content_type, body)) => (content_type, Bytes::from(body)),
        None => (
            "text/plain; charset=utf-8",
            Bytes::from(phrase(response.status)),
        ),
    };
    // Room for the four below, the extras, the security headers and
    // `Connection`, so the map never grows while they go in.
    let mut head = head::build(response.status, 5 + response.extra.len() + headers.len());
    let fields = &mut head.headers;
    fields.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    fields.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    fields.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    fields.insert(X_REQUEST_ID, request_id.header_value().clone());
    for (name, value) in response.extra {
        // Appended, not replaced: a response may set several cookies.
        fields.append(name, value);
    }
    headers.apply(fields);
    if response.close {
        fields.insert(CONNECTION, HeaderValue::from_static("close"));
        session.set_keepalive(None);
    }
    let head = ResponseHeader::from(head);
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(head), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(response.status)
}

/// A short, fixed body per status: enough for a human, nothing for an attacker.
fn phrase(status: StatusCode) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    format!("{} {reason}\n", status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_name_only_the_status() {
        let status = |code| StatusCode::from_u16(code).expect("a valid status");
        assert_eq!(phrase(status(403)), "403 Forbidden\n");
        assert_eq!(phrase(status(431)), "431 Request Header Fields Too Large\n");
        assert_eq!(phrase(status(599)), "599 Error\n");
    }
}
