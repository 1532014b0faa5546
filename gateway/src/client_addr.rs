//! Who is the client? The socket peer, unless the peer is a trusted proxy;
//! then the right-most address in `Forwarded` (or else `X-Forwarded-For`)
//! that is not itself a trusted proxy.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The client address for policy decisions.
///
/// Headers are read only when `peer` is a trusted proxy. Walking from the
/// right skips trusted hops; the first untrusted entry is the client. An
/// entry that does not parse (`unknown`, an obfuscated `_name`, garbage)
/// stops the walk at the last trusted hop reached: garbage must never let
/// the sender choose the address we decide on.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted_proxies) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    let mut last_trusted = peer;
    for entry in chain.iter().rev() {
        match entry {
            Some(ip) if is_trusted(*ip, trusted_proxies) => last_trusted = *ip,
            Some(ip) => return *ip,
            None => return last_trusted,
        }
    }
    last_trusted
}

/// Deny wins over allow; an empty allow list allows every address that no
/// deny entry names.
pub fn is_allowed(ip: IpAddr, allow: &[IpNet], deny: &[IpNet]) -> bool {
    let ip = canonical(ip);
    if deny.iter().any(|net| net.contains(&ip)) {
        return false;
    }
    allow.is_empty() || allow.iter().any(|net| net.contains(&ip))
}

fn is_trusted(ip: IpAddr, trusted_proxies: &[IpNet]) -> bool {
    trusted_proxies.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The hops, left to right; `None` for an entry that does not parse.
/// `Forwarded` wins when present.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<_> = headers.get_all("forwarded").iter().collect();
    if !forwarded.is_empty() {
        let mut chain = Vec::new();
        for value in forwarded {
            let Ok(text) = value.to_str() else {
                chain.push(None);
                continue;
            };
            for element in text.split(',') {
                let node = element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.trim().eq_ignore_ascii_case("for").then(|| value.trim())
                });
                chain.push(node.and_then(parse_forwarded_node));
            }
        }
        return chain;
    }
    let mut chain = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            chain.push(None);
            continue;
        };
        chain.extend(text.split(',').map(|e| parse_plain(e.trim())));
    }
    chain
}

/// RFC 7239 node: `192.0.2.1`, `"192.0.2.1:80"`, `"[2001:db8::1]:4711"`.
fn parse_forwarded_node(raw: &str) -> Option<IpAddr> {
    let unquoted = raw.trim_matches('"');
    if let Some(rest) = unquoted.strip_prefix('[') {
        let (addr, _) = rest.split_once(']')?;
        return addr.parse().ok().map(canonical);
    }
    parse_plain(unquoted)
}

/// A bare address, optionally with a port on IPv4.
fn parse_plain(raw: &str) -> Option<IpAddr> {
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    let (host, port) = raw.rsplit_once(':')?;
    if port.bytes().all(|b| b.is_ascii_digit()) {
        let ip: std::net::Ipv4Addr = host.parse().ok()?;
        return Some(IpAddr::V4(ip));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(client_ip(ip("127.0.0.2"), &h, &[]), ip("127.0.0.2"));
        assert_eq!(
            client_ip(ip("127.0.0.2"), &h, &nets(&["10.0.0.0/8"])),
            ip("127.0.0.2")
        );
    }

    #[test]
    fn right_most_untrusted_entry_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.5")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("1.2.3.4"));
    }

    #[test]
    fn several_header_lines_form_one_chain() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "10.0.0.9"),
        ]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("1.2.3.4"));
    }

    #[test]
    fn forwarded_takes_precedence_and_handles_ipv6() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "9.9.9.9"),
            (
                "forwarded",
                "for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.3",
            ),
        ]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("2001:db8::1"));
    }

    #[test]
    fn garbage_entry_stops_at_the_last_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4, unknown, 10.0.0.7")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.7"));
        let h = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.1"));
    }

    #[test]
    fn all_trusted_chain_yields_the_left_most() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "10.0.0.4, 10.0.0.5")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.4"));
    }

    #[test]
    fn mapped_ipv6_peer_compares_as_ipv4() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &trusted),
            ip("1.2.3.4")
        );
        assert!(is_allowed(
            ip("::ffff:127.0.0.1"),
            &nets(&["127.0.0.0/8"]),
            &[]
        ));
    }

    #[test]
    fn deny_beats_allow_and_empty_allow_allows_all() {
        let allow = nets(&["127.0.0.0/8"]);
        let deny = nets(&["127.0.0.2/32"]);
        assert!(is_allowed(ip("127.0.0.1"), &allow, &deny));
        assert!(!is_allowed(ip("127.0.0.2"), &allow, &deny));
        assert!(!is_allowed(ip("10.1.1.1"), &allow, &deny));
        assert!(is_allowed(ip("10.1.1.1"), &[], &[]));
        assert!(!is_allowed(ip("127.0.0.2"), &[], &deny));
    }
}
