//! The Docker engine: runs one job as one hardened container through the
//! Docker Engine API (bollard).
//!
//! Every container we create is locked down the same way, whatever the job
//! asks for: no privileges, all capabilities dropped (only `cap_add` comes
//! back), `no-new-privileges`, a memory limit without swap, a CPU and pids
//! limit, a size-limited `noexec` `/tmp`, and a capped json-file log. The
//! spec only chooses the numbers. `host_config` and `container_config` are
//! pure so the exact request we send is unit-tested.
//!
//! Containers carry the labels [`LABEL_JOB`] and [`LABEL_RUN`] so a
//! restarted scheduler can find what it started ([`Engine::list_ours`]).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, HostConfig, HostConfigLogConfig, Mount,
    MountType, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;

/// Label holding the job name of a container we created.
pub const LABEL_JOB: &str = "gatehouse.job";
/// Label holding the run number of a container we created.
pub const LABEL_RUN: &str = "gatehouse.run";
/// Which scheduler (which run history) owns the container, so that two
/// schedulers sharing a daemon never adopt or remove each other's.
pub const LABEL_SCHEDULER: &str = "gatehouse.scheduler";

/// Where the container's `/tmp` tmpfs is mounted.
const TMP_PATH: &str = "/tmp";
/// The json-file driver keeps at most this many files per container.
const LOG_MAX_FILES: &str = "2";
/// Lower bound for the json-file `max-size`, so tiny caps still leave the
/// log driver room for its per-line JSON overhead.
const LOG_MIN_FILE_BYTES: usize = 64 * 1024;
/// Added to `docker stop`'s grace period for the HTTP request timeout: the
/// daemon answers only once the container is down.
const STOP_REQUEST_SLACK: Duration = Duration::from_secs(30);

/// Errors from the Docker engine, worded for the person running the job.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The daemon could not be reached (socket missing, refused, reset, or
    /// it stopped answering).
    #[error("Docker daemon unreachable: {0}")]
    Unreachable(#[source] BollardError),
    /// `DOCKER_HOST` names something other than a unix socket.
    #[error("unsupported DOCKER_HOST {0:?}: only unix:// sockets are supported")]
    UnsupportedHost(String),
    #[error("image {image} is not present locally and the pull policy forbids pulling it")]
    ImageMissing { image: String },
    #[error("pulling image {image} failed: {reason}")]
    PullFailed { image: String, reason: String },
    #[error("container {id} does not exist")]
    NotFound { id: String },
    #[error("a container named {name} already exists")]
    NameInUse { name: String },
    /// The spec would weaken the hardening or cannot be expressed.
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    /// The daemon answered in a way we did not expect.
    #[error("unexpected answer from Docker: {0}")]
    Protocol(String),
    #[error("Docker API error: {0}")]
    Api(#[source] BollardError),
}

impl DockerError {
    /// True when the daemon itself could not be talked to, so the operation
    /// may succeed after reconnecting; false for answers the daemon gave.
    pub fn is_connection_error(&self) -> bool {
        matches!(self, DockerError::Unreachable(_))
    }

    /// Sorts a bollard error into "daemon unreachable" or "API error".
    fn from_bollard(err: BollardError) -> Self {
        if is_transport_error(&err) {
            DockerError::Unreachable(err)
        } else {
            DockerError::Api(err)
        }
    }

    /// Like [`Self::from_bollard`], but a 404 means the container `id` is gone.
    fn for_container(err: BollardError, id: &str) -> Self {
        if status_code(&err) == Some(404) {
            DockerError::NotFound { id: id.to_owned() }
        } else {
            DockerError::from_bollard(err)
        }
    }
}

/// Errors that mean we never got an HTTP answer from the daemon.
fn is_transport_error(err: &BollardError) -> bool {
    matches!(
        err,
        BollardError::HyperLegacyError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::SocketNotFoundError(_)
            | BollardError::RequestTimeoutError
    )
}

fn status_code(err: &BollardError) -> Option<u16> {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

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
            mounts: Vec::new(),
            job: String::new(),
            run: 0,
            instance: String::new(),
            log_cap_bytes: 1024 * 1024,
        }
    }
}

/// Whether [`Engine::ensure_image`] may pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// The image must already be present.
    Never,
    /// Pull only when the image is absent.
    IfMissing,
    /// Pull every time; a failed pull is an error even if a copy exists.
    Always,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub exit_code: i64,
    pub oom_killed: bool,
}

