//! The HTTP/1 framing and method checks, on raw request heads.
//!
//! The input is parsed with httparse (the parser Pingora uses) and handed to
//! `method::check` and `check_request_head` twice: once with every header,
//! and once as Pingora hands it over when `Transfer-Encoding` is present
//! (without `Content-Length`), where only the raw bytes still show both.
//! Whatever is accepted must have unambiguous framing, an upper-case method
//! other than CONNECT and TRACE, no `_` in a header name and no `Connection`
//! nominating a header.
#![no_main]

use gatehouse_gateway::edge::framing::{check_request_head, check_upgrade, RequestHead};
use gatehouse_gateway::edge::method;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use libfuzzer_sys::fuzz_target;

/// The policy default (`max_header_bytes`).
const MAX_HEAD_BYTES: usize = 32 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut slots);
    let Ok(httparse::Status::Complete(head_len)) = request.parse(data) else {
        return;
    };
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut headers = HeaderMap::new();
    for header in request.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return; // Pingora refuses such a head before we see it.
        };
        headers.append(name, value);
    }
    let raw_head = &data[..head_len];
    let head = RequestHead {
        method: &method,
        version,
        headers: &headers,
        raw_target_len: target.len(),
        raw_head: Some(raw_head),
    };
    if method::check(&method).is_ok() && check_request_head(&head, MAX_HEAD_BYTES).is_ok() {
        assert_unambiguous(&method, version, &headers);
        if check_upgrade(&headers, false).is_ok() {
            assert!(!headers.contains_key(http::header::UPGRADE));
            assert!(!headers.contains_key("http2-settings"));
        }
    }

    // As Pingora passes it on: Content-Length dropped next to Transfer-Encoding.
    let mut without_length = headers.clone();
    if headers.contains_key(http::header::TRANSFER_ENCODING)
        && without_length
            .remove(http::header::CONTENT_LENGTH)
            .is_some()
    {
        let pingora_view = RequestHead {
            headers: &without_length,
            ..head
        };
        assert!(
            check_request_head(&pingora_view, MAX_HEAD_BYTES).is_err(),
            "Content-Length with Transfer-Encoding passed once Pingora dropped the length"
        );
    }
});

/// What an accepted head must look like, restated from RFC 9112 §6.
fn assert_unambiguous(method: &Method, version: Version, headers: &HeaderMap) {
    assert!(*method != Method::CONNECT && *method != Method::TRACE);
    assert!(
        !method.as_str().bytes().any(|b| b.is_ascii_lowercase()),
        "method {method} is not upper case"
    );
    assert!(
        headers.keys().all(|name| !name.as_str().contains('_')),
        "a header name with '_'"
    );
    let nominations_ok = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .all(|t| {
            [&b"close"[..], b"keep-alive", b"upgrade", b"te"]
                .iter()
                .any(|ok| t.eq_ignore_ascii_case(ok))
        });
    assert!(nominations_ok, "Connection nominates a header");
    let lengths: Vec<_> = headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .collect();
    let encodings: Vec<_> = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .collect();
    assert!(
        lengths.is_empty() || encodings.is_empty(),
        "length and chunked"
    );
    assert!(lengths.len() <= 1, "repeated Content-Length");
    if let Some(length) = lengths.first() {
        let ok = !length.is_empty() && length.as_bytes().iter().all(u8::is_ascii_digit);
        assert!(ok, "Content-Length {length:?} is not a plain number");
    }
    assert!(encodings.len() <= 1, "repeated Transfer-Encoding");
    if let Some(encoding) = encodings.first() {
        assert!(
            encoding.as_bytes().eq_ignore_ascii_case(b"chunked"),
            "Transfer-Encoding {encoding:?}"
        );
    }
    let hosts = headers.get_all(http::header::HOST).iter().count();
    assert!(hosts <= 1, "repeated Host");
    assert!(
        version != Version::HTTP_11 || hosts == 1,
        "HTTP/1.1 without Host"
    );
    assert!(
        headers
            .values()
            .all(|v| !v.as_bytes().iter().any(|b| *b == b'\r' || *b == b'\n')),
        "line break in a header value"
    );
}
