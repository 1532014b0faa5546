//! The host a request names, read strictly.
//!
//! Routing by host only works when every reader agrees on the name. So:
//! one trailing dot is dropped (`internal.test.` is `internal.test` to DNS
//! and to most servers), names are compared lower-case, a port must be a
//! number, and anything else odd (userinfo, `%`, spaces, non-ASCII) is
//! refused instead of falling through to a host-less route. When the TLS
//! client named a server (SNI), the request must be for that same name:
//! otherwise a connection made for one certificate's host could reach
//! another's routes (domain fronting), and 421 tells honest clients that
//! coalesced connections to open a new one.

use std::net::Ipv6Addr;

use http::Version;
use pingora::http::RequestHeader;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostRejection {
    #[error("Host is not a valid host[:port]")]
    Invalid,
    #[error("Host and :authority disagree")]
    Conflicting,
    #[error("Host is not the name the TLS client asked for")]
    Misdirected,
}

impl HostRejection {
    pub const ALL: [HostRejection; 3] = [
        HostRejection::Invalid,
        HostRejection::Conflicting,
        HostRejection::Misdirected,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            HostRejection::Invalid => "host-invalid",
            HostRejection::Conflicting => "host-conflicting",
            HostRejection::Misdirected => "host-misdirected",
        }
    }

    pub fn status(self) -> http::StatusCode {
        match self {
            HostRejection::Misdirected => http::StatusCode::MISDIRECTED_REQUEST,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

/// The request's host name: lower case, without port or trailing dot;
/// IPv6 literals without brackets. `None` for an HTTP/1.0 request without
/// Host.
pub fn request_host(req: &RequestHeader) -> Result<Option<String>, HostRejection> {
    let header = req
        .headers
        .get(http::header::HOST)
        .map(|h| std::str::from_utf8(h.as_bytes()).map_err(|_| HostRejection::Invalid))
        .transpose()?;
    let authority = req.uri.authority().map(|a| a.as_str());
    let raw = match (req.version, authority, header) {
        // HTTP/2 carries the host as :authority; a Host header beside it
        // must say the same (RFC 9113 §8.3.1).
        (Version::HTTP_2, Some(authority), Some(header)) => {
            let (a, h) = (parse(authority)?, parse(header)?);
            if a != h {
                return Err(HostRejection::Conflicting);
            }
            return Ok(Some(a));
        }
        (_, _, Some(header)) => header,
        (_, Some(authority), None) => authority,
        (_, None, None) => return Ok(None),
    };
    parse(raw).map(Some)
}

/// `host[:port]` → the normalised name.
pub fn parse(raw: &str) -> Result<String, HostRejection> {
    let (name, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or(HostRejection::Invalid)?;
        let ip: Ipv6Addr = literal.parse().map_err(|_| HostRejection::Invalid)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(HostRejection::Invalid)?),
        };
        (ip.to_string(), port)
    } else {
        // `:` is ASCII, so its byte index splits the text on a boundary.
        let (name, port) = match memchr::memrchr(b':', raw.as_bytes()) {
            Some(colon) => (&raw[..colon], Some(&raw[colon + 1..])),
            None => (raw, None),
        };
        (reg_name(name)?, port)
    };
    if let Some(port) = port {
        let numeric =
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        if !numeric || port.parse::<u16>().is_err() {
            return Err(HostRejection::Invalid);
        }
    }
    Ok(name)
}

/// A DNS name or IPv4 literal: letters, digits, `-`, `_` and dots, at most
/// one trailing dot, no empty labels.
fn reg_name(name: &str) -> Result<String, HostRejection> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err(HostRejection::Invalid);
    }
    // One pass over the bytes (it runs on every request): the length of
    // the label so far, 0 right after a dot.
    let mut label = 0usize;
    for b in name.bytes() {
        match b {
            b'.' if label > 0 => label = 0,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' if label < 63 => label += 1,
            _ => return Err(HostRejection::Invalid),
        }
    }
    if label == 0 {
        return Err(HostRejection::Invalid);
    }
    Ok(name.to_ascii_lowercase())
}

/// Refuses a request for another host than the one the connection's SNI
/// named. Without SNI (clients connecting to an IP address) any host goes.
pub fn check_sni(host: Option<&str>, sni: Option<&str>) -> Result<(), HostRejection> {
    match (host, sni) {
        (Some(host), Some(sni)) => {
            let sni = sni.strip_suffix('.').unwrap_or(sni);
            if host.eq_ignore_ascii_case(sni) {
                Ok(())
            } else {
                Err(HostRejection::Misdirected)
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        assert_eq!(parse("Internal.Test").unwrap(), "internal.test");
        assert_eq!(parse("internal.test.").unwrap(), "internal.test");
        assert_eq!(parse("internal.test.:8443").unwrap(), "internal.test");
        assert_eq!(parse("127.0.0.1:443").unwrap(), "127.0.0.1");
        assert_eq!(parse("[::1]:8443").unwrap(), "::1");
        assert_eq!(parse("[2001:DB8::1]").unwrap(), "2001:db8::1");
        let longest_label = format!("{}.test", "a".repeat(63));
        assert_eq!(parse(&longest_label).unwrap(), longest_label);
    }

    #[test]
    fn labels_and_names_have_their_limits() {
        for bad in [
            format!("{}.test", "a".repeat(64)),
            format!("a.{}", "b".repeat(64)),
            format!("{}.test", ["a"; 126].join(".")),
            ".test".to_owned(),
            "test..".to_owned(),
            ".".to_owned(),
        ] {
            assert_eq!(parse(&bad), Err(HostRejection::Invalid), "{bad}");
        }
    }

    #[test]
    fn odd_hosts_are_refused() {
        for bad in [
            "internal.test:abc",
            "internal.test:",
            "internal.test:99999",
            "internal.test..",
            "user@internal.test",
            "internal%2etest",
            "internal test",
            "a..b",
            "",
            ":443",
            "[::1",
            "[::1]x",
            "[not-v6]:1",
            "café.test",
        ] {
            assert_eq!(parse(bad), Err(HostRejection::Invalid), "{bad}");
        }
    }

    #[test]
    fn host_must_match_sni_when_sent() {
        assert_eq!(check_sni(Some("a.test"), Some("A.test")), Ok(()));
        assert_eq!(check_sni(Some("a.test"), None), Ok(()));
        assert_eq!(
            check_sni(Some("b.test"), Some("a.test")),
            Err(HostRejection::Misdirected)
        );
    }
}
