//! The file format, exactly as serde reads it. Private to this crate: the
//! rest of Gatehouse sees only `model`. Every key is spanned where a later
//! check may need to point at it.

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
}
