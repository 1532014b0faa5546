//! Everything built from one policy, swapped as a unit on reload.
//!
//! Architecture invariant: the only global mutable state in the gateway is
//! the `ArcSwap<Snapshot>` (plus the certificate store the TLS resolver
//! reads). A request loads the snapshot once into its context and uses that
//! same snapshot to the end, so a reload never changes the rules halfway
//! through a request.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use gatehouse_policy::{Policy, PolicyError, Route};

use crate::access::rate_limit::RateLimits;
use crate::admin::metrics::RouteSeries;
use crate::edge::headers::PreparedHeaders;
use crate::edge::path::{matches_prefix, NormalizedPath};
use crate::edge::tls::{CertStore, TlsError};
use crate::identity::assertion::AssertionMac;
use crate::identity::{Authenticator, IdentityState};

pub struct Snapshot {
    pub policy: Policy,
    pub authenticator: Authenticator,
    pub routes: RouteTable,
    /// Headers for responses that belong to no route (404, early 400s).
    pub default_headers: PreparedHeaders,
    pub certs: Arc<CertStore>,
    /// Kept from the previous snapshot when the rates did not change.
    pub rate_limits: Arc<RateLimits>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    JwtKey(#[from] crate::identity::jwt::KeyLoadError),
}

impl Snapshot {
    /// Loads the policy and everything it refers to. `check`, startup and
    /// reload all come through here, so they accept and reject the same files.
    /// `identity` is shared across reloads so cached keys, the password
    /// workers and revoked sessions survive them.
    pub fn load(
        path: &Path,
        identity: &IdentityState,
        previous: Option<&Snapshot>,
    ) -> Result<Self, SnapshotError> {
        let policy = gatehouse_policy::load(path)?;
        Self::build(policy, identity, previous)
    }

    /// `previous` lends its rate-limit state when the rates are unchanged,
    /// so a reload does not hand everyone a fresh allowance.
    pub fn build(
        policy: Policy,
        identity: &IdentityState,
        previous: Option<&Snapshot>,
    ) -> Result<Self, SnapshotError> {
        let rate_limits = match previous {
            Some(p) if p.rate_limits.same_settings(&policy) => p.rate_limits.clone(),
            _ => Arc::new(RateLimits::new(&policy)),
        };
        Ok(Snapshot {
            rate_limits,
            authenticator: Authenticator::new(&policy, identity)?,
            certs: Arc::new(CertStore::load(&policy.tls)?),
            routes: RouteTable::new(&policy.routes),
            default_headers: PreparedHeaders::new(&gatehouse_policy::SecurityHeaders::default()),
            policy,
        })
    }
}

pub struct PreparedRoute {
    pub route: Route,
    pub headers: PreparedHeaders,
    /// Its request metrics, looked up on first use.
    pub metrics: OnceLock<RouteSeries>,
    /// Its own assertion key, when it has one.
    pub assertion_mac: Option<AssertionMac>,
}

/// Routes ordered for matching: host-specific first, then longest prefix,
/// so the first match is the most specific one.
pub struct RouteTable(Vec<Arc<PreparedRoute>>);

impl RouteTable {
    pub fn new(routes: &[Route]) -> Self {
        let mut prepared: Vec<Arc<PreparedRoute>> = routes
            .iter()
            .map(|route| {
                Arc::new(PreparedRoute {
                    headers: PreparedHeaders::new(&route.headers),
                    route: route.clone(),
                    metrics: OnceLock::new(),
                    assertion_mac: route
                        .assertion_key
                        .as_ref()
                        .map(|key| AssertionMac::new(&route.name, key.expose())),
                })
            })
            .collect();
        prepared.sort_by_key(|r| {
            (
                r.route.host.is_none(),
                std::cmp::Reverse(r.route.path.as_str().len()),
            )
        });
        RouteTable(prepared)
    }

