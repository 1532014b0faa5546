//! Strict HTTP/1 framing and header-block checks, run before routing.
//!
//! Pingora reads some ambiguous requests by its own interpretation of
//! RFC 9112. Any request whose framing a server behind us could read
//! differently is a request-smuggling risk, so the gateway refuses it with
//! 400 and closes the connection instead of guessing. The same goes for
//! header names a server behind us could read as another name: CGI, WSGI
//! and PHP turn `-` and `_` alike into `_`, so `X_Gatehouse_User` would be
//! read as the identity header the gateway sets.

use http::{HeaderMap, HeaderValue, Method, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingViolation {
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    #[error("repeated or invalid Content-Length")]
    BadContentLength,
    #[error("Transfer-Encoding other than chunked")]
    BadTransferEncoding,
    #[error("missing or repeated Host")]
    BadHost,
    #[error("header value contains a line break")]
    FoldedHeader,
    #[error("request head larger than the limit")]
    HeadTooLarge,
    #[error("protocol upgrade not allowed on this route")]
    UpgradeNotAllowed,
    #[error("header name contains '_'")]
    HeaderNameUnderscore,
    #[error("Connection names a header other than close, keep-alive, upgrade or te")]
    ConnectionNominatesHeader,
}

impl FramingViolation {
    /// Stable name for metrics and logs.
    pub fn reason(self) -> &'static str {
        match self {
            FramingViolation::LengthAndChunked => "length-and-chunked",
            FramingViolation::BadContentLength => "bad-content-length",
            FramingViolation::BadTransferEncoding => "bad-transfer-encoding",
            FramingViolation::BadHost => "bad-host",
            FramingViolation::FoldedHeader => "folded-header",
            FramingViolation::HeadTooLarge => "head-too-large",
            FramingViolation::UpgradeNotAllowed => "upgrade-not-allowed",
            FramingViolation::HeaderNameUnderscore => "header-name-underscore",
            FramingViolation::ConnectionNominatesHeader => "connection-nominates-header",
        }
    }

    pub const ALL: [FramingViolation; 9] = [
        FramingViolation::LengthAndChunked,
        FramingViolation::BadContentLength,
        FramingViolation::BadTransferEncoding,
        FramingViolation::BadHost,
        FramingViolation::FoldedHeader,
        FramingViolation::HeadTooLarge,
        FramingViolation::UpgradeNotAllowed,
        FramingViolation::HeaderNameUnderscore,
        FramingViolation::ConnectionNominatesHeader,
    ];

    pub fn status(self) -> http::StatusCode {
        match self {
            FramingViolation::HeadTooLarge => http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

/// The request head as the gateway sees it.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    pub version: Version,
    pub headers: &'a HeaderMap,
    /// Length of the request target as received.
    pub raw_target_len: usize,
    /// The HTTP/1 header block as received. Pingora drops Content-Length
    /// when Transfer-Encoding is also present, so only the raw bytes show
    /// that a client sent both.
    pub raw_head: Option<&'a [u8]>,
}

impl<'a> RequestHead<'a> {
    pub fn of(req: &'a pingora::http::RequestHeader, raw_head: Option<&'a [u8]>) -> Self {
        RequestHead {
            method: &req.method,
            version: req.version,
            headers: &req.headers,
            raw_target_len: req.raw_path().len(),
            raw_head,
        }
    }
}

/// Checks a request head against the framing rules and `max_head_bytes`.
/// The fields are read in one pass (this runs on every request); the
/// rules are then applied in a fixed order, so which one a bad request
/// breaks first does not depend on the order of its fields.
pub fn check_request_head(
    head: &RequestHead<'_>,
    max_head_bytes: usize,
) -> Result<(), FramingViolation> {
    let RequestHead {
        method,
        version,
        headers,
        raw_target_len,
        raw_head,
    } = *head;
    let fields = FieldScan::of(headers);
    if fields.bytes + raw_target_len + method.as_str().len() > max_head_bytes {
        return Err(FramingViolation::HeadTooLarge);
    }
    if fields.line_break {
        return Err(FramingViolation::FoldedHeader);
    }
    // Refused rather than dropped (nginx drops them by default): a client
    // that sends one is either confused or probing, and a clear 400 says
    // so, where a silently missing header would not.
    if fields.underscore {
        return Err(FramingViolation::HeaderNameUnderscore);
    }
    if fields.connection_nominates_header {
        return Err(FramingViolation::ConnectionNominatesHeader);
    }

    let (lengths, encodings) = (fields.lengths, fields.encodings);
    let raw_length_with_encoding =
        encodings.count > 0 && raw_head.is_some_and(declares_content_length);
    if (lengths.count > 0 && encodings.count > 0) || raw_length_with_encoding {
        return Err(FramingViolation::LengthAndChunked);
    }
    match (lengths.count, lengths.first) {
        (0, _) => {}
        (1, Some(one)) if is_decimal(one.as_bytes()) => {}
        _ => return Err(FramingViolation::BadContentLength),
    }
    match (encodings.count, encodings.first) {
        (0, _) => {}
        (1, Some(one)) if one.as_bytes().eq_ignore_ascii_case(b"chunked") => {}
        _ => return Err(FramingViolation::BadTransferEncoding),
    }

    // HTTP/2 carries the authority in a pseudo-header, checked by the h2
    // codec; HTTP/1.1 needs exactly one Host, HTTP/1.0 at most one.
    let host_ok = match version {
        Version::HTTP_11 => fields.hosts == 1,
        _ => fields.hosts <= 1,
    };
    if !host_ok {
        return Err(FramingViolation::BadHost);
    }
    Ok(())
}

/// What one pass over the header fields found.
#[derive(Default)]
struct FieldScan<'a> {
    /// Names and values, with `: ` and CRLF for each line.
    bytes: usize,
    line_break: bool,
    underscore: bool,
    connection_nominates_header: bool,
    lengths: Occurrences<'a>,
    encodings: Occurrences<'a>,
    hosts: usize,
}

/// How often a field came, and its first value.
#[derive(Default, Clone, Copy)]
struct Occurrences<'a> {
    count: usize,
    first: Option<&'a HeaderValue>,
}