/// The tail of a container's combined stdout and stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedLogs {
    pub bytes: Vec<u8>,
    /// More output existed than `bytes` holds.
    pub truncated: bool,
}

/// A container carrying our labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurContainer {
    pub id: String,
    pub job: String,
    pub run: i64,
    pub running: bool,
}

/// Parses `uid[:gid]` when both parts are numeric (names cannot be
/// resolved on this side of the daemon).
fn numeric_user(user: &str) -> (Option<u32>, Option<u32>) {
    let mut parts = user.splitn(2, ':');
    let uid = parts.next().and_then(|u| u.parse::<u32>().ok());
    let gid = parts.next().and_then(|g| g.parse::<u32>().ok());
    (uid, gid)
}

/// The json-file driver's `max-size`: twice the cap, because the driver
/// stores every line as a JSON object (~70 bytes of overhead per line, more
/// for escaped bytes), with a floor for the same reason. With two files
/// Docker then keeps between one and two of these.
fn log_max_size(cap: usize) -> usize {
    cap.saturating_mul(2).max(LOG_MIN_FILE_BYTES)
}

/// Checks what `host_config`/`container_config` cannot express safely.
fn validate(spec: &ContainerSpec) -> Result<(), DockerError> {
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

/// Keeps the last `cap` bytes of a stream in bounded memory.
struct TailBuffer {
    buf: VecDeque<u8>,
    cap: usize,
    truncated: bool,
}

impl TailBuffer {
    fn new(cap: usize) -> Self {
        TailBuffer {
            buf: VecDeque::with_capacity(cap.min(64 * 1024)),
            cap,
            truncated: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        // Only the last `cap` bytes of this chunk can survive anyway.
        let keep = &bytes[bytes.len().saturating_sub(self.cap)..];
        if keep.len() < bytes.len() {
            self.truncated = true;
        }
        let overflow = (self.buf.len() + keep.len()).saturating_sub(self.cap);
        if overflow > 0 {
            self.buf.drain(..overflow);
            self.truncated = true;
        }
        self.buf.extend(keep);
    }

    fn finish(self) -> CapturedLogs {
        CapturedLogs {
            bytes: self.buf.into(),
            truncated: self.truncated,
        }
    }
}

/// A connection to the Docker daemon.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    /// Connects to `DOCKER_HOST` (a `unix://` socket) or the default socket,
    /// negotiates the API version and pings.
    pub async fn connect() -> Result<Engine, DockerError> {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.is_empty() => Engine::connect_to(&host).await,
            _ => Engine::connect_to("unix:///var/run/docker.sock").await,
        }
    }

    /// Connects to `host`, a `unix://` URL or a socket path.
    pub async fn connect_to(host: &str) -> Result<Engine, DockerError> {
        let path = match host.strip_prefix("unix://") {
            Some(path) => path,
            None if host.starts_with('/') => host,
            None => return Err(DockerError::UnsupportedHost(host.to_owned())),
        };
        let docker = Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
            .map_err(DockerError::from_bollard)?
            // bollard 0.21 speaks API 1.53 by default; older engines (20.10
            // is 1.41) reject that, so settle on the daemon's version first.
            .negotiate_version()
            .await
            .map_err(DockerError::from_bollard)?;
        let engine = Engine { docker };
        engine.ping().await?;
        Ok(engine)
    }

    /// The same connection with another per-request timeout. The timeout
    /// covers a request until the response headers arrive, not streamed
    /// bodies (logs, wait, pull).
    pub fn with_timeout(self, timeout: Duration) -> Engine {
        Engine {
            docker: self.docker.with_timeout(timeout),
        }
    }

    /// The negotiated API version, e.g. "1.41".
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    pub async fn ping(&self) -> Result<(), DockerError> {
        self.docker
            .ping()
            .await
            .map(drop)
            .map_err(DockerError::from_bollard)
    }

    /// Makes sure `image` is present, pulling according to `pull`.
    pub async fn ensure_image(&self, image: &str, pull: PullPolicy) -> Result<(), DockerError> {
        let present = match pull {
            PullPolicy::Always => false,
            PullPolicy::Never | PullPolicy::IfMissing => self.image_present(image).await?,
        };
        match (present, pull) {
            (true, _) => Ok(()),
            (false, PullPolicy::Never) => Err(DockerError::ImageMissing {
                image: image.to_owned(),
            }),
            (false, _) => self.pull(image).await,
        }
    }

    async fn image_present(&self, image: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(err) if status_code(&err) == Some(404) => Ok(false),
            Err(err) => Err(DockerError::from_bollard(err)),
        }
    }

    async fn pull(&self, image: &str) -> Result<(), DockerError> {
        let options = CreateImageOptions {
            from_image: Some(image.to_owned()),
            ..Default::default()
        };
        let mut progress = self.docker.create_image(Some(options), None, None);
        // The pull runs while the stream is read; errors arrive either as the
        // HTTP status or as an error message in the middle of the stream.
        while let Some(item) = progress.next().await {
            match item {
                Ok(_) => {}
                Err(err) if is_transport_error(&err) => return Err(DockerError::Unreachable(err)),
                Err(err) => {
                    return Err(DockerError::PullFailed {
                        image: image.to_owned(),
                        reason: server_message(&err),
                    })
                }
            }
        }
        Ok(())
    }

    /// Creates (does not start) the hardened container for `spec`.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        validate(spec)?;
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), container_config(spec))
            .await
            .map_err(|err| match status_code(&err) {
                Some(404) => DockerError::ImageMissing {
                    image: spec.image.clone(),
                },
                Some(409) => DockerError::NameInUse {
                    name: spec.name.clone(),
                },
                Some(400) => DockerError::InvalidSpec(server_message(&err)),
                _ => DockerError::from_bollard(err),
            })?;
        for warning in &created.warnings {
            tracing::warn!(container = %created.id, "Docker: {warning}");
        }
        Ok(created.id)
    }

    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|err| DockerError::for_container(err, id))
    }

    /// Waits for the container to stop and returns how it ended.
    pub async fn wait(&self, id: &str) -> Result<Exit, DockerError> {
        let options = WaitContainerOptions {
            condition: "not-running".to_owned(),
        };
        let mut stream = self.docker.wait_container(id, Some(options));
        let exit_code = match stream.next().await {
            Some(Ok(response)) => response.status_code,
            // bollard reports a non-zero exit status as an error; for us it
            // is the outcome.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
            Some(Err(err)) => return Err(DockerError::for_container(err, id)),
            None => {
                return Err(DockerError::Protocol(format!(
                    "wait for container {id} ended without a status"
                )))
            }
        };
        // The wait response has no OOM flag; the container's state does.
        match self.inspect_exit(id).await {
            Ok(Some(exit)) => Ok(exit),
            // Removed by someone else since: the wait's status is all we have.
            Ok(None) | Err(DockerError::NotFound { .. }) => Ok(Exit {
                exit_code,
                oom_killed: false,
            }),
            Err(err) => Err(err),
        }
    }

    /// How the container ended, or `None` while it has not (created,
    /// running, paused, restarting).
    pub async fn inspect_exit(&self, id: &str) -> Result<Option<Exit>, DockerError> {
        let inspect = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|err| DockerError::for_container(err, id))?;
        let state = inspect.state.ok_or_else(|| {
            DockerError::Protocol(format!("container {id} was inspected without a state"))
        })?;
        let ended = matches!(
            state.status,
            Some(ContainerStateStatusEnum::EXITED) | Some(ContainerStateStatusEnum::DEAD)
        );
        if !ended {
            return Ok(None);
        }
        Ok(Some(Exit {
            exit_code: state.exit_code.unwrap_or(-1),
            oom_killed: state.oom_killed.unwrap_or(false),
        }))
    }

    /// `docker stop`: SIGTERM, then SIGKILL after `grace`. Stopping a stopped
    /// container is fine.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        // Whole seconds only; round up so the job gets at least `grace`.
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptions {
            t: Some(i32::try_from(secs).unwrap_or(i32::MAX)),
            signal: None,
        };
        // The daemon answers only after the container is down, which can
        // exceed the default request timeout for long grace periods.
        let docker = self
            .docker
            .clone()
            .with_timeout(Duration::from_secs(secs) + STOP_REQUEST_SLACK);
        // 304 (already stopped) counts as success in bollard.
        docker
            .stop_container(id, Some(options))
            .await
            .map_err(|err| DockerError::for_container(err, id))
    }

    /// The last `cap` bytes of stdout and stderr, interleaved as written.
    pub async fn logs(&self, id: &str, cap: usize) -> Result<CapturedLogs, DockerError> {
        let options = LogsOptions {
            follow: false,
            stdout: true,
            stderr: true,
            timestamps: false,
            tail: "all".to_owned(),
            ..Default::default()
        };
        let mut stream = self.docker.logs(id, Some(options));
        let mut tail = TailBuffer::new(cap);
        while let Some(item) = stream.next().await {
            let output = item.map_err(|err| DockerError::for_container(err, id))?;
            tail.push(output.as_ref());
        }
        Ok(tail.finish())
    }

    /// Force-removes the container and its anonymous volumes; a missing
    /// container is fine.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if status_code(&err) == Some(404) => Ok(()),
            // Removal already in progress (e.g. a concurrent remove).
            Err(err)
                if status_code(&err) == Some(409)
                    && server_message(&err).contains("already in progress") =>
            {
                Ok(())
            }
            Err(err) => Err(DockerError::from_bollard(err)),
        }
    }

    /// Every container, running or not, that carries our labels and this
    /// scheduler `instance`.
    pub async fn list_ours(&self, instance: &str) -> Result<Vec<OurContainer>, DockerError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![
                    LABEL_JOB.to_owned(),
                    LABEL_RUN.to_owned(),
                    format!("{LABEL_SCHEDULER}={instance}"),
                ],
            )])),
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(DockerError::from_bollard)?;
        let mut ours = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let labels = summary.labels.unwrap_or_default();
            let (Some(id), Some(job), Some(run)) = (
                summary.id,
                labels.get(LABEL_JOB),
                labels.get(LABEL_RUN).and_then(|r| r.parse::<i64>().ok()),
            ) else {
                // Someone else's container that borrowed our label names.
                continue;
            };
            let running = matches!(
                summary.state,
                Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                    | Some(bollard::models::ContainerSummaryStateEnum::RESTARTING)
                    | Some(bollard::models::ContainerSummaryStateEnum::PAUSED)
            );
            ours.push(OurContainer {
                id,
                job: job.clone(),
                run,
                running,
            });
        }
        Ok(ours)
    }
}

