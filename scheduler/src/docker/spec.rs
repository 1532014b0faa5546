//! What a job's container is: the spec that varies per run, and the
//! create request with the hardening that never varies.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, ResourcesUlimits,
    RestartPolicy, RestartPolicyNameEnum,
};

use super::{DockerError, LABEL_JOB, LABEL_RUN, LABEL_SCHEDULER};

/// Where the container's `/tmp` tmpfs is mounted.
const TMP_PATH: &str = "/tmp";
/// The json-file driver keeps at most this many files per container.
const LOG_MAX_FILES: &str = "2";
/// Lower bound for the json-file `max-size`, so tiny caps still leave the
/// log driver room for its per-line JSON overhead.
pub(super) const LOG_MIN_FILE_BYTES: usize = 64 * 1024;

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// Everything that varies between job containers; the hardening does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Container name, e.g. `gatehouse-<job>-<run>`.
    pub name: String,
    pub image: String,
    /// The argv, run as is (never through a shell); empty runs the image's
    /// default entrypoint and command.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `uid:gid`, e.g. `65534:65534`.
    pub user: String,
    pub read_only_rootfs: bool,
    /// Capabilities added back after dropping ALL.
    pub cap_add: Vec<String>,
    /// Docker network mode; `none` by default.
    pub network: String,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    /// Size of the `/tmp` tmpfs (rw,noexec,nosuid, owned by the user).
    pub tmpfs_size_bytes: u64,
    /// Size of `/dev/shm` (Docker would give 64MiB).
    pub shm_size_bytes: i64,
    /// RLIMIT_NOFILE and RLIMIT_NPROC, soft = hard (Docker would pass the
    /// daemon's own through).
    pub nofile: i64,
    pub nproc: i64,
    pub mounts: Vec<BindMount>,
    /// Becomes label [`LABEL_JOB`].
    pub job: String,
    /// Becomes label [`LABEL_RUN`].
    pub run: i64,
    /// Becomes label [`LABEL_SCHEDULER`].
    pub instance: String,
    /// How much log the scheduler keeps; also bounds what Docker stores.
    pub log_cap_bytes: usize,
}

impl Default for ContainerSpec {
    fn default() -> Self {
        ContainerSpec {
            name: String::new(),
            image: String::new(),
            command: Vec::new(),
            env: Vec::new(),
            user: "65534:65534".to_owned(),
            read_only_rootfs: true,
            cap_add: Vec::new(),
            network: "none".to_owned(),
            memory_bytes: 256 * 1024 * 1024,
            nano_cpus: 1_000_000_000,
            pids_limit: 128,
            tmpfs_size_bytes: 16 * 1024 * 1024,
            shm_size_bytes: 16 * 1024 * 1024,
            nofile: 1024,
            nproc: 4096,
            mounts: Vec::new(),
            job: String::new(),
            run: 0,
            instance: String::new(),
            log_cap_bytes: 1024 * 1024,
        }
    }
}

/// Parses `uid[:gid]` when both parts are numeric (names cannot be
/// resolved on this side of the daemon).
pub(super) fn numeric_user(user: &str) -> (Option<u32>, Option<u32>) {
    let mut parts = user.splitn(2, ':');
    let uid = parts.next().and_then(|u| u.parse::<u32>().ok());
    let gid = parts.next().and_then(|g| g.parse::<u32>().ok());
    (uid, gid)
}

/// The json-file driver's `max-size`: twice the cap, because the driver
/// stores every line as a JSON object (~70 bytes of overhead per line, more
/// for escaped bytes), with a floor for the same reason. With two files
/// Docker then keeps between one and two of these.
pub(super) fn log_max_size(cap: usize) -> usize {
    cap.saturating_mul(2).max(LOG_MIN_FILE_BYTES)
}

/// Checks what `host_config`/`container_config` cannot express safely.
pub(super) fn validate(spec: &ContainerSpec) -> Result<(), DockerError> {
    let invalid = |msg: String| Err(DockerError::InvalidSpec(msg));
    if spec.image.is_empty() {
        return invalid("image is empty".into());
    }
    if spec.user.is_empty() {
        // An empty user would run as the image's user, usually root.
        return invalid("user is empty".into());
    }
    // Zero means "unlimited" to Docker; this runner never starts unlimited
    // containers.
    if spec.memory_bytes <= 0 || spec.nano_cpus <= 0 || spec.pids_limit <= 0 {
        return invalid("memory, CPU and pids limits must be positive".into());
    }
    if spec.shm_size_bytes <= 0 || spec.nofile <= 0 || spec.nproc <= 0 {
        return invalid("the /dev/shm size and the ulimits must be positive".into());
    }
    if spec.tmpfs_size_bytes == 0 {
        return invalid("the /tmp tmpfs size must be positive".into());
    }
    if spec.cap_add.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
        return invalid("cap_add must name capabilities, not ALL".into());
    }
    for (key, _) in &spec.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return invalid(format!("bad environment variable name {key:?}"));
        }
    }
    for m in &spec.mounts {
        if !m.source.is_absolute() || !m.target.starts_with('/') {
            return invalid(format!(
                "bind mount {} -> {} needs absolute paths",
                m.source.display(),
                m.target
            ));
        }
    }
    Ok(())
}

