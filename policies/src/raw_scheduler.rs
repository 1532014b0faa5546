//! The `[scheduler]` section and `[[job]]` tables, exactly as serde reads
//! them. Private to this crate, like `raw`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::raw::S;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScheduler {
    pub listen: S<String>,
    pub admin: Option<S<String>>,
    pub database: S<String>,
    pub max_concurrent_runs: Option<S<i64>>,
    pub max_queued_runs: Option<S<i64>>,
    #[serde(default)]
    pub allowed_images: Vec<S<String>>,
    #[serde(default)]
    pub allowed_mounts: Vec<S<RawAllowedMount>>,
    #[serde(default)]
    pub allowed_networks: Vec<S<String>>,
    #[serde(default)]
    pub allowed_capabilities: Vec<S<String>>,
    pub max_memory: Option<S<String>>,
    pub max_cpus: Option<S<f64>>,
    pub max_pids: Option<S<i64>>,
    /// Allows jobs to set `read_only = false`.
    pub allow_writable_rootfs: Option<S<bool>>,
    /// The largest `/tmp` a job may ask for.
    pub max_tmp_size: Option<S<String>>,
    /// The largest `/dev/shm` a job may ask for.
    pub max_shm_size: Option<S<String>>,
    /// Directories env `file` values may be read from.
    #[serde(default)]
    pub secret_dirs: Vec<S<String>>,
    pub log_cap: Option<S<String>>,
    pub stop_grace: Option<S<String>>,
    pub keep_runs: Option<S<i64>>,
    pub keep_for: Option<S<String>>,
    pub gateway_jwks: Option<S<String>>,
    pub gateway_jwks_refresh: Option<S<String>>,
    pub gateway_jwks_ca: Option<S<String>>,
    #[serde(default)]
    pub gateway_routes: Vec<S<String>>,
    pub notify: Option<S<crate::raw_notify::RawNotify>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAllowedMount {
    pub source: S<String>,
    #[serde(default)]
    pub writable: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJob {
    pub name: S<String>,
    pub schedule: Option<S<String>>,
    pub timezone: Option<S<String>>,
    pub image: S<String>,
    pub pull: Option<S<String>>,
    #[serde(default)]
    pub command: Vec<S<String>>,
    #[serde(default)]
    pub shell: bool,
    #[serde(default)]
    pub env: BTreeMap<S<String>, S<RawEnvValue>>,
    pub timeout: Option<S<String>>,
    pub overlap: Option<S<String>>,
    pub catch_up: Option<S<String>>,
    pub starting_deadline: Option<S<String>>,
    pub retries: Option<S<RawRetries>>,
    #[serde(default)]
    pub run_roles: Vec<S<String>>,
    #[serde(default)]
    pub view_roles: Vec<S<String>>,
    #[serde(default)]
    pub container: RawContainer,
    pub notify: Option<S<crate::raw_notify::RawJobNotify>>,
}

/// `NAME = "value"`, or `NAME = { value = "...", file = "...", sensitive = true }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawEnvValue {
    Plain(String),
    Table(RawEnvTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEnvTable {
    pub value: Option<String>,
    pub file: Option<String>,
    #[serde(default)]
    pub sensitive: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetries {
    pub max: i64,
    pub backoff: Option<String>,
}

/// Loosenings of the hardened container defaults, each checked against
/// what `[scheduler]` allows.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawContainer {
    pub user: Option<S<String>>,
    pub read_only: Option<S<bool>>,
    #[serde(default)]
    pub cap_add: Vec<S<String>>,
    pub network: Option<S<String>>,
    pub memory: Option<S<String>>,
    pub cpus: Option<S<f64>>,
    pub pids: Option<S<i64>>,
    pub tmp_size: Option<S<String>>,
    pub shm_size: Option<S<String>>,
    #[serde(default)]
    pub mounts: Vec<S<RawMount>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMount {
    pub source: S<String>,
    pub target: S<String>,
    #[serde(default)]
    pub writable: bool,
}