    /// The route for a request: a route naming this host wins over a
    /// host-less one, then the longest matching prefix. Prefixes match
    /// ASCII case-insensitively unless the route says otherwise; a path
    /// that matches a case-sensitive route only under case folding is
    /// refused rather than handed to a less specific route, since
    /// case-insensitive servers (IIS, ASP.NET, Express by default) would
    /// serve it as that route.
    pub fn find(
        &self,
        host: Option<&str>,
        path: &NormalizedPath,
    ) -> Result<&Arc<PreparedRoute>, RouteMiss> {
        for r in &self.0 {
            let host_ok = match (&r.route.host, host) {
                (None, _) => true,
                (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
                (Some(_), None) => false,
            };
            if !host_ok || !matches_prefix(path, r.route.path.as_str(), true) {
                continue;
            }
            if r.route.case_sensitive && !matches_prefix(path, r.route.path.as_str(), false) {
                return Err(RouteMiss::CaseMismatch);
            }
            return Ok(r);
        }
        Err(RouteMiss::NoRoute)
    }
}

/// Why no route takes a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteMiss {
    #[error("no route matches")]
    NoRoute,
    #[error("the path matches a case-sensitive route only with other letter case")]
    CaseMismatch,
}

impl RouteMiss {
    pub const ALL: [RouteMiss; 2] = [RouteMiss::NoRoute, RouteMiss::CaseMismatch];

    pub fn reason(self) -> &'static str {
        match self {
            RouteMiss::NoRoute => "no-route",
            RouteMiss::CaseMismatch => "route-case-mismatch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &str) -> RouteTable {
        let text = format!(
            r#"{head}
{routes}"#,
            head = gatehouse_policy::testing::LISTEN_AND_TLS
        );
        let policy = gatehouse_policy::parse(Path::new("p.toml"), &text).unwrap();
        RouteTable::new(&policy.routes)
    }

    fn matched<'a>(table: &'a RouteTable, host: Option<&str>, path: &str) -> Option<&'a str> {
        let path = crate::edge::path::normalize(path.as_bytes()).unwrap();
        table.find(host, &path).ok().map(|r| r.route.name.as_str())
    }

    #[test]
    fn longest_prefix_and_host_specific_routes_win() {
        let routes = table(
            r#"
[[route]]
name = "root"
path = "/"
upstream = "http://127.0.0.1:1"
public = true
[[route]]
name = "api"
path = "/api"
upstream = "http://127.0.0.1:2"
public = true
[[route]]
name = "admin-host"
host = "admin.test"
path = "/"
upstream = "http://127.0.0.1:3"
public = true
"#,
        );
        assert_eq!(matched(&routes, None, "/api/x"), Some("api"));
        assert_eq!(matched(&routes, None, "/apix"), Some("root"));
        assert_eq!(
            matched(&routes, Some("ADMIN.test"), "/api/x"),
            Some("admin-host")
        );
        assert_eq!(matched(&routes, Some("other.test"), "/"), Some("root"));
    }

    #[test]
    fn no_route_matches_outside_every_prefix() {
        let routes = table(
            r#"
[[route]]
name = "api"
path = "/api"
upstream = "http://127.0.0.1:2"
public = true
"#,
        );
        assert_eq!(matched(&routes, None, "/"), None);
        assert_eq!(matched(&routes, None, "/ap"), None);
    }

    #[test]
    fn case_folds_unless_the_route_is_case_sensitive() {
        let routes = table(
            r#"
[[route]]
name = "root"
path = "/"
upstream = "http://127.0.0.1:1"
public = true
[[route]]
name = "admin"
path = "/admin/"
upstream = "http://127.0.0.1:2"
public = true
[[route]]
name = "exact"
path = "/Exact"
case_sensitive = true
upstream = "http://127.0.0.1:3"
public = true
"#,
        );
        assert_eq!(matched(&routes, None, "/ADMIN/x"), Some("admin"));
        assert_eq!(matched(&routes, None, "/admin"), Some("admin"));
        assert_eq!(matched(&routes, None, "/Exact/x"), Some("exact"));
        let path = crate::edge::path::normalize(b"/EXACT/x").unwrap();
        assert_eq!(
            routes.find(None, &path).err(),
            Some(RouteMiss::CaseMismatch),
            "never falls through to the root route"
        );
    }
}
