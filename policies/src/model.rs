//! The parsed policy. Everything here has been validated: callers never see
//! the file format, only these types.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::identity::{Access, Identities, Roles};

/// A validated policy and where it came from.
#[derive(Debug, Clone)]
pub struct Policy {
    pub origin: PolicyOrigin,
    pub listen: Listen,
    pub tls: Tls,
    pub network: NetworkRules,
    /// Peers whose forwarding header is believed; see [`ClientIpHeader`].
    pub trusted_proxies: Vec<IpNet>,
    pub client_ip_header: ClientIpHeader,
    /// Peers that must open every connection to the HTTPS listener with a
    /// PROXY protocol v2 header (an L4 balancer such as HAProxy with
    /// `send-proxy-v2`); the address it carries is then the client's. Empty
    /// (the default): no header is read from anyone.
    pub proxy_protocol_from: Vec<IpNet>,
    pub limits: Limits,
    /// Routes in the order the file declares them. The gateway matches the
    /// longest prefix, so order only breaks ties it never has (names and
    /// host+path pairs are unique).
    pub routes: Vec<Route>,
    pub roles: Roles,
    pub identities: Identities,
    pub rate_limits: RateLimits,
    /// State the gateway replicas share (`[shared_state]`); `None`: each
    /// process keeps its own, the single-machine default.
    pub shared_state: Option<SharedState>,
    /// Where security events are recorded; `None` when the policy has no
    /// `[audit]` section (the gateway warns at startup).
    pub audit: Option<AuditSettings>,
    /// `[scheduler]`: absent when this policy runs no scheduler.
    pub scheduler: Option<crate::scheduler::SchedulerSettings>,
    /// `[[job]]`s in file order; names are unique.
    pub jobs: Vec<crate::scheduler::Job>,
}

/// Which file a policy was read from, and a digest of its exact bytes so that
/// reloads and audit records can say which policy was in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOrigin {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub https: SocketAddr,
    /// A plain-HTTP listener that only ever redirects to `public_origin`.
    pub http_redirect: Option<SocketAddr>,
    /// `/metrics`, `/healthz` and `/readyz`; never served on the public port.
    pub admin: Option<SocketAddr>,
    pub public_origin: PublicOrigin,
}

/// The `https://host[:port]` users reach us at. Redirects are built from this
/// and never from a request's Host header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin(String);

impl PublicOrigin {
    pub(crate) fn new(origin_without_trailing_slash: String) -> Self {
        PublicOrigin(origin_without_trailing_slash)
    }

