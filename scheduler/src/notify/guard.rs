//! The SSRF guard: where a notification may connect.
//!
//! A destination passes in two steps, both fail closed:
//! 1. its host must match `allow_hosts` (names compare lower-cased; IP
//!    literals, in any form the URL parser accepts, such as `2130706433`
//!    or `[::ffff:127.0.0.1]`, compare as the address they denote);
//! 2. every address it resolves to must be public, or lie in
//!    `insecure_allow_networks`. IPv6 forms that carry an IPv4 address
//!    (mapped, compatible, NAT64, 6to4) are judged by that IPv4 address.
//!    Cloud metadata addresses pass only by an entry naming exactly them.
//!
//! **No rebinding:** DNS is asked once per connection, by [`GuardedResolver`]
//! (HTTP) or [`Guard::resolve`] (SMTP), and the addresses it checked are
//! the ones connected to; nothing resolves the name again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use gatehouse_policy::notify::GuardSettings;

/// Why a destination was refused. Never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("host {host} is not in allow_hosts")]
    HostNotAllowed { host: String },
    #[error("{host} resolves to {ip}, a {class} address (not in insecure_allow_networks)")]
    AddressRefused {
        host: String,
        ip: IpAddr,
        class: AddressClass,
    },
    #[error("{host} has no address")]
    NoAddress { host: String },
}

/// What kind of address an IP is, for the guard's decision and its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Unspecified,
    Loopback,
    /// RFC 1918, IPv6 unique local (fc00::/7) and site-local.
    Private,
    /// 100.64.0.0/10 (carrier-grade NAT; also Alibaba's metadata range).
    SharedCgnat,
    LinkLocal,
    /// Cloud instance metadata and platform endpoints.
    Metadata,
    Multicast,
    Broadcast,
    /// Documentation, benchmarking, IETF protocol and reserved ranges,
    /// Teredo: nothing a webhook should live on.
    Reserved,
}

impl std::fmt::Display for AddressClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AddressClass::Public => "public",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::SharedCgnat => "shared (CGNAT)",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Metadata => "cloud metadata",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Reserved => "reserved",
        })
    }
}

/// AWS, GCP, Azure (IMDS is link-local; WireServer is not), Alibaba,
/// Oracle, ECS task metadata, AWS's IPv6 IMDS.
const METADATA: [IpAddr; 7] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 253)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 0, 192)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

/// The IPv4 address an IPv6 address carries, if it is one of the forms
/// that reach an IPv4 host: mapped `::ffff:a.b.c.d`, compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` (and the local-use /48), 6to4
/// `2002:aabb:ccdd::`.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // `::` and `::1` are themselves, not 0.0.0.0 and 0.0.0.1.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 1, ..] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// The address a connection to `ip` really reaches, for classification.
fn effective(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_ipv4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub fn classify(ip: IpAddr) -> AddressClass {
    let ip = effective(ip);
    if METADATA.contains(&ip) {
        return AddressClass::Metadata;
    }
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, ..) => AddressClass::Unspecified,
        (127, ..) => AddressClass::Loopback,
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => AddressClass::Private,
        (100, 64..=127, _) => AddressClass::SharedCgnat,
        (169, 254, _) => AddressClass::LinkLocal,
        (224..=239, ..) => AddressClass::Multicast,
        _ if ip.is_broadcast() => AddressClass::Broadcast,
        (192, 0, 0 | 2) | (198, 18..=19, _) | (198, 51, 100) | (203, 0, 113) | (240..=255, ..) => {
            AddressClass::Reserved
        }
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let s = ip.segments();
    if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        AddressClass::Private
    } else if s[0] & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if s[0] & 0xff00 == 0xff00 {
        AddressClass::Multicast
    } else if s[0] & 0xe000 != 0x2000 || (s[0] == 0x2001 && matches!(s[1], 0 | 0xdb8)) {
        // Outside 2000::/3 (the global unicast space), Teredo, documentation.
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// The guard built from the policy; cheap to clone.
#[derive(Debug, Clone)]
pub struct Guard {
    settings: Arc<GuardSettings>,
}

impl Guard {
    pub fn new(settings: GuardSettings) -> Guard {
        Guard {
            settings: Arc::new(settings),
        }
    }

    pub fn settings(&self) -> &GuardSettings {
        &self.settings
    }

    /// Step 1, and step 2 at once for an IP literal (which no resolver sees).
    pub fn check_host(&self, host: &url::Host<&str>) -> Result<(), Refusal> {
        if !self.settings.allows_host(host) {
            return Err(Refusal::HostNotAllowed {
                host: host.to_string(),
            });
        }
        match host {
            url::Host::Domain(_) => Ok(()),
            url::Host::Ipv4(ip) => self.check_ip(&host.to_string(), IpAddr::V4(*ip)),
            url::Host::Ipv6(ip) => self.check_ip(&host.to_string(), IpAddr::V6(*ip)),
        }
    }

    pub fn check_url(&self, url: &url::Url) -> Result<(), Refusal> {
        let host = url.host().ok_or_else(|| Refusal::NoAddress {
            host: url.to_string(),
        })?;
        self.check_host(&host)
    }

    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        let class = classify(ip);
        let opened = |ip: IpAddr, exact: bool| {
            self.settings.insecure_allow_networks.iter().any(|net| {
                net.contains(&ip) && (!exact || net.prefix_len() == net.max_prefix_len())
            })
        };
        let allowed = match class {
            AddressClass::Public => true,
            AddressClass::Unspecified | AddressClass::Multicast | AddressClass::Broadcast => false,
            AddressClass::Metadata => opened(ip, true) || opened(effective(ip), true),
            _ => opened(ip, false) || opened(effective(ip), false),
        };
        if allowed {
            Ok(())
        } else {
            Err(Refusal::AddressRefused {
                host: host.to_owned(),
                ip,
                class,
            })
        }
    }

    /// Resolves `host` once and checks every answer: one refused address
    /// refuses the name (a mixed answer is how rebinding starts).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check_ip(host, ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ResolveError::Dns {
                host: host.to_owned(),
                reason: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(Refusal::NoAddress {
                host: host.to_owned(),
            }
            .into());
        }
        for addr in &addrs {
            self.check_ip(host, addr.ip())?;
        }
        Ok(addrs)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("cannot resolve {host}: {reason}")]
    Dns { host: String, reason: String },
}

/// reqwest's resolver for notification clients: the only way their
/// connections learn an address, so every connection is checked.
pub struct GuardedResolver(pub Guard);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = guard.resolve(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
