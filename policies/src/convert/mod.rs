//! Turns the raw file into the validated model, collecting every problem
//! instead of stopping at the first.

mod abuse;
mod access;
mod allowances;
pub(crate) mod container;
mod identity;
pub(crate) mod job;
mod notify;
mod route;
mod scheduler;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use toml::Spanned;

use crate::error::Problems;
use crate::model::*;
use crate::raw::*;

const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const DEFAULT_CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Browsers open at most six HTTP/1.1 connections per host; this leaves
/// room for an office behind one NAT address while a single host cannot
/// take the whole `max_connections`.
const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
const DEFAULT_REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_UPSTREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Converter<'a> {
    pub problems: Problems<'a>,
    /// Looks up `${VAR}` secrets.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Relative file paths in the policy resolve against this directory.
    pub base_dir: PathBuf,
}

impl Converter<'_> {
    pub(crate) fn policy(&mut self, raw: RawPolicy, origin: PolicyOrigin) -> Option<Policy> {
        let roles = self.roles(&raw.roles);
        let identities = self.identities(&raw, &roles);
        let listen = self.listen(raw.listen);
        let tls = self.tls(raw.tls);
        let global_headers = self.headers(&raw.headers, SecurityHeaders::default());
        let network = NetworkRules {
            allow: self.cidrs(&raw.network.allow),
            deny: self.cidrs(&raw.network.deny),
        };
        let trusted_proxies = self.cidrs(&raw.network.trusted_proxies);
        let client_ip_header = self.client_ip_header(&raw.network.client_ip_header);
        let (limits, route_defaults) = self.limits(&raw.limits);
        let rate_limits = self.rate_limits(&raw.rate_limit);
        let audit = self.audit(&raw.audit);
        let routes = self.routes(
            &raw.routes,
            &global_headers,
            &route_defaults,
            &roles,
            &identities,
        );
        let scheduler = self.scheduler(&raw.scheduler, listen.as_ref(), &routes);
        let jobs = self.jobs(&raw.jobs, scheduler.as_ref(), &roles);
        if !self.problems.is_empty() {
            return None;
        }
        Some(Policy {
            origin,
            listen: listen?,
            tls: tls?,
            network,
            trusted_proxies,
            client_ip_header,
            limits,
            routes,
            roles,
            identities,
            rate_limits,
            audit,
            scheduler,
            jobs,
        })
    }

    fn listen(&mut self, raw: Spanned<RawListen>) -> Option<Listen> {
        let raw = raw.into_inner();
        let https = self.socket_addr(&raw.https);
        let http_redirect = raw.http_redirect.as_ref().map(|a| self.socket_addr(a));
        let admin = raw.admin.as_ref().map(|a| self.socket_addr(a));
        let public_origin = self.public_origin(&raw.public_origin);

        let mut seen: Vec<(SocketAddr, &Spanned<String>)> = Vec::new();
        let candidates = [
            (https, Some(&raw.https)),
            (http_redirect.flatten(), raw.http_redirect.as_ref()),
            (admin.flatten(), raw.admin.as_ref()),
        ];
        for (addr, spanned) in candidates {
            let (Some(addr), Some(spanned)) = (addr, spanned) else {
                continue;
            };
            if let Some((other, _)) = seen.iter().find(|(o, _)| listeners_overlap(*o, addr)) {
                self.problems.add_hint(
                    Some(spanned.span()),
                    format!("listener {addr} overlaps listener {other}"),
                    "each listener needs its own port",
                );
            }
            seen.push((addr, spanned));
        }
        Some(Listen {
            https: https?,
            http_redirect: http_redirect.flatten(),
            admin: admin.flatten(),
            public_origin: public_origin?,
        })
    }

    pub(crate) fn socket_addr(&mut self, raw: &Spanned<String>) -> Option<SocketAddr> {
        match SocketAddr::from_str(raw.get_ref()) {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("`{}` is not an IP address and port", raw.get_ref()),
                    "write it as \"127.0.0.1:8443\" or \"[::1]:8443\"",
                );
                None
            }
        }
    }

    fn public_origin(&mut self, raw: &Spanned<String>) -> Option<PublicOrigin> {
        let hint =
            "an origin such as \"https://gatehouse.example.com\" or \"https://localhost:8443\"";
        let Ok(url) = url::Url::parse(raw.get_ref()) else {
            self.problems
                .add_hint(Some(raw.span()), "public_origin is not a URL", hint);
            return None;
        };
        let bare = url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        if url.scheme() != "https" || url.host_str().is_none() || !bare {
            self.problems.add_hint(
                Some(raw.span()),
                "public_origin must be an https origin with no path, query or credentials",
                hint,
            );
            return None;
        }
        Some(PublicOrigin::new(url.origin().ascii_serialization()))
    }

    fn tls(&mut self, raw: Spanned<RawTls>) -> Option<Tls> {
        let span = raw.span();
        let raw = raw.into_inner();
        let min_version = match raw.min_version.as_ref().map(|v| (v.get_ref().as_str(), v)) {
            None | Some(("1.2", _)) => TlsVersion::Tls12,
            Some(("1.3", _)) => TlsVersion::Tls13,
            Some((other, v)) => {
                self.problems.add_hint(
                    Some(v.span()),
                    format!("unsupported TLS version `{other}`"),
                    "use \"1.2\" (Mozilla intermediate) or \"1.3\" (Mozilla modern)",
                );
                TlsVersion::Tls12
            }
        };
        if raw.certs.is_empty() {
            self.problems.add_hint(
                Some(span),
                "the https listener needs at least one certificate",
                "add a [[tls.cert]] with hosts, cert and key; `gatehouse-gateway certs dev` makes a local one",
            );
            return None;
        }
        let mut claimed: HashMap<String, std::ops::Range<usize>> = HashMap::new();
        let mut certs = Vec::new();
        for cert in &raw.certs {
            let cert = cert.get_ref();
            if cert.hosts.is_empty() {
                self.problems.add(
                    Some(cert.cert.span()),
                    "a certificate needs at least one host",
                );
            }
            let mut hosts = Vec::new();
            for host in &cert.hosts {
                let Some(name) = self.host_name(host) else {
                    continue;
                };
                if claimed.insert(name.clone(), host.span()).is_some() {
                    self.problems.add_hint(
                        Some(host.span()),
                        format!("host `{name}` is claimed by two certificates"),
                        "each SNI name must choose exactly one certificate",
                    );
                }
                hosts.push(name);
            }
            certs.push(CertPair {
                hosts,
                cert: self.file_path(&cert.cert),
                key: self.file_path(&cert.key),
            });
        }
        Some(Tls { min_version, certs })
    }

    /// A lower-cased DNS name or IP literal.
    pub(crate) fn host_name(&mut self, raw: &Spanned<String>) -> Option<String> {
        let name = raw.get_ref().trim().to_ascii_lowercase();
        let is_ip = IpAddr::from_str(&name).is_ok();
        let is_dns = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if is_ip || is_dns {
            Some(name)
        } else {
            self.problems.add_hint(
                Some(raw.span()),
                format!("`{}` is not a host name or IP address", raw.get_ref()),
                "wildcards and ports are not supported here",
            );
            None
        }
    }

    pub(crate) fn file_path(&self, raw: &Spanned<String>) -> PathBuf {
        let path = Path::new(raw.get_ref());
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    pub(crate) fn headers(&mut self, raw: &RawHeaders, base: SecurityHeaders) -> SecurityHeaders {
        let mut out = base;
        let fields = [
            (&raw.hsts, &mut out.strict_transport_security),
            (&raw.csp, &mut out.content_security_policy),
            (&raw.x_content_type_options, &mut out.x_content_type_options),
            (&raw.x_frame_options, &mut out.x_frame_options),
            (&raw.referrer_policy, &mut out.referrer_policy),
            (&raw.permissions_policy, &mut out.permissions_policy),
            (
                &raw.cross_origin_opener_policy,
                &mut out.cross_origin_opener_policy,
            ),
            (
                &raw.cross_origin_resource_policy,
                &mut out.cross_origin_resource_policy,
            ),
        ];
        for (raw_value, slot) in fields {
            let Some(raw_value) = raw_value else { continue };
            match raw_value.get_ref() {
                RawHeaderValue::Enabled(false) => *slot = None,
                RawHeaderValue::Enabled(true) => self.problems.add_hint(
                    Some(raw_value.span()),
                    "a header is set with a string value, or turned off with `false`",
                    "remove the key to keep the safe default",
                ),
                RawHeaderValue::Value(text) => {
                    let valid = !text.trim().is_empty()
                        && text.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
                    if valid {
                        *slot = Some(HeaderText(text.trim().to_owned()));
                    } else {
                        self.problems.add(
                            Some(raw_value.span()),
                            "header values must be non-empty printable ASCII",
                        );
                    }
                }
            }
        }
        if let (Some(hsts), Some(raw_hsts)) = (&out.strict_transport_security, &raw.hsts) {
            if !hsts_has_max_age(hsts.as_str()) {
                self.problems.add_hint(
                    Some(raw_hsts.span()),
                    "HSTS needs a max-age directive",
                    "for example \"max-age=31536000; includeSubDomains\"",
                );
            }
        }
        out
    }

    pub(crate) fn cidrs(&mut self, raw: &[Spanned<String>]) -> Vec<IpNet> {
        raw.iter().filter_map(|entry| self.cidr(entry)).collect()
    }

    fn cidr(&mut self, raw: &Spanned<String>) -> Option<IpNet> {
        let text = raw.get_ref().trim();
        let parsed = IpNet::from_str(text)
            .ok()
            .or_else(|| IpAddr::from_str(text).ok().map(IpNet::from));
        match parsed {
            Some(net) if net.trunc() != net => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("`{text}` has host bits set"),
                    format!("did you mean {}?", net.trunc()),
                );
                None
            }
            Some(net) => Some(net),
            None => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("`{text}` is not a CIDR or IP address"),
                    "write \"10.0.0.0/8\", \"2001:db8::/32\" or a single address",
                );
                None
            }
        }
    }

    pub(crate) fn duration(
        &mut self,
        raw: &Option<Spanned<String>>,
        default: Duration,
    ) -> Duration {
        let Some(raw) = raw else { return default };
        match humantime::parse_duration(raw.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.problems
                    .add(Some(raw.span()), "a duration of zero is not allowed here");
                default
            }
            Err(e) => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("`{}` is not a duration: {e}", raw.get_ref()),
                    "write it like \"30s\", \"5m\" or \"1h 30m\"",
                );
                default
            }
        }
    }

    pub(crate) fn size(&mut self, raw: &Option<Spanned<String>>, default: u64) -> u64 {
        let Some(raw) = raw else { return default };
        match bytesize::ByteSize::from_str(raw.get_ref()) {
            Ok(size) if size.as_u64() > 0 => size.as_u64(),
            _ => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("`{}` is not a positive size", raw.get_ref()),
                    "write it like \"64KiB\" or \"1MiB\"",
                );
                default
            }
        }
    }

    fn limits(&mut self, raw: &RawLimits) -> (Limits, RouteDefaults) {
        let max_connections = self.bounded_count(
            &raw.max_connections,
            DEFAULT_MAX_CONNECTIONS,
            1..=10_000_000,
            "max_connections",
        );
        let max_connections_per_address = self.bounded_count(
            &raw.max_connections_per_address,
            DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            1..=10_000_000,
            "max_connections_per_address",
        );
        let request_head_timeout =
            self.duration(&raw.request_head_timeout, DEFAULT_REQUEST_HEAD_TIMEOUT);
        if request_head_timeout.is_zero() || request_head_timeout > MAX_REQUEST_HEAD_TIMEOUT {
            if let Some(r) = &raw.request_head_timeout {
                self.problems.add_hint(
                    Some(r.span()),
                    "request_head_timeout is out of range",
                    "between 1s and 5min; real clients send a head in well under a second",
                );
            }
        }
        let max_header_bytes = self.size(&raw.max_header_bytes, DEFAULT_MAX_HEADER_BYTES as u64);
        let limits = Limits {
            max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
            client_read_timeout: self
                .duration(&raw.client_read_timeout, DEFAULT_CLIENT_READ_TIMEOUT),
            max_connections,
            max_connections_per_address,
            request_head_timeout,
            shutdown_grace: self.duration(&raw.shutdown_grace, DEFAULT_SHUTDOWN_GRACE),
        };
        let defaults = RouteDefaults {
            max_body: self.size(&raw.max_body, DEFAULT_MAX_BODY),
            connect_timeout: self.duration(
                &raw.upstream_connect_timeout,
                DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
            ),
            read_timeout: self.duration(&raw.upstream_read_timeout, DEFAULT_UPSTREAM_READ_TIMEOUT),
        };
        (limits, defaults)
    }

    /// A positive whole number no larger than `max`, or `default` when absent.
    pub(crate) fn bounded_count(
        &mut self,
        raw: &Option<Spanned<i64>>,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
        what: &str,
    ) -> usize {
        let Some(raw) = raw else { return default };
        match usize::try_from(*raw.get_ref()) {
            Ok(n) if range.contains(&n) => n,
            _ => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("{what} is out of range"),
                    format!("between {} and {}", range.start(), range.end()),
                );
                default
            }
        }
    }

    fn client_ip_header(&mut self, raw: &Option<Spanned<String>>) -> ClientIpHeader {
        let Some(raw) = raw else {
            return ClientIpHeader::default();
        };
        match raw.get_ref().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => ClientIpHeader::XForwardedFor,
            "forwarded" => ClientIpHeader::Forwarded,
            other => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("`{other}` is not a client address header"),
                    "\"x-forwarded-for\" (the default) or \"forwarded\": the one your trusted proxies set",
                );
                ClientIpHeader::default()
            }
        }
    }
}

pub(crate) struct RouteDefaults {
    pub max_body: u64,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

pub(crate) fn listeners_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn hsts_has_max_age(value: &str) -> bool {
    value.split(';').any(|directive| {
        directive
            .trim()
            .to_ascii_lowercase()
            .strip_prefix("max-age=")
            .is_some_and(|n| n.trim_matches('"').parse::<u64>().is_ok())
    })
}
