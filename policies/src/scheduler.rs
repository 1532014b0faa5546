//! The validated `[scheduler]` section and `[[job]]`s: what the scheduler
//! may run, and how every container is locked down. Each loosening of a
//! hardened default is explicit in a job and bounded by `[scheduler]`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::cron::Schedule;
use crate::identity::RoleName;
use std::collections::BTreeSet;

/// The uid:gid containers run as unless a job says otherwise: `nobody`.
pub const DEFAULT_CONTAINER_USER: User = User {
    uid: 65534,
    gid: 65534,
};
/// A job's container limits unless it asks for more (within `[scheduler]`).
pub const DEFAULT_MEMORY: u64 = 256 * 1024 * 1024;
pub const DEFAULT_CPUS: f64 = 1.0;
pub const DEFAULT_PIDS: i64 = 128;
pub const DEFAULT_TMP_SIZE: u64 = 64 * 1024 * 1024;
pub const DEFAULT_SHM_SIZE: u64 = 16 * 1024 * 1024;
/// Enough for ordinary programs; Docker would pass the daemon's (often
/// 1M or more) through.
pub const DEFAULT_NOFILE: u64 = 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerSettings {
    /// The API and dashboard; reached only through the gateway.
    pub listen: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin: Option<SocketAddr>,
    pub database: Database,
    /// Where jobs run: the local Docker daemon, or a Docker Swarm.
    pub executor: Executor,
    pub max_concurrent_runs: usize,
    /// Runs waiting for a slot beyond this are refused (manual) or skipped.
    pub max_queued_runs: usize,
    pub allowed_images: Vec<ImagePattern>,
    pub allowed_mounts: Vec<AllowedMount>,
    /// Docker networks a job may join instead of `none`.
    pub allowed_networks: Vec<String>,
    /// Capabilities a job may add back after `cap_drop = ALL`.
    pub allowed_capabilities: Vec<String>,
    pub max_memory: u64,
    pub max_cpus: f64,
    pub max_pids: i64,
    /// Whether a job may set `read_only = false` (default: no).
    pub allow_writable_rootfs: bool,
    /// The largest `/tmp` tmpfs a job may ask for.
    pub max_tmp_size: u64,
    /// The largest `/dev/shm` a job may ask for.
    pub max_shm_size: u64,
    /// The only directories env `file` values are read from (default:
    /// none, so no job reads a file).
    pub secret_dirs: Vec<PathBuf>,
    /// Bytes of stdout/stderr kept per run (the last ones).
    pub log_cap: u64,
    /// Between SIGTERM and SIGKILL when a run is stopped.
    pub stop_grace: Duration,
    pub keep_runs: usize,
    pub keep_for: Duration,
    /// Where the gateway publishes the key its assertions are signed with.
    pub gateway_jwks: url::Url,
    /// How often the key set is fetched again (also on an unknown key id,
    /// at most every few seconds). Keys older than three of these, after
    /// failed refreshes, make `/readyz` fail.
    pub gateway_jwks_refresh: Duration,
    /// For an `https` `gateway_jwks`: the PEM CA that alone is trusted
    /// (default: the system's roots).
    pub gateway_jwks_ca: Option<PathBuf>,
    /// The gateway's issuer (its public origin) and the route names whose
    /// assertions this scheduler accepts.
    pub gateway_issuer: String,
    pub gateway_routes: Vec<String>,
    /// `[scheduler.notify]`: channels, defaults and the SSRF guard.
    pub notify: crate::notify::NotifySettings,
}

/// Where the run history is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Database {
    /// A SQLite file (the default: one scheduler, one machine).
    Sqlite(PathBuf),
    /// PostgreSQL, `postgres://user@host:port/db` (no password in it).
    Postgres {
        /// Without its `sslmode`, which `tls` says.
        url: String,
        password: Option<crate::secret::Secret>,
        tls: PostgresTls,
    },
}

/// How the scheduler reaches PostgreSQL: the URL's `sslmode`, of which
/// only the two that leave nothing to chance are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresTls {
    /// `sslmode=verify-full`: TLS, the certificate checked against `ca`
    /// (PEM) or the system's roots, and the host name against it.
    VerifyFull { ca: Option<PathBuf> },
    /// `sslmode=disable`: plaintext, the operator's stated choice.
    Disabled,
}

/// Where a job's container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Executor {
    /// One container per run on the daemon the scheduler talks to.
    #[default]
    Docker,
    /// One replicated-job service per run on the Swarm whose manager the
    /// scheduler talks to, under the same hardening.
    Swarm {
        /// Services cannot ask for no-new-privileges before Docker API
        /// 1.44; on older managers the scheduler runs jobs only when the
        /// policy says every node's daemon enforces it
        /// (`--no-new-privileges`).
        nodes_enforce_no_new_privileges: bool,
    },
}

