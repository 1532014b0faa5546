//! Request and response heads as the gateway writes and edits them.
//!
//! Pingora's `ResponseHeader` keeps a second map beside the header map: each
//! name as it was spelt, so that an HTTP/1 response can repeat an upstream's
//! capitalisation. Every `insert_header` therefore parses the name again
//! (allocating for any name outside `http`'s standard list) and writes both
//! maps; it was ~1.5k instructions per header, for 11 headers on every
//! proxied response (bench/README.md). The gateway edits the plain `http`
//! header map instead, with names parsed once at policy load, and the head
//! it hands back has no spelling map: HTTP/1 clients get the names in lower
//! case (Pingora capitalises a few standard ones, such as `Content-Type`),
//! as HTTP/2 clients always do. Field names are case-insensitive (RFC 9110
//! §5.1); HAProxy sends them in lower case too.

use http::response::Parts;
use http::{HeaderMap, StatusCode};
use pingora::http::{RequestHeader, ResponseHeader};

/// Runs `edit` on `response`'s headers and leaves `response` without a
/// spelling map. The status and a non-standard reason phrase are kept.
///
/// `http`'s `insert` and `append` panic past 32,768 entries; Pingora reads
/// at most 256 headers from an upstream, and the gateway adds a few dozen
/// at most, so `edit` may use them.
pub fn edit<T>(response: &mut ResponseHeader, edit: impl FnOnce(&mut HeaderMap) -> T) -> T {
    let custom_reason = response
        .get_reason_phrase()
        .filter(|reason| Some(*reason) != response.status.canonical_reason())
        .map(str::to_owned);
    let mut parts: Parts = std::mem::replace(response, ResponseHeader::from(empty())).into();
    let edited = edit(&mut parts.headers);
    *response = ResponseHeader::from(parts);
    if let Some(reason) = custom_reason {
        // Only fails on a reason that was already accepted once.
        let _ = response.set_reason_phrase(Some(&reason));
    }
    edited
}

/// Runs `edit` on an upstream request's headers and leaves `request`
/// without a spelling map (upstreams get lower-case names, as they already
/// do for every HTTP/2 client). Only for an origin-form target: the plain
/// parts keep the URI, not a verbatim absolute-form target.
pub fn edit_request<T>(request: &mut RequestHeader, edit: impl FnOnce(&mut HeaderMap) -> T) -> T {
    // Pingora sets this only for gRPC-web; keep whatever it is.
    let end_stream = request.send_end_stream();
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts: http::request::Parts = std::mem::replace(request, placeholder).into();
    let edited = edit(&mut parts.headers);
    *request = RequestHeader::from(parts);
    if let Some(end_stream) = end_stream {
        request.set_send_end_stream(end_stream);
    }
    edited
}

/// A head for a response the gateway writes itself, with room for
/// `headers` headers so that adding them does not grow the map.
pub fn build(status: StatusCode, headers: usize) -> Parts {
    let mut parts = empty();
    parts.status = status;
    parts.headers.reserve(headers);
    parts
}

/// The head of `http::Response::new(())`: status 200, HTTP/1.1, no
/// headers, and nothing allocated.
fn empty() -> Parts {
    http::Response::new(()).into_parts().0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::request_id::X_REQUEST_ID;
    use bytes::BytesMut;
    use http::HeaderValue;

    fn upstream_head(reason: &str) -> ResponseHeader {
        let mut head = ResponseHeader::build(StatusCode::OK, Some(4)).unwrap();
        head.set_reason_phrase(Some(reason)).unwrap();
        head.append_header("Content-Type", "text/plain").unwrap();
        head.append_header("X-Upstream-Thing", "1").unwrap();
        head.append_header("Set-Cookie", "a=1").unwrap();
        head.append_header("Set-Cookie", "b=2").unwrap();
        head
    }

    fn wire(head: &ResponseHeader) -> String {
        let mut buf = BytesMut::new();
        head.header_to_h1_wire(&mut buf);
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn an_edited_head_keeps_status_reason_and_every_value_in_order() {
        let mut head = upstream_head("Fine Thanks");
        let removed = edit(&mut head, |headers| {
            headers.insert(X_REQUEST_ID, HeaderValue::from_static("id-1"));
            headers.remove("x-upstream-thing")
        });
        assert_eq!(removed.unwrap(), "1");
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.get_reason_phrase(), Some("Fine Thanks"));
        assert!(!head.has_case());
        let cookies: Vec<_> = head.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        // Pingora still writes a valid HTTP/1 head from it: standard names
        // capitalised, the others in lower case, every value once.
        let wire = wire(&head);
        assert!(wire.contains("Content-Type: text/plain\r\n"), "{wire}");
        assert!(wire.contains("x-request-id: id-1\r\n"), "{wire}");
        assert_eq!(wire.matches("Set-Cookie: ").count(), 2, "{wire}");
        assert!(!wire.to_ascii_lowercase().contains("x-upstream-thing"));
    }

    #[test]
    fn a_standard_reason_is_not_stored_again() {
        let mut head = upstream_head("OK");
        edit(&mut head, |_| ());
        assert_eq!(head.get_reason_phrase(), Some("OK"));
        // Pingora's own headers still go in after the edit.
        head.insert_header("Connection", "close").unwrap();
        assert!(wire(&head).contains("Connection: close\r\n"));
    }

    #[test]
    fn an_edited_request_keeps_method_target_and_version() {
        let mut request =
            RequestHeader::build(http::Method::POST, b"/jobs/run?now=1", Some(4)).unwrap();
        request.set_version(http::Version::HTTP_11);
        request.append_header("X-Client-Thing", "1").unwrap();
        request.append_header("Host", "gw.test").unwrap();
        edit_request(&mut request, |headers| {
            headers.insert(X_REQUEST_ID, HeaderValue::from_static("id-2"));
        });
        assert_eq!(request.method, http::Method::POST);
        assert_eq!(request.raw_path(), b"/jobs/run?now=1");
        assert_eq!(request.uri.query(), Some("now=1"));
        assert_eq!(request.version, http::Version::HTTP_11);
        assert_eq!(request.headers["x-client-thing"], "1");
        assert_eq!(request.headers["x-request-id"], "id-2");
        let mut buf = BytesMut::new();
        request.header_to_h1_wire(&mut buf);
        let wire = String::from_utf8(buf.to_vec()).unwrap();
        assert!(wire.contains("Host: gw.test\r\n"), "{wire}");
        assert!(wire.contains("x-client-thing: 1\r\n"), "{wire}");
    }

    #[test]
    fn a_built_head_has_room_and_the_status() {
        let parts = build(StatusCode::FORBIDDEN, 12);
        assert_eq!(parts.status, StatusCode::FORBIDDEN);
        assert!(parts.headers.capacity() >= 12);
        assert!(parts.headers.is_empty());
    }
}
