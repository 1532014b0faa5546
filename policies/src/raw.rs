//! The file format, exactly as serde reads it. Private to this crate: the
//! rest of Gatehouse sees only `model`. Every key is spanned where a later
//! check may need to point at it.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub listen: S<RawListen>,
    pub tls: S<RawTls>,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub network: RawNetwork,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default, rename = "route")]
    pub routes: Vec<S<RawRoute>>,
    #[serde(default)]
    pub roles: BTreeMap<S<String>, Vec<S<String>>>,
    pub session: Option<S<RawSession>>,
    #[serde(default)]
    pub assertion: RawAssertion,
    #[serde(default)]
    pub oidc: Vec<S<RawOidc>>,
    #[serde(default)]
    pub jwt: Vec<S<RawJwt>>,
    #[serde(default, rename = "api_key")]
    pub api_keys: Vec<S<RawApiKey>>,
    #[serde(default, rename = "basic_user")]
    pub basic_users: Vec<S<RawBasicUser>>,
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    pub audit: Option<S<RawAudit>>,
    pub scheduler: Option<S<crate::raw_scheduler::RawScheduler>>,
    #[serde(default, rename = "job")]
    pub jobs: Vec<S<crate::raw_scheduler::RawJob>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    pub client: Option<S<String>>,
    pub identity: Option<S<String>>,
    pub login: Option<S<String>>,
    pub max_tracked_keys: Option<S<i64>>,
    pub ipv6_prefix: Option<S<i64>>,
    pub password_checks_per_address: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub path: S<String>,
    pub fsync_interval: Option<S<String>>,
    pub max_file_size: Option<S<String>>,
    pub on_audit_failure: Option<S<String>>,
    #[serde(default)]
    pub stdout: bool,
    pub max_age: Option<S<String>>,
    pub max_total_size: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub https: S<String>,
    pub http_redirect: Option<S<String>>,
    pub admin: Option<S<String>>,
    pub public_origin: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub min_version: Option<S<String>>,
    #[serde(default, rename = "cert")]
    pub certs: Vec<S<RawCert>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCert {
    pub hosts: Vec<S<String>>,
    pub cert: S<String>,
    pub key: S<String>,
}

/// A header is either a value or `false` to turn it off.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawHeaderValue {
    Value(String),
    Enabled(bool),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaders {
    pub hsts: Option<S<RawHeaderValue>>,
    pub csp: Option<S<RawHeaderValue>>,
    pub x_content_type_options: Option<S<RawHeaderValue>>,
    pub x_frame_options: Option<S<RawHeaderValue>>,
    pub referrer_policy: Option<S<RawHeaderValue>>,
    pub permissions_policy: Option<S<RawHeaderValue>>,
    pub cross_origin_opener_policy: Option<S<RawHeaderValue>>,
    pub cross_origin_resource_policy: Option<S<RawHeaderValue>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    #[serde(default)]
    pub allow: Vec<S<String>>,
    #[serde(default)]
    pub deny: Vec<S<String>>,
    #[serde(default)]
    pub trusted_proxies: Vec<S<String>>,
    pub client_ip_header: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteNetwork {
    #[serde(default)]
    pub allow: Vec<S<String>>,
    #[serde(default)]
    pub deny: Vec<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub max_header_bytes: Option<S<String>>,
    pub max_body: Option<S<String>>,
    pub client_read_timeout: Option<S<String>>,
    pub max_connections: Option<S<i64>>,
    pub shutdown_grace: Option<S<String>>,
    pub upstream_connect_timeout: Option<S<String>>,
    pub upstream_read_timeout: Option<S<String>>,
    pub request_head_timeout: Option<S<String>>,
    pub max_connections_per_address: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: S<String>,
    pub host: Option<S<String>>,
    pub path: S<String>,
    pub upstream: S<String>,
    pub upstream_sni: Option<S<String>>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    pub connect_timeout: Option<S<String>>,
    pub read_timeout: Option<S<String>>,
    pub max_body: Option<S<String>>,
    #[serde(default)]
    pub websocket: bool,
    #[serde(default)]
    pub network: RawRouteNetwork,
    #[serde(default)]
    pub headers: RawHeaders,
    pub public: Option<S<bool>>,
    #[serde(default)]
    pub roles: Vec<S<String>>,
    #[serde(default)]
    pub permissions: Vec<S<String>>,
    #[serde(default)]
    pub methods: BTreeMap<S<String>, RawRequirement>,
    #[serde(default)]
    pub accept: Vec<S<String>>,
    #[serde(default)]
    pub forward_authorization: bool,
    #[serde(default)]
    pub forward_session_cookie: bool,
    pub cors: Option<S<RawCors>>,
    pub rate_limit: Option<S<String>>,
    #[serde(default)]
    pub case_sensitive: bool,
    #[serde(default)]
    pub pass_headers: Vec<S<String>>,
    #[serde(default)]
    pub extension_methods: Vec<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequirement {
    #[serde(default)]
    pub roles: Vec<S<String>>,
    #[serde(default)]
    pub permissions: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCors {
    pub allow_origins: Vec<S<String>>,
    #[serde(default)]
    pub allow_methods: Vec<S<String>>,
    #[serde(default)]
    pub allow_headers: Vec<S<String>>,
    #[serde(default)]
    pub allow_credentials: bool,
    pub max_age: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSession {
    #[serde(default)]
    pub keys: Vec<S<String>>,
    #[serde(default)]
    pub keys_file: Vec<S<String>>,
    pub idle_timeout: Option<S<String>>,
    pub lifetime: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAssertion {
    pub key_file: Option<S<String>>,
    pub lifetime: Option<S<String>>,
}

/// How claims become roles; shared by OIDC providers and JWT issuers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClaimMapping {
    pub roles_claim: Option<S<String>>,
    #[serde(default)]
    pub role_map: BTreeMap<String, Vec<S<String>>>,
    #[serde(default)]
    pub default_roles: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOidc {
    pub name: S<String>,
    pub issuer: S<String>,
    pub client_id: S<String>,
    pub client_secret: Option<S<String>>,
    pub client_secret_file: Option<S<String>>,
    #[serde(default)]
    pub scopes: Vec<S<String>>,
    #[serde(default)]
    pub allowed_domains: Vec<S<String>>,
    #[serde(default)]
    pub allowed_emails: Vec<S<String>>,
    #[serde(default)]
    pub claims: RawClaimMapping,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwt {
    pub name: S<String>,
    pub issuer: S<String>,
    pub audience: Vec<S<String>>,
    pub algorithms: Vec<S<String>>,
    pub jwks_url: Option<S<String>>,
    pub jwks_refetch_cooldown: Option<S<String>>,
    #[serde(default)]
    pub public_keys: Vec<S<String>>,
    pub hs256_secret: Option<S<String>>,
    pub hs256_secret_file: Option<S<String>>,
    pub leeway: Option<S<String>>,
    #[serde(default)]
    pub claims: RawClaimMapping,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApiKey {
    pub name: S<String>,
    pub sha256: S<String>,
    pub roles: Vec<S<String>>,
    #[serde(default)]
    pub allow: Vec<S<String>>,
    pub expires: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBasicUser {
    pub name: S<String>,
    /// Exactly one of these two: the hash inline, or a file holding it
    /// (written by `gatehouse-gateway bootstrap`).
    pub password_hash: Option<S<String>>,
    pub password_hash_file: Option<S<String>>,
    pub roles: Vec<S<String>>,
}
