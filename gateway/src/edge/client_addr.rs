//! Who is the client? The socket peer, unless the peer is a trusted proxy;
//! then the right-most address in the one header the policy names
//! (`X-Forwarded-For` by default, or `Forwarded`) that is not itself a
//! trusted proxy. The other header is never read: proxies such as nginx
//! and HAProxy append to one and pass the other through as the client sent
//! it, so reading both would let a client pick its own address.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use dashmap::DashMap;

use gatehouse_policy::ClientIpHeader;
use http::HeaderMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The client address for policy decisions.
///
/// Headers are read only when `peer` is a trusted proxy. Walking from the
/// right skips trusted hops; the first untrusted entry is the client. An
/// entry that does not parse (`unknown`, an obfuscated `_name`, garbage)
/// stops the walk at the last trusted hop reached: garbage must never let
/// the sender choose the address we decide on.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted_proxies: &[IpNet],
    header: ClientIpHeader,
) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted_proxies) {
        return peer;
    }
    let chain = match header {
        ClientIpHeader::XForwardedFor => x_forwarded_for_chain(headers),
        ClientIpHeader::Forwarded => forwarded_chain(headers),
    };
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

/// The network a client address is counted under in per-address limits:
/// IPv4 per address, IPv6 per `/v6_prefix`, since one host or subscriber
/// usually holds a whole /64 and could otherwise be many clients at once.
pub fn network_key(ip: IpAddr, v6_prefix: u8) -> IpNet {
    match canonical(ip) {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => {
            let prefix = v6_prefix.min(128);
            let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
            let network = Ipv6Addr::from(u128::from(v6) & mask);
            Ipv6Net::new(network, prefix)
                .map(IpNet::V6)
                .unwrap_or(IpNet::V6(Ipv6Net::from(v6)))
        }
    }
}

/// How many of something (connections, password checks) each client
/// network has in flight, each taken under a bound and given back when its
/// [`NetworkSlot`] drops; a network's entry goes when its count is zero.
#[derive(Clone, Default)]
pub struct PerNetwork(Arc<DashMap<IpNet, usize>>);

impl PerNetwork {
    /// One more for `network`, unless it already has `max`.
    pub fn try_take(&self, network: IpNet, max: usize) -> Option<NetworkSlot> {
        let mut count = self.0.entry(network).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(NetworkSlot {
            counts: self.0.clone(),
            network,
        })
    }
}

/// One taken from a [`PerNetwork`]; given back on drop, also when the
/// request or connection goes away half-way.
pub struct NetworkSlot {
    counts: Arc<DashMap<IpNet, usize>>,
    network: IpNet,
}

impl Drop for NetworkSlot {
    fn drop(&mut self) {
        self.counts.remove_if_mut(&self.network, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

pub fn is_trusted(ip: IpAddr, trusted_proxies: &[IpNet]) -> bool {
    trusted_proxies.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The `Forwarded` hops, left to right; `None` for an entry that does not
/// parse or names no `for`.
pub fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all("forwarded") {
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
    chain
}

/// The `X-Forwarded-For` hops, left to right; `None` for an entry that
/// does not parse.
pub fn x_forwarded_for_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
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

    const XFF: ClientIpHeader = ClientIpHeader::XForwardedFor;

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
        assert_eq!(client_ip(ip("127.0.0.2"), &h, &[], XFF), ip("127.0.0.2"));
        assert_eq!(
            client_ip(ip("127.0.0.2"), &h, &nets(&["10.0.0.0/8"]), XFF),
            ip("127.0.0.2")
        );
    }

    #[test]
    fn right_most_untrusted_entry_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.5")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted, XFF), ip("1.2.3.4"));
    }

    #[test]
    fn several_header_lines_form_one_chain() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "10.0.0.9"),
        ]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted, XFF), ip("1.2.3.4"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "9.9.9.9"),
            (
                "forwarded",
                "for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.3",
            ),
        ]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted, XFF), ip("9.9.9.9"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted, ClientIpHeader::Forwarded),
            ip("2001:db8::1")
        );
        // A client's own Forwarded behind an X-Forwarded-For proxy is ignored.
        let spoofed = headers(&[
            ("forwarded", "for=10.0.0.5"),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &spoofed, &trusted, XFF),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn slots_per_network_are_bounded_and_given_back() {
        let slots = PerNetwork::default();
        let net = network_key(ip("192.0.2.1"), 64);
        let first = slots.try_take(net, 2).unwrap();
        let _second = slots.try_take(net, 2).unwrap();
        assert!(slots.try_take(net, 2).is_none());
        drop(first);
        assert!(slots.try_take(net, 2).is_some());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_network() {
        assert_eq!(
            network_key(ip("2001:db8:1:2:3:4:5:6"), 64).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            network_key(ip("2001:db8::1"), 128).to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(network_key(ip("192.0.2.7"), 64).to_string(), "192.0.2.7/32");
        assert_eq!(
            network_key(ip("::ffff:192.0.2.7"), 64).to_string(),
            "192.0.2.7/32"
        );
    }

    #[test]
    fn garbage_entry_stops_at_the_last_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4, unknown, 10.0.0.7")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted, XFF), ip("10.0.0.7"));
        let h = headers(&[("forwarded", "for=_hidden")]);
        let forwarded = ClientIpHeader::Forwarded;
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted, forwarded),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn all_trusted_chain_yields_the_left_most() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "10.0.0.4, 10.0.0.5")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted, XFF), ip("10.0.0.4"));
    }

    #[test]
    fn mapped_ipv6_peer_compares_as_ipv4() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &trusted, XFF),
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