/// The HostConfig for `spec`, with the hardening that is always applied.
pub fn host_config(spec: &ContainerSpec) -> HostConfig {
    let mut tmpfs_opts = vec![
        "rw".to_owned(),
        "noexec".to_owned(),
        "nosuid".to_owned(),
        "nodev".to_owned(),
        format!("size={}", spec.tmpfs_size_bytes),
    ];
    // Owned by the job's user, so /tmp is writable without a world-writable
    // mode.
    let (uid, gid) = numeric_user(&spec.user);
    if let Some(uid) = uid {
        tmpfs_opts.push(format!("uid={uid}"));
    }
    if let Some(gid) = gid {
        tmpfs_opts.push(format!("gid={gid}"));
    }

    let mounts = spec
        .mounts
        .iter()
        .map(|m| Mount {
            // The Mount API (unlike Binds) fails if the source is missing
            // instead of creating it as root on the host.
            typ: Some(MountType::BIND),
            source: Some(m.source.to_string_lossy().into_owned()),
            target: Some(m.target.clone()),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect::<Vec<_>>();

    let log_config = HostConfigLogConfig {
        typ: Some("json-file".to_owned()),
        config: Some(HashMap::from([
            (
                "max-size".to_owned(),
                log_max_size(spec.log_cap_bytes).to_string(),
            ),
            ("max-file".to_owned(), LOG_MAX_FILES.to_owned()),
            // Compressed rotated files could not be bounded by max-size.
            ("compress".to_owned(), "false".to_owned()),
        ])),
    };

    HostConfig {
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".to_owned()]),
        cap_add: Some(spec.cap_add.clone()),
        // Engine 1.41 accepts both "no-new-privileges" and the
        // "no-new-privileges:true" form; the latter is unambiguous.
        security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
        readonly_rootfs: Some(spec.read_only_rootfs),
        network_mode: Some(spec.network.clone()),
        memory: Some(spec.memory_bytes),
        // Equal to memory: no swap on top of the limit, so a hog is
        // OOM-killed instead of swapping the host.
        memory_swap: Some(spec.memory_bytes),
        nano_cpus: Some(spec.nano_cpus),
        pids_limit: Some(spec.pids_limit),
        shm_size: Some(spec.shm_size_bytes),
        ulimits: Some(vec![
            ResourcesUlimits {
                name: Some("nofile".to_owned()),
                soft: Some(spec.nofile),
                hard: Some(spec.nofile),
            },
            ResourcesUlimits {
                name: Some("nproc".to_owned()),
                soft: Some(spec.nproc),
                hard: Some(spec.nproc),
            },
        ]),
        tmpfs: Some(HashMap::from([(TMP_PATH.to_owned(), tmpfs_opts.join(","))])),
        mounts: Some(mounts),
        // We read the exit code, OOM flag and logs before removing.
        auto_remove: Some(false),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        // A tiny init as PID 1 forwards SIGTERM (PID 1 ignores signals it has
        // no handler for, so `docker stop` would always end in SIGKILL) and
        // reaps zombies, which otherwise count against the pids limit.
        init: Some(true),
        ipc_mode: Some("private".to_owned()),
        oom_kill_disable: Some(false),
        log_config: Some(log_config),
        ..Default::default()
    }
}

/// The full create request for `spec`.
pub fn container_config(spec: &ContainerSpec) -> ContainerCreateBody {
    // The argv is split into entrypoint and args so it runs exactly as given:
    // an image ENTRYPOINT (possibly a shell) never gets to wrap it, and a
    // non-empty entrypoint stops Docker from appending the image's CMD.
    let (entrypoint, cmd) = match spec.command.split_first() {
        Some((program, args)) => (Some(vec![program.clone()]), Some(args.to_vec())),
        None => (None, None),
    };
    let env = spec
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>();
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint,
        cmd,
        env: Some(env),
        user: Some(spec.user.clone()),
        labels: Some(HashMap::from([
            (LABEL_JOB.to_owned(), spec.job.clone()),
            (LABEL_RUN.to_owned(), spec.run.to_string()),
            (LABEL_SCHEDULER.to_owned(), spec.instance.clone()),
        ])),
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        network_disabled: Some(spec.network == "none"),
        host_config: Some(host_config(spec)),
        ..Default::default()
    }
}