    /// `https://host[:port]`, with no trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub min_version: TlsVersion,
    /// At least one. The first is served to clients that send no SNI or an
    /// unknown name.
    pub certs: Vec<CertPair>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    /// Lower-case DNS names or IP literals this certificate is chosen for.
    pub hosts: Vec<String>,
    /// Absolute, or resolved against the policy file's directory.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The one header trusted proxies use to pass the client's address. The
/// other one is ignored, because a proxy that appends to one header
/// usually passes the other through untouched: believing both would let
/// the client choose its own address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientIpHeader {
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=...`.
    Forwarded,
}

impl ClientIpHeader {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientIpHeader::XForwardedFor => "x-forwarded-for",
            ClientIpHeader::Forwarded => "forwarded",
        }
    }
}

/// Allow and deny lists. Deny always wins; an empty allow list allows every
/// address that no deny entry names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRules {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_header_bytes: usize,
    /// Time a client has to send the request head, and between body reads.
    pub client_read_timeout: Duration,
    pub max_connections: usize,
    /// Open client connections per socket peer (IPv6 per `ipv6_prefix`);
    /// trusted proxies are exempt.
    pub max_connections_per_address: usize,
    /// Time to deliver a whole request head: from the accepted connection
    /// for the first request, from its first byte for later ones.
    pub request_head_timeout: Duration,
    /// How long SIGTERM waits for in-flight requests.
    pub shutdown_grace: Duration,
}

/// The response headers the gateway adds to every response. `None` means
/// the policy explicitly turned that header off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityHeaders {
    pub strict_transport_security: Option<HeaderText>,
    pub content_security_policy: Option<HeaderText>,
    pub x_content_type_options: Option<HeaderText>,
    pub x_frame_options: Option<HeaderText>,
    pub referrer_policy: Option<HeaderText>,
    pub permissions_policy: Option<HeaderText>,
    pub cross_origin_opener_policy: Option<HeaderText>,
    pub cross_origin_resource_policy: Option<HeaderText>,
}

impl SecurityHeaders {
    /// Header names paired with their values, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &HeaderText)> {
        [
            ("strict-transport-security", &self.strict_transport_security),
            ("content-security-policy", &self.content_security_policy),
            ("x-content-type-options", &self.x_content_type_options),
            ("x-frame-options", &self.x_frame_options),
            ("referrer-policy", &self.referrer_policy),
            ("permissions-policy", &self.permissions_policy),
            (
                "cross-origin-opener-policy",
                &self.cross_origin_opener_policy,
            ),
            (
                "cross-origin-resource-policy",
                &self.cross_origin_resource_policy,
            ),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| (name, v)))
    }
}

impl Default for SecurityHeaders {
    /// The safe defaults: strict enough for an A+ from the MDN HTTP
    /// Observatory, and loosened per route only when the policy says so.
    fn default() -> Self {
        let text = |s: &str| Some(HeaderText(s.to_owned()));
        SecurityHeaders {
            strict_transport_security: text("max-age=31536000; includeSubDomains"),
            content_security_policy: text(
                "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
            ),
            x_content_type_options: text("nosniff"),
            x_frame_options: text("DENY"),
            referrer_policy: text("no-referrer"),
            permissions_policy: text(
                "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
            ),
            cross_origin_opener_policy: text("same-origin"),
            cross_origin_resource_policy: text("same-origin"),
        }
    }
}

/// A header value checked to be visible ASCII and spaces, so it can be sent
/// as-is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderText(pub(crate) String);

impl HeaderText {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    /// Lower-case host name the route is limited to; `None` matches any host.
    pub host: Option<String>,
    pub path: RoutePrefix,
    pub upstream: Upstream,
    pub max_body: u64,
    /// Whether `Upgrade: websocket` may pass. `h2c` upgrades never pass.
    pub websocket: bool,
    /// Route rules are checked after the global ones; both must allow.
    pub network: NetworkRules,
    /// The global headers with this route's overrides applied.
    pub headers: SecurityHeaders,
    pub access: Access,
    pub cors: Option<Cors>,
    /// Whether the client's `Authorization` header reaches the upstream.
    pub forward_authorization: bool,
    /// Whether the session cookie reaches the upstream.
    pub forward_session_cookie: bool,
    /// Replaces the client and identity tiers on this route.
    pub rate_limit: Option<Rate>,
    /// Whether the prefix matches only with the same ASCII case. Either
    /// way a path that matches it only under case folding never reaches a
    /// less specific route.
    pub case_sensitive: bool,
    /// Lower-case names from [`STRIPPED_REQUEST_HEADERS`] this route lets
    /// through to its upstream.
    pub pass_headers: Vec<String>,
    /// Methods beyond [`STANDARD_METHODS`] this route accepts.
    pub extension_methods: std::collections::BTreeSet<String>,
    /// When set, the route's assertions are HS256 under this key (shared
    /// with its upstream only) instead of EdDSA under the gateway's key.
    pub assertion_key: Option<crate::secret::Secret>,
}

/// The fewest bytes of an assertion key: HS256's own hash size (RFC 7518
/// section 3.2).
pub const MIN_ASSERTION_KEY_BYTES: usize = 32;

/// The methods every route accepts (subject to its access rules). `HEAD`
/// is authorised by `GET`'s rule. CONNECT and TRACE never pass.
pub const STANDARD_METHODS: [&str; 7] =
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Request headers that some upstream framework reads as the client's
/// address, host, path, method or identity. A client could set any of
/// them, so the gateway removes them unless a route's `pass_headers` names
/// one. Lower case.
pub const STRIPPED_REQUEST_HEADERS: [&str; 25] = [
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
    "remote-user",
    "x-remote-user",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-access-token",
];

/// Header-name prefixes only the gateway writes towards upstreams. A
/// client's copies are always removed and no route can let them through.
pub const IDENTITY_HEADER_PREFIXES: [&str; 2] = ["x-gatehouse-", "x-auth-request-"];

/// Cross-origin rules of a route; the gateway answers preflights itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    pub origins: CorsOrigins,
    pub methods: Vec<String>,
    /// Lower-case request header names a cross-origin request may send.
    pub headers: Vec<String>,
    pub max_age: Duration,
}

/// `*` carries no credentials flag, so `*` with credentials cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List {
        /// Serialised origins, `scheme://host[:port]`.
        origins: Vec<String>,
        allow_credentials: bool,
    },
}

