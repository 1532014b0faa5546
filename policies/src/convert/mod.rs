//! Turns the raw file into the validated model, collecting every problem
//! instead of stopping at the first.
//!
//! `Converter::policy` below is the order of the sections; each section's
//! checks live in the module named for it (`identity.rs`, `route.rs`,
//! `scheduler.rs`, ...). What they all use, the `Converter` and the parsers
//! of common value kinds, is `context.rs`, so no section imports from here.

mod abuse;
mod access;
mod allowances;
pub(crate) mod container;
pub(crate) mod context;
mod identity;
mod image_ref;
pub(crate) mod job;
mod notify;
mod route;
mod scheduler;
mod shared_state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use crate::model::*;
use crate::raw::*;
use context::{listeners_overlap, Converter, RouteDefaults};

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
        let proxy_protocol_from = self.cidrs(&raw.network.proxy_protocol_from);
        let (limits, route_defaults) = self.limits(&raw.limits);
        let rate_limits = self.rate_limits(&raw.rate_limit);
        let shared_state = self.shared_state(&raw.shared_state);
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
            proxy_protocol_from,
            limits,
            routes,
            roles,
            identities,
            rate_limits,
            shared_state,
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

fn hsts_has_max_age(value: &str) -> bool {
    value.split(';').any(|directive| {
        directive
            .trim()
            .to_ascii_lowercase()
            .strip_prefix("max-age=")
            .is_some_and(|n| n.trim_matches('"').parse::<u64>().is_ok())
    })
}
