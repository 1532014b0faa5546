//! The gateway as the server assembles it, on a policy with several
//! routes, and the request each identity kind sends.

use std::sync::Arc;

use arc_swap::ArcSwap;
use gatehouse_gateway::admin::audit::Audit;
use gatehouse_gateway::admin::metrics::{InFlight, Metrics};
use gatehouse_gateway::edge::request_id::RequestIds;
use gatehouse_gateway::identity::assertion::AssertionSigner;
use gatehouse_gateway::identity::login::OidcClients;
use gatehouse_gateway::identity::{session, IdentityState};
use gatehouse_gateway::proxy::refusal::Reason;
use gatehouse_gateway::proxy::Gateway;
use gatehouse_gateway::snapshot::Snapshot;

use crate::support;

/// The identity kinds a request can carry, one request each.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Public,
    JwtCached,
    /// The same token on a route with its own assertion key (HS256).
    JwtRouteKey,
    ApiKey,
    SessionCookie,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Public,
        Kind::JwtCached,
        Kind::JwtRouteKey,
        Kind::ApiKey,
        Kind::SessionCookie,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Public => "public",
            Kind::JwtCached => "jwt-cached",
            Kind::JwtRouteKey => "jwt-route-key",
            Kind::ApiKey => "api-key",
            Kind::SessionCookie => "session-cookie",
        }
    }

    /// A browser-ish GET for this kind's route, with its credential.
    pub fn request_head(self, f: &support::Fixture) -> String {
        let page = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        let (target, accept, fetch, extra) = match self {
            Kind::Public => (
                "/docs/getting-started?lang=en",
                page,
                "navigate",
                "Cookie: theme=dark; _pk_id.1.1fff=4d1e0c1a2b3c4d5e.1700000000.".to_owned(),
            ),
            Kind::JwtCached => (
                "/api/v1/items?page=2&sort=name",
                "application/json",
                "cors",
                format!(
                    "Origin: https://app.example.com\r\nAuthorization: Bearer {}",
                    f.token("jwt ES256")
                ),
            ),
            Kind::JwtRouteKey => (
                "/keyed-api/v1/items?page=2&sort=name",
                "application/json",
                "same-origin",
                format!("Authorization: Bearer {}", f.token("jwt ES256")),
            ),
            Kind::ApiKey => (
                "/api/v1/items?page=2&sort=name",
                "application/json",
                "cors",
                format!(
                    "Origin: https://app.example.com\r\nX-Api-Key: {}",
                    f.api_key
                ),
            ),
            Kind::SessionCookie => (
                "/dashboard/items?page=2",
                page,
                "navigate",
                format!(
                    "Cookie: theme=dark; {}={}",
                    session::SESSION_COOKIE,
                    f.session_cookie
                ),
            ),
        };
        format!(
            "GET {target} HTTP/1.1\r\n\
             Host: localhost\r\n\
             User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
             Accept: {accept}\r\n\
             Accept-Language: en-US,en;q=0.5\r\n\
             Accept-Encoding: gzip, deflate, br, zstd\r\n\
             Referer: https://localhost/\r\n\
             Connection: keep-alive\r\n\
             Sec-Fetch-Mode: {fetch}\r\n\
             Sec-Fetch-Site: same-origin\r\n\
             {extra}\r\n\r\n"
        )
    }
}

/// The gateway as the server assembles it (src/server/mod.rs), on a
/// policy with several routes.
pub struct Bench {
    pub gateway: Gateway,
    pub snapshot: Arc<Snapshot>,
    pub fixture: support::Fixture,
    _identity: IdentityState,
    _pki: gatehouse_tests::TestPki,
}

pub fn bench_gateway() -> Bench {
    let pki = gatehouse_tests::TestPki::new().unwrap();
    let cert = pki.issue("server", &["localhost"], 30).unwrap();
    let fixture = support::fixture(|identities, dir| {
        format!(
            r#"
[listen]
https = "127.0.0.1:8443"
public_origin = "https://localhost"
[[tls.cert]]
hosts = ["localhost"]
cert = "{cert}"
key = "{key}"
[network]
allow = ["127.0.0.0/8", "10.0.0.0/8", "192.168.0.0/16"]
deny = ["10.66.0.0/16"]
[rate_limit]
client = "1000000/s"
identity = "1000000/s"
[audit]
path = "{dir}/audit.jsonl"
{identities}
[[oidc]]
name = "corp"
issuer = "https://login.example.com"
client_id = "gatehouse"
client_secret = "an-oidc-client-secret"
[[route]]
name = "site"
path = "/"
upstream = "http://127.0.0.1:9000"
public = true
[[route]]
name = "static"
path = "/static"
upstream = "http://127.0.0.1:9001"
public = true
[[route]]
name = "admin"
host = "admin.localhost"
path = "/"
upstream = "http://127.0.0.1:9002"
roles = ["viewer"]
[[route]]
name = "dashboard"
path = "/dashboard"
upstream = "http://127.0.0.1:9003"
roles = ["viewer"]
[[route]]
name = "keyed-api"
path = "/keyed-api"
upstream = "http://127.0.0.1:9101"
roles = ["viewer"]
accept = ["jwt", "api_key"]
assertion_key = "a-32-byte-or-longer-key-for-this-route"
[[route]]
name = "api"
path = "/api"
upstream = "http://127.0.0.1:9100"
roles = ["viewer"]
accept = ["jwt", "api_key"]
[route.cors]
allow_origins = ["https://app.example.com"]
allow_methods = ["GET", "POST"]
allow_headers = ["content-type", "authorization"]
allow_credentials = true
max_age = "10m"
"#,
            cert = cert.cert.display(),
            key = cert.key.display(),
            dir = dir.display(),
        )
    });
    let identity = IdentityState::new().unwrap();
    let snapshot = Snapshot::build(fixture.policy.clone(), &identity, None).unwrap();
    let policy = &snapshot.policy;
    let metrics = Metrics::new(Reason::all().into_iter().map(Reason::as_str));
    let gateway = Gateway {
        metrics: metrics.clone(),
        request_ids: RequestIds::new(),
        in_flight: Arc::new(InFlight::new(metrics.requests_in_flight.clone())),
        assertion: Arc::new(
            AssertionSigner::new(
                None,
                &[],
                policy.listen.public_origin.as_str(),
                policy.identities.assertion.lifetime,
            )
            .unwrap(),
        ),
        oidc: Arc::new(OidcClients::new(None).expect("an HTTP client")),
        audit: Audit::open(policy).unwrap(),
        snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
        shared_state: None,
    };
    Bench {
        snapshot: gateway.snapshot.load_full(),
        gateway,
        fixture,
        _identity: identity,
        _pki: pki,
    }
}
