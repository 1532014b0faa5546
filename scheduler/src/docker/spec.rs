//! What a job's container is: the policy's `ContainerSettings` plus what
//! varies per run, and the create request with the hardening that never
//! varies.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, ResourcesUlimits,
    RestartPolicy, RestartPolicyNameEnum,
};

use gatehouse_policy::scheduler::{ContainerSettings, Network, User};

use super::{DockerError, LABEL_JOB, LABEL_RUN, LABEL_SCHEDULER};

/// Where the container's `/tmp` tmpfs is mounted.
pub(super) const TMP_PATH: &str = "/tmp";
/// The json-file driver keeps at most this many files per container.
pub(super) const LOG_MAX_FILES: &str = "2";
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

/// One run's container: the job's [`ContainerSettings`] as the policy
/// validated them (user, root filesystem, capabilities, network, limits),
/// plus what varies per run. The hardening does not vary.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec<'a> {
    /// Container name, e.g. `gatehouse-<instance>-<job>-<run>`.
    pub name: String,
    pub image: String,
    /// The argv, run as is (never through a shell); empty runs the image's
    /// default entrypoint and command.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Borrowed from the job; its `mounts` are not used, see `mounts`.
    pub settings: Cow<'a, ContainerSettings>,
    /// The job's mounts as checked on disk right before this run
    /// ([`super::mounts::confine`]).
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

/// The settings' limits in the units and integer types the Engine API
/// takes. A value that does not fit comes out as zero or negative, which
/// [`validate`] refuses.
pub(super) struct Limits {
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids: i64,
    pub tmpfs_bytes: u64,
    pub shm_bytes: i64,
    pub nofile: i64,
    pub nproc: i64,
}

impl Limits {
    pub(super) fn of(settings: &ContainerSettings) -> Limits {
        Limits {
            memory_bytes: settings.memory as i64,
            nano_cpus: (settings.cpus * 1e9) as i64,
            pids: settings.pids,
            tmpfs_bytes: settings.tmp_size,
            shm_bytes: settings.shm_size as i64,
            nofile: settings.nofile as i64,
            nproc: settings.nproc as i64,
        }
    }
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
    // Zero means "unlimited" to Docker; this runner never starts unlimited
    // containers.
    let limits = Limits::of(&spec.settings);
    if limits.memory_bytes <= 0 || limits.nano_cpus <= 0 || limits.pids <= 0 {
        return invalid("memory, CPU and pids limits must be positive".into());
    }
    if limits.shm_bytes <= 0 || limits.nofile <= 0 || limits.nproc <= 0 {
        return invalid("the /dev/shm size and the ulimits must be positive".into());
    }
    if limits.tmpfs_bytes == 0 {
        return invalid("the /tmp tmpfs size must be positive".into());
    }
    let cap_add = &spec.settings.cap_add;
    if cap_add.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
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

/// The `/tmp` tmpfs: rw but noexec, nosuid, nodev, size-limited, and owned
/// by the job's user, so it is writable without a world-writable mode.
fn tmpfs_options(tmpfs_bytes: u64, user: User) -> String {
    [
        "rw".to_owned(),
        "noexec".to_owned(),
        "nosuid".to_owned(),
        "nodev".to_owned(),
        format!("size={tmpfs_bytes}"),
        format!("uid={}", user.uid),
        format!("gid={}", user.gid),
    ]
    .join(",")
}

pub(super) fn bind_mounts(mounts: &[BindMount]) -> Vec<Mount> {
    mounts
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
        .collect()
}

fn log_config(log_cap_bytes: usize) -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("json-file".to_owned()),
        config: Some(HashMap::from([
            (
                "max-size".to_owned(),
                log_max_size(log_cap_bytes).to_string(),
            ),
            ("max-file".to_owned(), LOG_MAX_FILES.to_owned()),
            // Compressed rotated files could not be bounded by max-size.
            ("compress".to_owned(), "false".to_owned()),
        ])),
    }
}

/// RLIMIT_NOFILE and RLIMIT_NPROC, soft = hard (Docker would pass the
/// daemon's own through).
pub(super) fn ulimits(limits: &Limits) -> Vec<ResourcesUlimits> {
    vec![
        ResourcesUlimits {
            name: Some("nofile".to_owned()),
            soft: Some(limits.nofile),
            hard: Some(limits.nofile),
        },
        ResourcesUlimits {
            name: Some("nproc".to_owned()),
            soft: Some(limits.nproc),
            hard: Some(limits.nproc),
        },
    ]
}

/// The HostConfig for `spec`, with the hardening that is always applied.
pub fn host_config(spec: &ContainerSpec) -> HostConfig {
    let settings = &spec.settings;
    let limits = Limits::of(settings);
    HostConfig {
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".to_owned()]),
        cap_add: Some(settings.cap_add.clone()),
        // Engine 1.41 accepts both "no-new-privileges" and the
        // "no-new-privileges:true" form; the latter is unambiguous.
        security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
        readonly_rootfs: Some(settings.read_only_rootfs),
        network_mode: Some(settings.network.mode().to_owned()),
        memory: Some(limits.memory_bytes),
        // Equal to memory: no swap on top of the limit, so a hog is
        // OOM-killed instead of swapping the host.
        memory_swap: Some(limits.memory_bytes),
        nano_cpus: Some(limits.nano_cpus),
        pids_limit: Some(limits.pids),
        // Docker would give 64MiB.
        shm_size: Some(limits.shm_bytes),
        ulimits: Some(ulimits(&limits)),
        tmpfs: Some(HashMap::from([(
            TMP_PATH.to_owned(),
            tmpfs_options(limits.tmpfs_bytes, settings.user),
        )])),
        mounts: Some(bind_mounts(&spec.mounts)),
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
        log_config: Some(log_config(spec.log_cap_bytes)),
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
        user: Some(spec.settings.user.to_string()),
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
        network_disabled: Some(spec.settings.network == Network::None),
        host_config: Some(host_config(spec)),
        ..Default::default()
    }
}
