//! The `[scheduler]` section and `[[job]]` tables, exactly as serde reads
//! them. Private to this crate, like `raw`.

use std::collections::BTreeMap;

use serde::Deserialize;

use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScheduler {
    pub listen: Spanned<String>,
    pub admin: Option<Spanned<String>>,
    pub database: Spanned<String>,
    /// For a PostgreSQL `database`: its password, so the URL holds none.
    pub database_password: Option<Spanned<String>>,
    pub database_password_file: Option<Spanned<String>>,
    /// With `sslmode=verify-full`: the CA (PEM) PostgreSQL's certificate
    /// must chain to, instead of the system's roots.
    pub database_ca: Option<Spanned<String>>,
    pub executor: Option<Spanned<String>>,
    /// With `executor = "swarm"` on Docker before API 1.44: the operator's
    /// word that every node's daemon runs with `--no-new-privileges`.
    pub swarm_nodes_enforce_no_new_privileges: Option<Spanned<bool>>,
    pub max_concurrent_runs: Option<Spanned<i64>>,
    pub max_queued_runs: Option<Spanned<i64>>,
    #[serde(default)]
    pub allowed_images: Vec<Spanned<String>>,
    #[serde(default)]
    pub allowed_mounts: Vec<Spanned<RawAllowedMount>>,
    #[serde(default)]
    pub allowed_networks: Vec<Spanned<String>>,
    #[serde(default)]
    pub allowed_capabilities: Vec<Spanned<String>>,
    pub max_memory: Option<Spanned<String>>,
    pub max_cpus: Option<Spanned<f64>>,
    pub max_pids: Option<Spanned<i64>>,
    /// Allows jobs to set `read_only = false`.
    pub allow_writable_rootfs: Option<Spanned<bool>>,
    /// The largest `/tmp` a job may ask for.
    pub max_tmp_size: Option<Spanned<String>>,
    /// The largest `/dev/shm` a job may ask for.
    pub max_shm_size: Option<Spanned<String>>,
    /// Directories env `file` values may be read from.
    #[serde(default)]
    pub secret_dirs: Vec<Spanned<String>>,
    pub log_cap: Option<Spanned<String>>,
    pub stop_grace: Option<Spanned<String>>,
    pub keep_runs: Option<Spanned<i64>>,
    pub keep_for: Option<Spanned<String>>,
    pub gateway_jwks: Option<Spanned<String>>,
    pub gateway_jwks_refresh: Option<Spanned<String>>,
    pub gateway_jwks_ca: Option<Spanned<String>>,
    #[serde(default)]
    pub gateway_routes: Vec<Spanned<String>>,
    pub notify: Option<Spanned<crate::raw::notify::RawNotify>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAllowedMount {
    pub source: Spanned<String>,
    #[serde(default)]
    pub writable: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJob {
    pub name: Spanned<String>,
    pub schedule: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    pub image: Spanned<String>,
    pub pull: Option<Spanned<String>>,
    #[serde(default)]
    pub command: Vec<Spanned<String>>,
    #[serde(default)]
    pub shell: bool,
    #[serde(default)]
    pub env: BTreeMap<Spanned<String>, Spanned<RawEnvValue>>,
    pub timeout: Option<Spanned<String>>,
    pub overlap: Option<Spanned<String>>,
    pub catch_up: Option<Spanned<String>>,
    pub starting_deadline: Option<Spanned<String>>,
    pub retries: Option<Spanned<RawRetries>>,
    #[serde(default)]
    pub run_roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub view_roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub container: RawContainer,
    pub notify: Option<Spanned<crate::raw::notify::RawJobNotify>>,
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
    pub user: Option<Spanned<String>>,
    pub read_only: Option<Spanned<bool>>,
    #[serde(default)]
    pub cap_add: Vec<Spanned<String>>,
    pub network: Option<Spanned<String>>,
    pub memory: Option<Spanned<String>>,
    pub cpus: Option<Spanned<f64>>,
    pub pids: Option<Spanned<i64>>,
    pub tmp_size: Option<Spanned<String>>,
    pub shm_size: Option<Spanned<String>>,
    #[serde(default)]
    pub mounts: Vec<Spanned<RawMount>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMount {
    pub source: Spanned<String>,
    pub target: Spanned<String>,
    #[serde(default)]
    pub writable: bool,
}
