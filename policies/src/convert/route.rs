//! Converting `[[route]]`s: names, host and path prefix (unique per host,
//! whatever the case), upstream, and the per-route edge settings. Access
//! and CORS rules are in `access.rs`.

use std::collections::{BTreeSet, HashSet};

use toml::Spanned;

use crate::convert::context::{Converter, RouteDefaults};
use crate::model::*;
use crate::raw::*;
use crate::secret::Secret;

impl Converter<'_> {
    pub(crate) fn routes(
        &mut self,
        raw: &[Spanned<RawRoute>],
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
                // Unique whatever the case: `/admin` and `/Admin` on one host
                // would make the winner depend on spelling.
                if !keys.insert((host.clone(), path.0.to_ascii_lowercase())) {
                    self.problems.add_hint(
                        Some(r.path.span()),
                        format!("another route already serves `{}` on this host", path.0),
                        "host and path together must be unique (ignoring case and a trailing '/')",
                    );
                }
            }
            if let Some(route) =
                self.route(r, name, host, path, headers, defaults, roles, identities)
            {
                self.assertion_key_not_shared(r, &route, &routes);
                routes.push(route);
            }
        }
        routes
    }

    /// A route's HS256 assertion key, if it has one.
    fn assertion_key(&mut self, r: &RawRoute) -> Option<Secret> {
        if r.assertion_key.is_none() && r.assertion_key_file.is_none() {
            return None;
        }
        self.secret(
            "assertion_key",
            &r.assertion_key,
            &r.assertion_key_file,
            MIN_ASSERTION_KEY_BYTES,
            r.name.span(),
        )
    }

    /// Whoever holds an HS256 key can sign with it, so two upstreams must
    /// not share one: either could pose as the gateway to the other. Routes
    /// to the same upstream may.
    fn assertion_key_not_shared(&mut self, raw: &RawRoute, route: &Route, earlier: &[Route]) {
        let Some(key) = &route.assertion_key else {
            return;
        };
        let other = earlier
            .iter()
            .find(|o| o.assertion_key.as_ref() == Some(key) && o.upstream != route.upstream);
        if let Some(other) = other {
            let span = raw
                .assertion_key
                .as_ref()
                .or(raw.assertion_key_file.as_ref())
                .map(|k| k.span());
            self.problems.add_hint(
                span,
                format!(
                    "route `{}` has the same assertion key as route `{}`, which reaches another upstream",
                    route.name, other.name
                ),
                "give each upstream its own key: whoever holds it can sign assertions with it",
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        r: &RawRoute,
        name: String,
        host: Option<String>,
        path: Option<RoutePrefix>,
        headers: &SecurityHeaders,
        defaults: &RouteDefaults,
        roles: &crate::identity::Roles,
        identities: &crate::identity::Identities,
    ) -> Option<Route> {
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
            .map(|raw| self.rate(Some(raw), crate::convert::abuse::DEFAULT_CLIENT_RATE));
        let pass_headers = self.pass_headers(&r.pass_headers);
        let assertion_key = self.assertion_key(r);
        let mut extension_methods = self.extension_methods(&r.extension_methods);
        // A method with its own access rule is a method the route accepts.
        extension_methods.extend(
            r.methods
                .keys()
                .map(|m| m.get_ref().clone())
                .filter(|m| !STANDARD_METHODS.contains(&m.as_str())),
        );
        Some(Route {
            name,
            host,
            path: path?,
            upstream: upstream?,
            max_body,
            websocket: r.websocket,
            network,
            headers: route_headers,
            access,
            cors,
            forward_authorization: r.forward_authorization,
            forward_session_cookie: r.forward_session_cookie,
            rate_limit,
            case_sensitive: r.case_sensitive,
            pass_headers,
            extension_methods,
            assertion_key,
        })
    }

    /// A route prefix as the gateway compares it: `/`, or segments without a
    /// trailing `/` (`/admin/` and `/admin` are one route; both cover
    /// `/admin`, `/admin/` and `/admin/x`).
    fn route_prefix(&mut self, raw: &Spanned<String>) -> Option<RoutePrefix> {
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
            let trimmed = match text.strip_suffix('/') {
                Some(rest) if !rest.is_empty() => rest,
                _ => text.as_str(),
            };
            Some(RoutePrefix(trimmed.to_owned()))
        } else {
            self.problems.add_hint(
                Some(raw.span()),
                format!("`{text}` is not a normalised path prefix"),
                "start with '/', no '.' or '..' segments, no '//' and no percent-encoding",
            );
            None
        }
    }

    /// `pass_headers`: only names the gateway would strip, never its own
    /// identity headers.
    fn pass_headers(&mut self, raw: &[Spanned<String>]) -> Vec<String> {
        let mut out = Vec::new();
        for name in raw {
            let lower = name.get_ref().to_ascii_lowercase();
            if IDENTITY_HEADER_PREFIXES
                .iter()
                .any(|p| lower.starts_with(p))
            {
                self.problems.add_hint(
                    Some(name.span()),
                    format!("`{}` is the gateway's own identity header", name.get_ref()),
                    "only the gateway sets X-Gatehouse-* and X-Auth-Request-*; no route can pass a client's copy",
                );
            } else if !STRIPPED_REQUEST_HEADERS.contains(&lower.as_str()) {
                self.problems.add_hint(
                    Some(name.span()),
                    format!("`{}` is not a header the gateway strips", name.get_ref()),
                    format!(
                        "pass_headers names one of: {}",
                        STRIPPED_REQUEST_HEADERS.join(", ")
                    ),
                );
            } else if !out.contains(&lower) {
                out.push(lower);
            }
        }
        out
    }

    /// `extension_methods`: upper-case tokens beyond the standard methods;
    /// never CONNECT or TRACE.
    fn extension_methods(&mut self, raw: &[Spanned<String>]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for method in raw {
            if let Some(problem) = extension_method_problem(method.get_ref()) {
                self.problems
                    .add_hint(Some(method.span()), problem.0, problem.1);
            } else {
                out.insert(method.get_ref().clone());
            }
        }
        out
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

/// Why `method` cannot be an extension method, as (message, hint).
pub(crate) fn extension_method_problem(method: &str) -> Option<(String, &'static str)> {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
    let is_token = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || TCHAR.contains(&b))
        && method.bytes().any(|b| b.is_ascii_uppercase());
    if !is_token {
        Some((
            format!("`{method}` is not an upper-case method name"),
            "methods are case-sensitive tokens; the gateway refuses any that is not upper case",
        ))
    } else if matches!(method, "CONNECT" | "TRACE") {
        Some((
            format!("{method} never passes the gateway"),
            "CONNECT would make the gateway a tunnel; TRACE reflects credentials",
        ))
    } else if STANDARD_METHODS.contains(&method) {
        Some((
            format!("{method} is a standard method"),
            "every route accepts GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS; list only others",
        ))
    } else {
        None
    }
}
