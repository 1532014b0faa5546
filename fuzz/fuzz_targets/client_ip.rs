//! The `Forwarded` / `X-Forwarded-For` reader, on scenarios of a client
//! behind trusted proxies that an attacker writes the first part of.
//!
//! Input: one directive per line (unknown lines are skipped):
//!
//! ```text
//! header forwarded          # or x-forwarded-for (the default)
//! peer 10.0.0.1             # the socket peer
//! trust 10.0.0.0/8          # a trusted proxy network (repeatable)
//! attacker for=6.6.6.6      # a header line the client sent (raw bytes)
//! join                      # proxies append to the client's last line
//! client 203.0.113.7 port   # what the first proxy wrote: an address or unknown/_hidden
//! hop 10.0.0.3              # what each later proxy wrote (repeatable)
//! ```
//!
//! Invariants: an untrusted peer is the answer whatever the headers say;
//! behind trusted proxies the answer is decided by what the proxies wrote
//! (walking from the right: trusted hops are skipped, the first untrusted
//! address is the client, an unparseable entry stops at the last trusted
//! hop), never by the attacker's part to the left of it.
//!
//! The attacker's lines also arrive in the *other* header, as a proxy that
//! sets one passes the other through: the gateway reads only the header
//! the policy names, so they must change nothing.
#![no_main]

use std::net::IpAddr;

use gatehouse_gateway::edge::client_addr::client_ip;
use gatehouse_policy::ClientIpHeader;
use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

enum Entry {
    Addr { ip: IpAddr, port: bool },
    Garbage(&'static str),
}

struct Scenario<'a> {
    forwarded: bool,
    peer: IpAddr,
    trusted: Vec<IpNet>,
    attacker: Vec<&'a [u8]>,
    join: bool,
    honest: Vec<Entry>,
}

fuzz_target!(|data: &[u8]| {
    let scenario = Scenario::parse(data);
    let headers = scenario.headers();
    let header = if scenario.forwarded {
        ClientIpHeader::Forwarded
    } else {
        ClientIpHeader::XForwardedFor
    };
    let got = client_ip(scenario.peer, &headers, &scenario.trusted, header);
    let peer = canonical(scenario.peer);
    if !scenario.is_trusted(peer) {
        assert_eq!(got, peer, "headers were read from an untrusted peer");
        return;
    }
    if let Some(want) = scenario.expected(&headers) {
        assert_eq!(got, want, "the attacker's part decided the client address");
    }
});

impl<'a> Scenario<'a> {
    fn parse(data: &'a [u8]) -> Self {
        let mut s = Scenario {
            forwarded: false,
            peer: IpAddr::from([10, 0, 0, 1]),
            trusted: Vec::new(),
            attacker: Vec::new(),
            join: false,
            honest: Vec::new(),
        };
        for line in data.split(|b| *b == b'\n') {
            if let Some(raw) = line.strip_prefix(b"attacker ") {
                s.attacker.push(raw);
                continue;
            }
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let mut words = line.split_whitespace();
            let (Some(key), arg) = (words.next(), words.next().unwrap_or_default()) else {
                continue;
            };
            let port = words.next() == Some("port");
            match key {
                "header" => s.forwarded = arg.eq_ignore_ascii_case("forwarded"),
                "join" => s.join = true,
                "peer" => s.peer = arg.parse().unwrap_or(s.peer),
                "trust" => s.trusted.extend(parse_net(arg)),
                "client" | "hop" => s.honest.extend(parse_entry(arg, port)),
                _ => {}
            }
        }
        s
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The header lines as the gateway receives them.
    fn headers(&self) -> HeaderMap {
        let name = if self.forwarded {
            "forwarded"
        } else {
            "x-forwarded-for"
        };
        let mut lines: Vec<Vec<u8>> = self
            .attacker
            .iter()
            .filter(|raw| HeaderValue::from_bytes(raw).is_ok())
            .map(|raw| raw.to_vec())
            .collect();
        let honest: Vec<String> = self.honest.iter().map(|e| self.render(e)).collect();
        match lines.last_mut() {
            Some(last) if self.join && !honest.is_empty() => {
                last.extend_from_slice(format!(", {}", honest.join(", ")).as_bytes());
            }
            _ => lines.extend(honest.into_iter().map(String::into_bytes)),
        }
        let mut headers = HeaderMap::new();
        for line in lines {
            if let Ok(value) = HeaderValue::from_bytes(&line) {
                headers.append(name, value);
            }
        }
        let other = if self.forwarded {
            "x-forwarded-for"
        } else {
            "forwarded"
        };
        for raw in &self.attacker {
            if let Ok(value) = HeaderValue::from_bytes(raw) {
                headers.append(other, value);
            }
        }
        headers
    }

    /// How a proxy spells one entry in the chosen header.
    fn render(&self, entry: &Entry) -> String {
        let (ip, port) = match entry {
            Entry::Garbage(g) if self.forwarded => return format!("for={g}"),
            Entry::Garbage(g) => return (*g).to_string(),
            Entry::Addr { ip, port } => (*ip, *port),
        };
        match (self.forwarded, ip, port) {
            (true, IpAddr::V6(v6), true) => format!("for=\"[{v6}]:4711\""),
            (true, IpAddr::V6(v6), false) => format!("for=\"[{v6}]\""),
            (true, ip, true) => format!("for=\"{ip}:4711\""),
            (true, ip, false) => format!("for={ip}"),
            (false, IpAddr::V4(v4), true) => format!("{v4}:4711"),
            (false, ip, _) => ip.to_string(),
        }
    }

    /// The client address that the proxies' entries decide, walking from the
    /// right; `None` when they leave it to the attacker's part (the first
    /// proxy's own client is trusted, or no proxy wrote anything).
    fn expected(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let mut last_trusted = canonical(self.peer);
        // With `join`, a client line that is not visible ASCII hides the
        // proxies' entries too: the gateway then stops at the peer.
        let name = if self.forwarded {
            "forwarded"
        } else {
            "x-forwarded-for"
        };
        let joined_line_unreadable = self.join
            && headers
                .get_all(name)
                .iter()
                .last()
                .is_some_and(|value| value.to_str().is_err());
        if joined_line_unreadable {
            return Some(last_trusted);
        }
        for entry in self.honest.iter().rev() {
            match entry {
                Entry::Garbage(_) => return Some(last_trusted),
                Entry::Addr { ip, .. } if self.is_trusted(canonical(*ip)) => {
                    last_trusted = canonical(*ip);
                }
                Entry::Addr { ip, .. } => return Some(canonical(*ip)),
            }
        }
        None
    }
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn parse_entry(text: &str, port: bool) -> Option<Entry> {
    match text {
        "unknown" => Some(Entry::Garbage("unknown")),
        "_hidden" => Some(Entry::Garbage("_hidden")),
        _ => text.parse().ok().map(|ip| Entry::Addr { ip, port }),
    }
}

/// IPv4-mapped IPv6 addresses are the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