/// A route's path prefix: starts with `/`, no dot segments, no empty
/// segments, no percent-encoding, so it compares directly against a
/// normalised request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePrefix(pub(crate) String);

impl RoutePrefix {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamScheme {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: UpstreamScheme,
    /// Host name or IP literal (without brackets).
    pub host: String,
    pub port: u16,
    /// Name sent in SNI and checked against the upstream's certificate.
    pub tls_server_name: String,
    /// `insecure_skip_verify` in the file; warned about at startup.
    pub insecure_skip_verify: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl Upstream {
    /// `host:port`, with IPv6 literals in brackets, for connecting.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// So many requests per period, as in `"30/min"`. The whole count may be
/// spent at once (the burst), then it refills evenly over the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: std::num::NonZeroU32,
    pub per: Duration,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.count, self.per.as_secs())
    }
}

/// The rate-limit tiers, per gateway process; with `[shared_state]` the
/// request tiers are also counted for the whole cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Per client address, for requests without an identity.
    pub client: Rate,
    /// Per identity (user, API key, token subject).
    pub identity: Rate,
    /// Failed logins per client address (bad basic-auth password, unknown
    /// API key or token, failed OIDC callback); then 429 until it clears.
    pub login: Rate,
    /// At most this many keys are tracked per tier; see the gateway's
    /// `rate_limit` module for what happens beyond.
    pub max_tracked_keys: usize,
    /// IPv6 clients are counted per network of this prefix length: one
    /// host usually owns a whole /64, so per-/128 keys let one client fill
    /// the key store.
    pub ipv6_prefix: u8,
    /// Basic-auth password verifications in flight per client address.
    pub password_checks_per_address: usize,
}

/// Redis, where gateway replicas keep what must hold across all of them:
/// the request rate limits (one quota for the cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedState {
    /// `redis://host:port[/db]` or `rediss://` (TLS, rustls).
    pub redis_url: String,
    pub password: Option<crate::secret::Secret>,
    pub when_unavailable: WhenUnavailable,
    /// How long one Redis call may take before it counts as unavailable.
    pub timeout: Duration,
}

/// What rate limiting does while Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnavailable {
    /// Each replica applies the limits on its own (up to N times the
    /// quota with N replicas): availability first. The default.
    LocalLimits,
    /// Requests that a limit covers are refused with 503.
    Refuse,
}

/// What the gateway does while it cannot write its audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAuditFailure {
    /// Fail closed: answer 503 until records can be written again.
    Deny,
    /// Keep serving; count and log the records that are lost.
    Continue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// The active file; rotated files sit next to it as `<path>.<first seq>`.
    pub path: PathBuf,
    /// Ordinary records reach the disk at most this long after they are
    /// written; login, logout, policy and lifecycle records immediately.
    pub fsync_interval: Duration,
    pub max_file_size: u64,
    pub on_failure: OnAuditFailure,
    /// Also print every record on standard output, for log shippers.
    pub stdout: bool,
    /// Rotated files whose newest record is older than this are deleted.
    pub max_age: Duration,
    /// The active file (counted at `max_file_size`) plus the rotated files
    /// stay under this; the oldest rotated files go first.
    pub max_total_size: u64,
}
