//! Turns the raw file into the validated model, collecting every problem
//! instead of stopping at the first.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use crate::error::Problems;
use crate::model::*;
use crate::raw::*;

const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const DEFAULT_CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
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

    fn listen(&mut self, raw: S<RawListen>) -> Option<Listen> {
        let raw = raw.into_inner();
        let https = self.socket_addr(&raw.https);
        let http_redirect = raw.http_redirect.as_ref().map(|a| self.socket_addr(a));
        let admin = raw.admin.as_ref().map(|a| self.socket_addr(a));
        let public_origin = self.public_origin(&raw.public_origin);

        let mut seen: Vec<(SocketAddr, &S<String>)> = Vec::new();
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

    pub(crate) fn socket_addr(&mut self, raw: &S<String>) -> Option<SocketAddr> {
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

    fn public_origin(&mut self, raw: &S<String>) -> Option<PublicOrigin> {
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

    fn tls(&mut self, raw: S<RawTls>) -> Option<Tls> {
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
    fn host_name(&mut self, raw: &S<String>) -> Option<String> {
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

    pub(crate) fn file_path(&self, raw: &S<String>) -> PathBuf {
        let path = Path::new(raw.get_ref());
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    fn headers(&mut self, raw: &RawHeaders, base: SecurityHeaders) -> SecurityHeaders {
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

    pub(crate) fn cidrs(&mut self, raw: &[S<String>]) -> Vec<IpNet> {
        raw.iter().filter_map(|entry| self.cidr(entry)).collect()
    }

    fn cidr(&mut self, raw: &S<String>) -> Option<IpNet> {
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

    pub(crate) fn duration(&mut self, raw: &Option<S<String>>, default: Duration) -> Duration {
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

    pub(crate) fn size(&mut self, raw: &Option<S<String>>, default: u64) -> u64 {
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
        let max_connections = match &raw.max_connections {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(n) if n > 0 => n,
                _ => {
                    self.problems
                        .add(Some(n.span()), "max_connections must be a positive number");
                    DEFAULT_MAX_CONNECTIONS
                }
            },
        };
        let max_header_bytes = self.size(&raw.max_header_bytes, DEFAULT_MAX_HEADER_BYTES as u64);
        let limits = Limits {
            max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
            client_read_timeout: self
                .duration(&raw.client_read_timeout, DEFAULT_CLIENT_READ_TIMEOUT),
            max_connections,
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

    fn routes(
        &mut self,
        raw: &[S<RawRoute>],
        headers: &SecurityHeaders,
        defaults: &RouteDefaults,
        roles: &crate::identity::Roles,
        identities: &crate::identity::Identities,
    ) -> Vec<Route> {
        let mut names = HashSet::new();
        let mut keys = HashSet::new();
        let mut routes = Vec::new();
        for raw_route in raw {
            let r = raw_route.get_ref();
            let name = r.name.get_ref().clone();
            let name_ok = !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !name_ok {
                self.problems.add_hint(
                    Some(r.name.span()),
                    format!("route name `{name}` is not allowed"),
                    "use lower-case letters, digits, '-' and '_'",
                );
            } else if !names.insert(name.clone()) {
                self.problems.add(
                    Some(r.name.span()),
                    format!("route name `{name}` is used twice"),
                );
            }
            let host = r.host.as_ref().and_then(|h| self.host_name(h));
            let path = self.route_prefix(&r.path);
            if let Some(path) = &path {
                if !keys.insert((host.clone(), path.0.clone())) {
                    self.problems.add_hint(
                        Some(r.path.span()),
                        format!("another route already serves `{}` on this host", path.0),
                        "host and path together must be unique",
                    );
                }
            }
            let upstream = self.upstream(r, defaults);
            let route_headers = self.headers(&r.headers, headers.clone());
            let network = NetworkRules {
                allow: self.cidrs(&r.network.allow),
                deny: self.cidrs(&r.network.deny),
            };
            let max_body = self.size(&r.max_body, defaults.max_body);
            let access = self.access(r, roles, identities);
            let cors = self.cors(&r.cors);
            let rate_limit = r
                .rate_limit
                .as_ref()
                .map(|raw| self.rate(Some(raw), crate::convert_abuse::DEFAULT_CLIENT_RATE));
            if let (Some(path), Some(upstream)) = (path, upstream) {
                routes.push(Route {
                    name,
                    host,
                    path,
                    upstream,
                    max_body,
                    websocket: r.websocket,
                    network,
                    headers: route_headers,
                    access,
                    cors,
                    forward_authorization: r.forward_authorization,
                    forward_session_cookie: r.forward_session_cookie,
                    rate_limit,
                });
            }
        }
        routes
    }

    fn route_prefix(&mut self, raw: &S<String>) -> Option<RoutePrefix> {
        let text = raw.get_ref();
        let segments_ok = text
            .strip_prefix('/')
            .map(|rest| {
                let rest = rest.strip_suffix('/').unwrap_or(rest);
                rest.is_empty()
                    || rest.split('/').all(|seg| {
                        !seg.is_empty()
                            && seg != "."
                            && seg != ".."
                            && seg.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&b)
                            })
                    })
            })
            .unwrap_or(false);
        if segments_ok {
            Some(RoutePrefix(text.clone()))
        } else {
            self.problems.add_hint(
                Some(raw.span()),
                format!("`{text}` is not a normalised path prefix"),
                "start with '/', no '.' or '..' segments, no '//' and no percent-encoding",
            );
            None
        }
    }

    fn upstream(&mut self, r: &RawRoute, defaults: &RouteDefaults) -> Option<Upstream> {
        let raw = &r.upstream;
        let hint = "write it as \"http://127.0.0.1:9000\" or \"https://app.internal\"";
        let Ok(url) = url::Url::parse(raw.get_ref()) else {
            self.problems
                .add_hint(Some(raw.span()), "upstream is not a URL", hint);
            return None;
        };
        let scheme = match url.scheme() {
            "http" => UpstreamScheme::Http,
            "https" => UpstreamScheme::Https,
            other => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("upstream scheme `{other}` is not supported"),
                    hint,
                );
                return None;
            }
        };
        let bare = url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        if !bare {
            // The upstream receives exactly the path that was authorised, so a
            // path here would silently rewrite it.
            self.problems.add_hint(
                Some(raw.span()),
                "upstream must not carry a path, query or credentials",
                hint,
            );
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => {
                self.problems
                    .add_hint(Some(raw.span()), "upstream has no host", hint);
                return None;
            }
        };
        let port = url.port_or_known_default()?;
        if scheme == UpstreamScheme::Http && (r.upstream_sni.is_some() || r.insecure_skip_verify) {
            self.problems.add(
                Some(raw.span()),
                "upstream_sni and insecure_skip_verify only apply to https upstreams",
            );
        }
        Some(Upstream {
            scheme,
            tls_server_name: r
                .upstream_sni
                .as_ref()
                .map(|s| s.get_ref().clone())
                .unwrap_or_else(|| host.clone()),
            host,
            port,
            insecure_skip_verify: r.insecure_skip_verify,
            connect_timeout: self.duration(&r.connect_timeout, defaults.connect_timeout),
            read_timeout: self.duration(&r.read_timeout, defaults.read_timeout),
        })
    }
}

struct RouteDefaults {
    max_body: u64,
    connect_timeout: Duration,
    read_timeout: Duration,
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
