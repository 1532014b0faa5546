//! `[scheduler.notify]`, its channels, and a job's `notify`, exactly as
//! serde reads them. Private to this crate, like `raw`.

use serde::Deserialize;

use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    #[serde(default)]
    pub to: Vec<Spanned<String>>,
    pub on: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub allow_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    pub insecure_allow_networks: Vec<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub max_response: Option<Spanned<String>>,
    pub queue: Option<Spanned<i64>>,
    pub retries: Option<Spanned<i64>>,
    #[serde(default)]
    pub webhook: Vec<Spanned<RawWebhook>>,
    #[serde(default)]
    pub slack: Vec<Spanned<RawSlack>>,
    #[serde(default)]
    pub email: Vec<Spanned<RawEmail>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    pub secret: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlack {
    pub name: Spanned<String>,
    pub url: Option<Spanned<String>>,
    pub url_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmail {
    pub name: Spanned<String>,
    /// `host` or `host:port` (587 by default).
    pub server: Spanned<String>,
    pub from: Spanned<String>,
    pub to: Vec<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
}

/// `notify = { to = [...], on = [...] }` in a `[[job]]`; a missing key
/// takes the value of `[scheduler.notify]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJobNotify {
    pub to: Option<Vec<Spanned<String>>>,
    pub on: Option<Vec<Spanned<String>>>,
}