/// The daemon's own words for an error, without bollard's prefix.
fn server_message(err: &BollardError) -> String {
    match err {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        BollardError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "gatehouse-job-7".into(),
            image: "img:1".into(),
            command: vec!["/bin/echo".into(), "a b".into(), "$HOME".into()],
            env: vec![("A".into(), "1=2".into())],
            job: "job".into(),
            run: 7,
            log_cap_bytes: 100_000,
            mounts: vec![BindMount {
                source: "/srv/in".into(),
                target: "/in".into(),
                read_only: true,
            }],
            cap_add: vec!["NET_BIND_SERVICE".into()],
            ..ContainerSpec::default()
        }
    }

    #[test]
    fn host_config_is_hardened() {
        let hc = host_config(&spec());
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(hc.cap_add, Some(vec!["NET_BIND_SERVICE".to_owned()]));
        assert_eq!(
            hc.security_opt,
            Some(vec!["no-new-privileges:true".to_owned()])
        );
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(hc.memory, Some(256 * 1024 * 1024));
        assert_eq!(hc.memory_swap, hc.memory);
        assert_eq!(hc.nano_cpus, Some(1_000_000_000));
        assert_eq!(hc.pids_limit, Some(128));
        assert_eq!(hc.auto_remove, Some(false));
        assert_eq!(hc.init, Some(true));
        assert_eq!(
            hc.restart_policy.and_then(|r| r.name),
            Some(RestartPolicyNameEnum::NO)
        );
        let tmpfs = hc.tmpfs.expect("tmpfs");
        assert_eq!(
            tmpfs.get("/tmp").map(String::as_str),
            Some("rw,noexec,nosuid,nodev,size=16777216,uid=65534,gid=65534")
        );
    }

    #[test]
    fn binds_use_the_mount_api_with_read_only_flag() {
        let mounts = host_config(&spec()).mounts.expect("mounts");
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].source.as_deref(), Some("/srv/in"));
        assert_eq!(mounts[0].target.as_deref(), Some("/in"));
        assert_eq!(mounts[0].read_only, Some(true));
    }

    #[test]
    fn log_driver_is_capped_json_file() {
        let log = host_config(&spec()).log_config.expect("log config");
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        let config = log.config.expect("log options");
        assert_eq!(config.get("max-size").map(String::as_str), Some("200000"));
        assert_eq!(config.get("max-file").map(String::as_str), Some("2"));
        // Tiny caps get a floor for the driver's JSON overhead.
        assert_eq!(log_max_size(10), LOG_MIN_FILE_BYTES);
        assert_eq!(log_max_size(usize::MAX), usize::MAX);
    }

    #[test]
    fn tmpfs_owner_only_for_numeric_users() {
        let named = ContainerSpec {
            user: "nobody".into(),
            ..spec()
        };
        let tmpfs = host_config(&named).tmpfs.expect("tmpfs");
        assert!(!tmpfs["/tmp"].contains("uid="));
        assert_eq!(numeric_user("1000"), (Some(1000), None));
        assert_eq!(numeric_user("1000:50"), (Some(1000), Some(50)));
    }

    #[test]
    fn container_config_runs_argv_without_shell_and_labels() {
        let c = container_config(&spec());
        assert_eq!(c.image.as_deref(), Some("img:1"));
        assert_eq!(c.entrypoint, Some(vec!["/bin/echo".to_owned()]));
        assert_eq!(c.cmd, Some(vec!["a b".to_owned(), "$HOME".to_owned()]));
        assert_eq!(c.env, Some(vec!["A=1=2".to_owned()]));
        assert_eq!(c.user.as_deref(), Some("65534:65534"));
        assert_eq!(c.tty, Some(false));
        let labels = c.labels.expect("labels");
        assert_eq!(labels.get(LABEL_JOB).map(String::as_str), Some("job"));
        assert_eq!(labels.get(LABEL_RUN).map(String::as_str), Some("7"));
    }

    #[test]
    fn empty_command_keeps_image_default() {
        let c = container_config(&ContainerSpec {
            command: vec![],
            ..spec()
        });
        assert_eq!(c.entrypoint, None);
        assert_eq!(c.cmd, None);
    }

    #[test]
    fn serialized_request_uses_engine_field_names() {
        let json = serde_json::to_value(container_config(&spec())).expect("serializes");
        let hc = &json["HostConfig"];
        assert_eq!(hc["CapDrop"], serde_json::json!(["ALL"]));
        assert_eq!(
            hc["SecurityOpt"],
            serde_json::json!(["no-new-privileges:true"])
        );
        assert_eq!(hc["ReadonlyRootfs"], serde_json::json!(true));
        assert_eq!(hc["MemorySwap"], serde_json::json!(268435456));
        assert_eq!(hc["LogConfig"]["Type"], serde_json::json!("json-file"));
        assert_eq!(json["Labels"]["gatehouse.run"], serde_json::json!("7"));
    }

    #[test]
    fn validation_rejects_weakening_specs() {
        let bad = [
            ContainerSpec {
                memory_bytes: 0,
                ..spec()
            },
            ContainerSpec {
                pids_limit: -1,
                ..spec()
            },
            ContainerSpec {
                cap_add: vec!["all".into()],
                ..spec()
            },
            ContainerSpec {
                user: String::new(),
                ..spec()
            },
            ContainerSpec {
                env: vec![("A=B".into(), "c".into())],
                ..spec()
            },
            ContainerSpec {
                mounts: vec![BindMount {
                    source: "rel".into(),
                    target: "/x".into(),
                    read_only: true,
                }],
                ..spec()
            },
        ];
        for spec in bad {
            assert!(
                matches!(validate(&spec), Err(DockerError::InvalidSpec(_))),
                "{spec:?}"
            );
        }
        assert!(validate(&spec()).is_ok());
    }

    #[test]
    fn tail_buffer_keeps_last_bytes() {
        let mut t = TailBuffer::new(5);
        t.push(b"abc");
        t.push(b"de");
        let logs = t.finish();
        assert_eq!(logs.bytes, b"abcde");
        assert!(!logs.truncated);

        let mut t = TailBuffer::new(5);
        t.push(b"abc");
        t.push(b"defg");
        t.push(b"");
        let logs = t.finish();
        assert_eq!(logs.bytes, b"cdefg");
        assert!(logs.truncated);

        let mut t = TailBuffer::new(3);
        t.push(b"0123456789");
        let logs = t.finish();
        assert_eq!(logs.bytes, b"789");
        assert!(logs.truncated);

        let mut t = TailBuffer::new(0);
        t.push(b"x");
        assert_eq!(
            t.finish(),
            CapturedLogs {
                bytes: vec![],
                truncated: true
            }
        );
    }

    #[test]
    fn only_transport_failures_are_connection_errors() {
        let unreachable = DockerError::from_bollard(BollardError::SocketNotFoundError("/x".into()));
        assert!(unreachable.is_connection_error());
        let api = DockerError::from_bollard(BollardError::DockerResponseServerError {
            status_code: 500,
            message: "boom".into(),
        });
        assert!(!api.is_connection_error());
        let gone = DockerError::for_container(
            BollardError::DockerResponseServerError {
                status_code: 404,
                message: "No such container: x".into(),
            },
            "x",
        );
        assert!(matches!(gone, DockerError::NotFound { id } if id == "x"));
    }
}