/// Whether an upstream `host:port` reaches a scheduler listening on
/// `listen`, judged from the policy alone (no DNS: the answer must not
/// depend on where the policy is loaded). The port must be the same, and:
/// - a specific listen address is reached by that IP literal, and (when it
///   is a loopback address) by `localhost`;
/// - `0.0.0.0` is reached by any IPv4 loopback address and `localhost`;
///   `::` (dual-stack on Linux) by any loopback address and `localhost`.
///
/// Any other name (`scheduler`, a LAN address of this host) may or may not
/// be this listener, so it never counts; such routes are named in
/// `gateway_routes` instead. That is what keeps an assertion signed for an
/// unrelated upstream on the same port from being accepted here.
pub fn upstream_reaches(host: &str, port: u16, listen: SocketAddr) -> bool {
    if port != listen.port() {
        return false;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let localhost = host.eq_ignore_ascii_case("localhost");
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical());
    match listen.ip().to_canonical() {
        IpAddr::V4(any) if any.is_unspecified() => {
            localhost || ip.is_some_and(|ip| ip.is_ipv4() && ip.is_loopback())
        }
        IpAddr::V6(any) if any.is_unspecified() => {
            localhost || ip.is_some_and(|ip| ip.is_loopback())
        }
        exact => ip == Some(exact) || (localhost && exact.is_loopback()),
    }
}

/// An `allowed_images` entry: `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePattern(pub String);

impl ImagePattern {
    pub fn matches(&self, image: &str) -> bool {
        glob_match(self.0.as_bytes(), image.as_bytes())
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative wildcard matching with one backtrack point: linear enough
    // for image names and never recursive.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedMount {
    /// A host directory; a job may mount it or anything below it.
    pub source: PathBuf,
    pub writable: bool,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    /// `None`: the job runs only when triggered by hand.
    pub schedule: Option<Schedule>,
    pub image: String,
    /// Whether `image` names a digest (`@sha256:…`); unpinned images warn.
    pub image_pinned: bool,
    pub pull: PullPolicy,
    /// The argv; with `shell`, `["/bin/sh", "-c", script]`.
    pub command: Vec<String>,
    pub env: Vec<JobEnv>,
    pub timeout: Duration,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub retries: Retries,
    pub run_roles: BTreeSet<RoleName>,
    pub view_roles: BTreeSet<RoleName>,
    pub container: ContainerSettings,
    /// Who hears about this job's outcomes; empty `to` means nobody.
    pub notify: crate::notify::JobNotify,
}

impl Job {
    /// Whether any of `roles` may trigger or cancel this job.
    pub fn may_run(&self, roles: &BTreeSet<RoleName>) -> bool {
        roles.iter().any(|r| self.run_roles.contains(r))
    }

    /// Whether any of `roles` may see this job and its runs. Those who may
    /// run it may see it.
    pub fn may_view(&self, roles: &BTreeSet<RoleName>) -> bool {
        self.may_run(roles) || roles.iter().any(|r| self.view_roles.contains(r))
    }
}

/// Whether the scheduler may pull a job's image before a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// The image must already be present.
    Never,
    /// Pull only when the image is absent (the default).
    IfMissing,
    /// Pull every time; a failed pull is an error even if a copy exists.
    Always,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnv {
    pub name: String,
    pub value: EnvSource,
    /// Never logged, never shown by the API or dashboard.
    pub sensitive: bool,
    /// Where the variable is set in the policy, for problems found when
    /// its value is read.
    pub at: Location,
    /// For [`EnvSource::File`]: the `secret_dirs` entry holding it, which
    /// the file is opened beneath (symlinks may not lead out of it).
    pub secret_dir: Option<PathBuf>,
}

/// A 1-based line and column in the policy file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// Read when a run starts, so that rotating a secret file needs no reload
/// and the gateway (which reads the same policy) never needs the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    Literal(String),
    Env(String),
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// A run due while another runs is recorded as skipped.
    Forbid,
    Allow,
    /// The running one is cancelled and the new one starts.
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    None,
    /// After downtime, the most recent missed time runs once if it is no
    /// older than `starting_deadline`.
    Latest {
        starting_deadline: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    pub max: u32,
    /// Doubles after each failed attempt.
    pub backoff: Duration,
}

/// The hardened container a job runs in: the one model of it. The policy
/// builds it (bounded by `[scheduler]`), and the scheduler's Docker layer
/// turns it into the create request as it is, adding only what varies per
/// run (name, labels, env, mounts checked on disk).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSettings {
    pub user: User,
    pub read_only_rootfs: bool,
    /// Capabilities added back after dropping ALL.
    pub cap_add: Vec<String>,
    pub network: Network,
    pub memory: u64,
    pub cpus: f64,
    pub pids: i64,
    pub tmp_size: u64,
    /// Size of `/dev/shm` (Docker's default is 64MiB of memory).
    pub shm_size: u64,
    /// RLIMIT_NOFILE, soft and hard (Docker's default is the daemon's).
    pub nofile: u64,
    /// RLIMIT_NPROC, soft and hard. The kernel counts it per uid across the
    /// host, so it bounds all runs of one user together; the pids cgroup
    /// bounds each container.
    pub nproc: u64,
    pub mounts: Vec<Mount>,
}