impl<'a> Occurrences<'a> {
    fn add(&mut self, value: &'a HeaderValue) {
        self.first.get_or_insert(value);
        self.count += 1;
    }
}

impl<'a> FieldScan<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        let mut scan = FieldScan::default();
        for (name, value) in headers {
            let bytes = value.as_bytes();
            scan.bytes += name.as_str().len() + bytes.len() + 4;
            scan.line_break |= memchr::memchr2(b'\r', b'\n', bytes).is_some();
            scan.underscore |= memchr::memchr(b'_', name.as_str().as_bytes()).is_some();
            if name == http::header::CONTENT_LENGTH {
                scan.lengths.add(value);
            } else if name == http::header::TRANSFER_ENCODING {
                scan.encodings.add(value);
            } else if name == http::header::HOST {
                scan.hosts += 1;
            } else if name == http::header::CONNECTION {
                scan.connection_nominates_header |= nominates_header(bytes);
            }
        }
        scan
    }
}

/// Upgrades pass only as WebSocket on routes that allow it; `h2c` and
/// anything else never do, since an upstream that honours them would let
/// the client talk to it past our checks.
pub fn check_upgrade(
    headers: &HeaderMap,
    route_allows_websocket: bool,
) -> Result<(), FramingViolation> {
    let mut upgrades = headers.get_all(http::header::UPGRADE).iter();
    let Some(first) = upgrades.next() else {
        let http2_settings = headers.contains_key("http2-settings");
        return if http2_settings {
            Err(FramingViolation::UpgradeNotAllowed)
        } else {
            Ok(())
        };
    };
    let is_websocket = first.as_bytes().eq_ignore_ascii_case(b"websocket");
    if route_allows_websocket && is_websocket && upgrades.next().is_none() {
        Ok(())
    } else {
        Err(FramingViolation::UpgradeNotAllowed)
    }
}

/// `Connection` may only carry the options clients really use. A client
/// that nominates any other header asks every hop to delete it: aimed at
/// the headers the gateway sets, that removes the caller's identity or
/// address on the way to the upstream.
fn nominates_header(connection: &[u8]) -> bool {
    connection
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
        .any(|token| {
            ![&b"close"[..], b"keep-alive", b"upgrade", b"te"]
                .iter()
                .any(|allowed| token.eq_ignore_ascii_case(allowed))
        })
}

/// Whether a raw header block has a Content-Length line.
fn declares_content_length(raw_head: &[u8]) -> bool {
    raw_head.split(|b| *b == b'\n').skip(1).any(|line| {
        let name_end = line.iter().position(|b| *b == b':').unwrap_or(line.len());
        line[..name_end]
            .trim_ascii()
            .eq_ignore_ascii_case(b"content-length")
    })
}

