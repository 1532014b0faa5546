//! `[scheduler.notify]`, its channels, and a job's `notify`, exactly as
//! serde reads them. Private to this crate, like `raw`.

use serde::Deserialize;

use crate::raw::S;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    #[serde(default)]
    pub to: Vec<S<String>>,
    pub on: Option<Vec<S<String>>>,
    #[serde(default)]
    pub allow_hosts: Vec<S<String>>,
    #[serde(default)]
    pub insecure_allow_networks: Vec<S<String>>,
    pub timeout: Option<S<String>>,
    pub max_response: Option<S<String>>,
    pub queue: Option<S<i64>>,
    pub retries: Option<S<i64>>,
    #[serde(default)]
    pub webhook: Vec<S<RawWebhook>>,
    #[serde(default)]
    pub slack: Vec<S<RawSlack>>,
    #[serde(default)]
    pub email: Vec<S<RawEmail>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub name: S<String>,
    pub url: S<String>,
    pub secret: Option<S<String>>,
    pub secret_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlack {
    pub name: S<String>,
    pub url: Option<S<String>>,
    pub url_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmail {
    pub name: S<String>,
    /// `host` or `host:port` (587 by default).
    pub server: S<String>,
    pub from: S<String>,
    pub to: Vec<S<String>>,
    pub username: Option<S<String>>,
    pub password: Option<S<String>>,
    pub password_file: Option<S<String>>,
    pub ca_file: Option<S<String>>,
}

/// `notify = { to = [...], on = [...] }` in a `[[job]]`; a missing key
/// takes the value of `[scheduler.notify]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJobNotify {
    pub to: Option<Vec<S<String>>>,
    pub on: Option<Vec<S<String>>>,
}