impl ContainerSettings {
    /// What a job gets when its `container` table says nothing: nobody, a
    /// read-only root, no capabilities, no network, and the default limits.
    /// `nproc` depends on `[scheduler]`, so it is given.
    pub fn hardened(nproc: u64) -> ContainerSettings {
        ContainerSettings {
            user: DEFAULT_CONTAINER_USER,
            read_only_rootfs: true,
            cap_add: Vec::new(),
            network: Network::None,
            memory: DEFAULT_MEMORY,
            cpus: DEFAULT_CPUS,
            pids: DEFAULT_PIDS,
            tmp_size: DEFAULT_TMP_SIZE,
            shm_size: DEFAULT_SHM_SIZE,
            nofile: DEFAULT_NOFILE,
            nproc,
            mounts: Vec::new(),
        }
    }
}

/// A numeric `uid:gid`: names cannot be resolved on this side of the
/// Docker daemon, and root (0 in either part) is refused at policy load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

/// `uid:gid`, the form Docker takes.
impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// The network a job's container joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// Docker's `none`: only a loopback interface (the default).
    None,
    /// A Docker network named in `[scheduler] allowed_networks`.
    Named(String),
}

impl Network {
    /// Docker's network mode for it.
    pub fn mode(&self) -> &str {
        match self {
            Network::None => "none",
            Network::Named(name) => name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: String,
    pub writable: bool,
    /// The outermost `allowed_mounts` directory holding `source`: before
    /// each run the source is opened from here without following any
    /// symlink, since jobs may write below it.
    pub allowed_root: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_patterns_match_with_star_only() {
        let p = ImagePattern("registry.example.com/ops/*".into());
        assert!(p.matches("registry.example.com/ops/report@sha256:ab"));
        assert!(!p.matches("registry.example.com/opsx/report"));
        assert!(!p.matches("evil.com/registry.example.com/ops/x"));
        let p = ImagePattern("busybox@sha256:*".into());
        assert!(p.matches("busybox@sha256:0123"));
        assert!(!p.matches("busybox:latest"));
        assert!(ImagePattern("a*b*c".into()).matches("aXXbYYc"));
        assert!(!ImagePattern("a*b*c".into()).matches("aXXbYY"));
        assert!(ImagePattern("exact:1".into()).matches("exact:1"));
        assert!(!ImagePattern("exact:1".into()).matches("exact:10"));
    }

    #[test]
    fn an_upstream_reaches_the_scheduler_by_host_and_port() {
        let at = |text: &str| text.parse::<SocketAddr>().expect("address");
        let loopback = at("127.0.0.1:9100");
        assert!(upstream_reaches("127.0.0.1", 9100, loopback));
        assert!(upstream_reaches("localhost", 9100, loopback));
        assert!(upstream_reaches("LOCALHOST.", 9100, loopback));
        assert!(upstream_reaches("::ffff:127.0.0.1", 9100, loopback));
        assert!(!upstream_reaches("127.0.0.1", 9101, loopback));
        assert!(!upstream_reaches("127.0.0.2", 9100, loopback));
        assert!(!upstream_reaches("10.0.0.7", 9100, loopback));
        assert!(!upstream_reaches("other.internal", 9100, loopback));

        let lan = at("10.0.0.5:9100");
        assert!(upstream_reaches("10.0.0.5", 9100, lan));
        assert!(!upstream_reaches("localhost", 9100, lan));
        assert!(!upstream_reaches("127.0.0.1", 9100, lan));

        let any_v4 = at("0.0.0.0:9100");
        assert!(upstream_reaches("127.0.0.1", 9100, any_v4));
        assert!(upstream_reaches("127.1.2.3", 9100, any_v4));
        assert!(upstream_reaches("localhost", 9100, any_v4));
        assert!(!upstream_reaches("::1", 9100, any_v4));
        assert!(!upstream_reaches("10.0.0.5", 9100, any_v4));
        assert!(!upstream_reaches("scheduler", 9100, any_v4));

        let any = at("[::]:9100");
        assert!(upstream_reaches("::1", 9100, any));
        assert!(upstream_reaches("127.0.0.1", 9100, any));
        assert!(upstream_reaches("localhost", 9100, any));
        assert!(!upstream_reaches("scheduler", 9100, any));

        let v6 = at("[::1]:9100");
        assert!(upstream_reaches("::1", 9100, v6));
        assert!(upstream_reaches("localhost", 9100, v6));
        assert!(!upstream_reaches("127.0.0.1", 9100, v6));
    }
}