fn is_decimal(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn head<'a>(method: &'a Method, version: Version, headers: &'a HeaderMap) -> RequestHead<'a> {
        RequestHead {
            method,
            version,
            headers,
            raw_target_len: 1,
            raw_head: None,
        }
    }

    fn check(pairs: &[(&'static str, &'static str)]) -> Result<(), FramingViolation> {
        let map = headers(pairs);
        check_request_head(&head(&Method::POST, Version::HTTP_11, &map), 32 * 1024)
    }

    #[test]
    fn plain_requests_pass() {
        assert_eq!(check(&[("host", "a")]), Ok(()));
        assert_eq!(check(&[("host", "a"), ("content-length", "10")]), Ok(()));
        assert_eq!(
            check(&[("host", "a"), ("transfer-encoding", "chunked")]),
            Ok(())
        );
    }

    #[test]
    fn length_with_chunked_is_rejected() {
        assert_eq!(
            check(&[
                ("host", "a"),
                ("content-length", "1"),
                ("transfer-encoding", "chunked")
            ]),
            Err(FramingViolation::LengthAndChunked)
        );
    }

    #[test]
    fn length_dropped_by_the_parser_is_found_in_the_raw_head() {
        let map = headers(&[("host", "a"), ("transfer-encoding", "chunked")]);
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut with_raw = head(&Method::POST, Version::HTTP_11, &map);
        with_raw.raw_head = Some(raw);
        assert_eq!(
            check_request_head(&with_raw, 1 << 15),
            Err(FramingViolation::LengthAndChunked)
        );
        let clean = b"POST / HTTP/1.1\r\nHost: a\r\nX-Content-Length-Hint: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        with_raw.raw_head = Some(clean);
        assert_eq!(check_request_head(&with_raw, 1 << 15), Ok(()));
    }

    #[test]
    fn repeated_or_odd_content_length_is_rejected() {
        for pairs in [
            &[
                ("host", "a"),
                ("content-length", "1"),
                ("content-length", "1"),
            ][..],
            &[
                ("host", "a"),
                ("content-length", "1"),
                ("content-length", "2"),
            ][..],
            &[("host", "a"), ("content-length", "1, 1")][..],
            &[("host", "a"), ("content-length", "+1")][..],
            &[("host", "a"), ("content-length", "")][..],
        ] {
            assert_eq!(
                check(pairs),
                Err(FramingViolation::BadContentLength),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn transfer_encoding_other_than_chunked_is_rejected() {
        for te in ["gzip, chunked", "chunked, chunked", "identity", "chunked "] {
            let mut map = headers(&[("host", "a")]);
            map.append("transfer-encoding", HeaderValue::from_str(te).unwrap());
            assert_eq!(
                check_request_head(&head(&Method::POST, Version::HTTP_11, &map), 1 << 15),
                Err(FramingViolation::BadTransferEncoding),
                "{te}"
            );
        }
        assert_eq!(
            check(&[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]),
            Err(FramingViolation::BadTransferEncoding)
        );
    }

    #[test]
    fn missing_or_repeated_host_is_rejected() {
        assert_eq!(check(&[]), Err(FramingViolation::BadHost));
        assert_eq!(
            check(&[("host", "a"), ("host", "b")]),
            Err(FramingViolation::BadHost)
        );
        let empty = HeaderMap::new();
        let http10 = check_request_head(&head(&Method::GET, Version::HTTP_10, &empty), 1 << 15);
        assert_eq!(http10, Ok(()));
    }

    #[test]
    fn underscored_header_names_are_refused() {
        assert_eq!(
            check(&[("host", "a"), ("x_gatehouse_user", "admin")]),
            Err(FramingViolation::HeaderNameUnderscore)
        );
    }

    #[test]
    fn connection_may_only_name_connection_options() {
        assert_eq!(
            check(&[("host", "a"), ("connection", "keep-alive, Upgrade")]),
            Ok(())
        );
        for value in ["x-gatehouse-user", "close, x-real-ip", "authorization"] {
            let mut map = headers(&[("host", "a")]);
            map.append("connection", HeaderValue::from_str(value).unwrap());
            assert_eq!(
                check_request_head(&head(&Method::GET, Version::HTTP_11, &map), 1 << 15),
                Err(FramingViolation::ConnectionNominatesHeader),
                "{value}"
            );
        }
    }

    #[test]
    fn oversized_head_gets_431() {
        let big = "x".repeat(2000);
        let mut map = headers(&[("host", "a")]);
        map.insert("x-big", HeaderValue::from_str(&big).unwrap());
        let err =
            check_request_head(&head(&Method::GET, Version::HTTP_11, &map), 1024).unwrap_err();
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn websocket_passes_only_where_allowed_and_h2c_never() {
        let ws = headers(&[("upgrade", "websocket"), ("connection", "upgrade")]);
        assert_eq!(check_upgrade(&ws, true), Ok(()));
        assert_eq!(
            check_upgrade(&ws, false),
            Err(FramingViolation::UpgradeNotAllowed)
        );
        let h2c = headers(&[("upgrade", "h2c"), ("http2-settings", "AAMAAABkAAQAAP__")]);
        assert_eq!(
            check_upgrade(&h2c, true),
            Err(FramingViolation::UpgradeNotAllowed)
        );
        let settings_only = headers(&[("http2-settings", "AAMAAABkAAQAAP__")]);
        assert_eq!(
            check_upgrade(&settings_only, true),
            Err(FramingViolation::UpgradeNotAllowed)
        );
        assert_eq!(check_upgrade(&HeaderMap::new(), false), Ok(()));
    }
}
