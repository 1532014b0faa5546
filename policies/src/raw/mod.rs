//! The file format, exactly as serde reads it. Private to this crate: the
//! rest of Gatehouse sees only `model`. Every key is spanned where a later
//! check may need to point at it.

pub(crate) mod notify;
pub(crate) mod scheduler;

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub listen: Spanned<RawListen>,
    pub tls: Spanned<RawTls>,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub network: RawNetwork,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub roles: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
    pub session: Option<Spanned<RawSession>>,
    #[serde(default)]
    pub assertion: RawAssertion,
    #[serde(default)]
    pub oidc: Vec<Spanned<RawOidc>>,
    #[serde(default)]
    pub jwt: Vec<Spanned<RawJwt>>,
    #[serde(default, rename = "api_key")]
    pub api_keys: Vec<Spanned<RawApiKey>>,
    #[serde(default, rename = "basic_user")]
    pub basic_users: Vec<Spanned<RawBasicUser>>,
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    pub audit: Option<Spanned<RawAudit>>,
    pub shared_state: Option<Spanned<RawSharedState>>,
    pub scheduler: Option<Spanned<crate::raw::scheduler::RawScheduler>>,
    #[serde(default, rename = "job")]
    pub jobs: Vec<Spanned<crate::raw::scheduler::RawJob>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSharedState {
    pub redis: Spanned<String>,
    pub password: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub when_unavailable: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    pub client: Option<Spanned<String>>,
    pub identity: Option<Spanned<String>>,
    pub login: Option<Spanned<String>>,
    pub max_tracked_keys: Option<Spanned<i64>>,
    pub ipv6_prefix: Option<Spanned<i64>>,
    pub password_checks_per_address: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub path: Spanned<String>,
    pub fsync_interval: Option<Spanned<String>>,
    pub max_file_size: Option<Spanned<String>>,
    pub on_audit_failure: Option<Spanned<String>>,
    #[serde(default)]
    pub stdout: bool,
    pub max_age: Option<Spanned<String>>,
    pub max_total_size: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub https: Spanned<String>,
    pub http_redirect: Option<Spanned<String>>,
    pub admin: Option<Spanned<String>>,
    pub public_origin: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub min_version: Option<Spanned<String>>,
    #[serde(default, rename = "cert")]
    pub certs: Vec<Spanned<RawCert>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCert {
    pub hosts: Vec<Spanned<String>>,
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
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
    pub hsts: Option<Spanned<RawHeaderValue>>,
    pub csp: Option<Spanned<RawHeaderValue>>,
    pub x_content_type_options: Option<Spanned<RawHeaderValue>>,
    pub x_frame_options: Option<Spanned<RawHeaderValue>>,
    pub referrer_policy: Option<Spanned<RawHeaderValue>>,
    pub permissions_policy: Option<Spanned<RawHeaderValue>>,
    pub cross_origin_opener_policy: Option<Spanned<RawHeaderValue>>,
    pub cross_origin_resource_policy: Option<Spanned<RawHeaderValue>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    pub client_ip_header: Option<Spanned<String>>,
    #[serde(default)]
    pub proxy_protocol_from: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteNetwork {
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub max_header_bytes: Option<Spanned<String>>,
    pub max_body: Option<Spanned<String>>,
    pub client_read_timeout: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    pub shutdown_grace: Option<Spanned<String>>,
    pub upstream_connect_timeout: Option<Spanned<String>>,
    pub upstream_read_timeout: Option<Spanned<String>>,
    pub request_head_timeout: Option<Spanned<String>>,
    pub max_connections_per_address: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: Spanned<String>,
    pub host: Option<Spanned<String>>,
    pub path: Spanned<String>,
    pub upstream: Spanned<String>,
    pub upstream_sni: Option<Spanned<String>>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    pub connect_timeout: Option<Spanned<String>>,
    pub read_timeout: Option<Spanned<String>>,
    pub max_body: Option<Spanned<String>>,
    #[serde(default)]
    pub websocket: bool,
    #[serde(default)]
    pub network: RawRouteNetwork,
    #[serde(default)]
    pub headers: RawHeaders,
    pub public: Option<Spanned<bool>>,
    #[serde(default)]
    pub roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub permissions: Vec<Spanned<String>>,
    #[serde(default)]
    pub methods: BTreeMap<Spanned<String>, RawRequirement>,
    #[serde(default)]
    pub accept: Vec<Spanned<String>>,
    #[serde(default)]
    pub forward_authorization: bool,
    #[serde(default)]
    pub forward_session_cookie: bool,
    pub cors: Option<Spanned<RawCors>>,
    pub rate_limit: Option<Spanned<String>>,
    #[serde(default)]
    pub case_sensitive: bool,
    #[serde(default)]
    pub pass_headers: Vec<Spanned<String>>,
    #[serde(default)]
    pub extension_methods: Vec<Spanned<String>>,
    pub assertion_key: Option<Spanned<String>>,
    pub assertion_key_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequirement {
    #[serde(default)]
    pub roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub permissions: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCors {
    pub allow_origins: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_methods: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_headers: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_credentials: bool,
    pub max_age: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSession {
    #[serde(default)]
    pub keys: Vec<Spanned<String>>,
    #[serde(default)]
    pub keys_file: Vec<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub lifetime: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAssertion {
    pub key_file: Option<Spanned<String>>,
    #[serde(default)]
    pub publish_key_files: Vec<Spanned<String>>,
    pub lifetime: Option<Spanned<String>>,
}

/// How claims become roles; shared by OIDC providers and JWT issuers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClaimMapping {
    pub roles_claim: Option<Spanned<String>>,
    #[serde(default)]
    pub role_map: BTreeMap<String, Vec<Spanned<String>>>,
    #[serde(default)]
    pub default_roles: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOidc {
    pub name: Spanned<String>,
    pub issuer: Spanned<String>,
    pub client_id: Spanned<String>,
    pub client_secret: Option<Spanned<String>>,
    pub client_secret_file: Option<Spanned<String>>,
    #[serde(default)]
    pub scopes: Vec<Spanned<String>>,
    #[serde(default)]
    pub allowed_domains: Vec<Spanned<String>>,
    #[serde(default)]
    pub allowed_emails: Vec<Spanned<String>>,
    #[serde(default)]
    pub claims: RawClaimMapping,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwt {
    pub name: Spanned<String>,
    pub issuer: Spanned<String>,
    pub audience: Vec<Spanned<String>>,
    pub algorithms: Vec<Spanned<String>>,
    pub jwks_url: Option<Spanned<String>>,
    pub jwks_refetch_cooldown: Option<Spanned<String>>,
    #[serde(default)]
    pub public_keys: Vec<Spanned<String>>,
    pub hs256_secret: Option<Spanned<String>>,
    pub hs256_secret_file: Option<Spanned<String>>,
    pub leeway: Option<Spanned<String>>,
    #[serde(default)]
    pub claims: RawClaimMapping,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApiKey {
    pub name: Spanned<String>,
    pub sha256: Spanned<String>,
    pub roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    pub expires: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBasicUser {
    pub name: Spanned<String>,
    /// Exactly one of these two: the hash inline, or a file holding it
    /// (written by `gatehouse-gateway bootstrap`).
    pub password_hash: Option<Spanned<String>>,
    pub password_hash_file: Option<Spanned<String>>,
    pub roles: Vec<Spanned<String>>,
}
