//! The Docker client: runs one job as one hardened container through the
//! Docker Engine API (bollard).
//!
//! Every container we create is locked down the same way, whatever the job
//! asks for: no privileges, all capabilities dropped (only `cap_add` comes
//! back), `no-new-privileges`, a memory limit without swap, a CPU and pids
//! limit, a size-limited `noexec` `/tmp`, and a capped json-file log. The
//! job's `ContainerSettings` (the policy's validated model, borrowed as
//! is) only choose the numbers. `host_config` and `container_config` are
//! pure so the exact request we send is unit-tested.
//!
//! Containers carry the labels [`LABEL_JOB`] and [`LABEL_RUN`] so a
//! restarted scheduler can find what it started ([`DockerClient::list_ours`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use gatehouse_policy::scheduler::PullPolicy;

pub mod mounts;
mod spec;
mod state;
use spec::validate;
pub use spec::{container_config, host_config, BindMount, ContainerSpec};
pub use state::{docker_time, ContainerState};

/// Label holding the job name of a container we created.
pub const LABEL_JOB: &str = "gatehouse.job";
/// Label holding the run number of a container we created.
pub const LABEL_RUN: &str = "gatehouse.run";
/// Which scheduler (which run history) owns the container, so that two
/// schedulers sharing a daemon never adopt or remove each other's.
pub const LABEL_SCHEDULER: &str = "gatehouse.scheduler";

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
    /// Docker says the container has not ended (or never ran), so there is
    /// no exit to report.
    #[error("container {id} has not ended ({state})")]
    NotEnded { id: String, state: String },
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
///
/// The bollard client is made on first use: bollard refuses to make one
/// while the socket file does not exist, and the scheduler must be able to
/// start before dockerd does. Once made, it reconnects per request.
#[derive(Debug, Clone)]
pub struct DockerClient {
    socket: Arc<str>,
    /// Per request, until the response headers arrive.
    timeout: Duration,
    client: Arc<OnceLock<Docker>>,
}

/// bollard's default per-request timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

impl DockerClient {
    /// Connects to `DOCKER_HOST` (a `unix://` socket) or the default socket,
    /// negotiates the API version and pings.
    pub async fn connect() -> Result<DockerClient, DockerError> {
        let engine = DockerClient::from_env()?;
        engine.negotiate().await?;
        Ok(engine)
    }

    /// Connects to `host`, a `unix://` URL or a socket path.
    pub async fn connect_to(host: &str) -> Result<DockerClient, DockerError> {
        let engine = DockerClient::new(host)?;
        engine.negotiate().await?;
        Ok(engine)
    }

    /// The client for `DOCKER_HOST` or the default socket, without talking
    /// to the daemon yet (see [`DockerClient::negotiate`]).
    pub fn from_env() -> Result<DockerClient, DockerError> {
        DockerClient::new(&DockerClient::host_from_env())
    }

    /// `DOCKER_HOST`, or the default socket.
    pub fn host_from_env() -> String {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.is_empty() => host,
            _ => "unix:///var/run/docker.sock".to_owned(),
        }
    }

    /// A client for `host` (a `unix://` URL or a socket path) that has not
    /// talked to the daemon yet: this works while Docker is down, and only
    /// a host we cannot use is an error.
    pub fn new(host: &str) -> Result<DockerClient, DockerError> {
        let path = match host.strip_prefix("unix://") {
            Some(path) => path,
            None if host.starts_with('/') => host,
            None => return Err(DockerError::UnsupportedHost(host.to_owned())),
        };
        Ok(DockerClient {
            socket: Arc::from(path),
            timeout: DEFAULT_TIMEOUT,
            client: Arc::default(),
        })
    }

    /// The bollard client, made now if this is the first use (which fails
    /// as a connection error while the socket does not exist).
    fn client(&self) -> Result<&Docker, DockerError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = Docker::connect_with_unix(
            &self.socket,
            self.timeout.as_secs(),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(DockerError::from_bollard)?
        .with_timeout(self.timeout);
        Ok(self.client.get_or_init(|| client))
    }

    /// Settles on the daemon's API version and pings. bollard 0.21 speaks
    /// API 1.53 by default; older engines (20.10 is 1.41) reject that. The
    /// version is shared by every clone of this client, so one successful
    /// negotiation serves them all; until then only `ping` is safe.
    pub async fn negotiate(&self) -> Result<(), DockerError> {
        self.client()?
            .clone()
            .negotiate_version()
            .await
            .map_err(DockerError::from_bollard)?;
        self.ping().await
    }

    /// The same connection with another per-request timeout. The timeout
    /// covers a request until the response headers arrive, not streamed
    /// bodies (logs, wait, pull).
    pub fn with_timeout(self, timeout: Duration) -> DockerClient {
        let client = match self.client.get() {
            Some(client) => OnceLock::from(client.clone().with_timeout(timeout)),
            None => OnceLock::new(),
        };
        DockerClient {
            socket: self.socket,
            timeout,
            client: Arc::new(client),
        }
    }

    /// The negotiated API version, e.g. "1.41" (empty before any use).
    pub fn api_version(&self) -> String {
        self.client
            .get()
            .map(|c| c.client_version().to_string())
            .unwrap_or_default()
    }

    pub async fn ping(&self) -> Result<(), DockerError> {
        self.client()?
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
        match self.client()?.inspect_image(image).await {
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
        let mut progress = self.client()?.create_image(Some(options), None, None);
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
    pub async fn create(&self, spec: &ContainerSpec<'_>) -> Result<String, DockerError> {
        validate(spec)?;
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = self
            .client()?
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
        self.client()?
            .start_container(id, None)
            .await
            .map_err(|err| DockerError::for_container(err, id))
    }

    /// Waits for the container to stop and returns how it ended. The exit
    /// comes from inspect, and only once inspect says the container ran and
    /// ended: a wait on a container that was never started returns at once
    /// with status 0, which is no outcome at all ([`DockerError::NotEnded`]).
    pub async fn wait(&self, id: &str) -> Result<Exit, DockerError> {
        let options = WaitContainerOptions {
            condition: "not-running".to_owned(),
        };
        let mut stream = self.client()?.wait_container(id, Some(options));
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
        // The wait response has no OOM flag and cannot say whether the
        // container ever ran; the container's state can.
        match self.inspect_state(id).await {
            Ok(ContainerState::Ended { exit, .. }) => Ok(exit),
            Ok(state) => Err(DockerError::NotEnded {
                id: id.to_owned(),
                state: format!("{state:?}"),
            }),
            // Removed by someone else since it ended: the wait's status is
            // the daemon's word for how it ended, without the OOM flag.
            Err(DockerError::NotFound { .. }) => Ok(Exit {
                exit_code,
                oom_killed: false,
            }),
            Err(err) => Err(err),
        }
    }

    /// What Docker says about the container now (see [`ContainerState`]).
    pub async fn inspect_state(&self, id: &str) -> Result<ContainerState, DockerError> {
        let inspect = self
            .client()?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|err| DockerError::for_container(err, id))?;
        let state = inspect.state.ok_or_else(|| {
            DockerError::Protocol(format!("container {id} was inspected without a state"))
        })?;
        ContainerState::from_inspect(&state)
            .map_err(|e| DockerError::Protocol(format!("container {id}: {e}")))
    }

    /// How the container ended, or `None` while it has not (never started,
    /// running, paused, restarting, being removed).
    pub async fn inspect_exit(&self, id: &str) -> Result<Option<Exit>, DockerError> {
        Ok(self.inspect_state(id).await?.exit())
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
            .client()?
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
        self.logs_masked(id, cap, &crate::mask::Masker::default())
            .await
    }

    /// [`DockerClient::logs`], masked as they stream (before the cut, so no
    /// value is half-kept).
    pub async fn logs_masked(
        &self,
        id: &str,
        cap: usize,
        mask: &crate::mask::Masker,
    ) -> Result<CapturedLogs, DockerError> {
        let options = LogsOptions {
            follow: false,
            stdout: true,
            stderr: true,
            timestamps: false,
            tail: "all".to_owned(),
            ..Default::default()
        };
        let mut stream = self.client()?.logs(id, Some(options));
        let mut tail = TailBuffer::new(cap);
        let mut masked = mask.stream();
        while let Some(item) = stream.next().await {
            let output = item.map_err(|err| DockerError::for_container(err, id))?;
            tail.push(&masked.push(output.as_ref()));
        }
        tail.push(&masked.finish());
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
        match self.client()?.remove_container(id, Some(options)).await {
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
            .client()?
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
mod tests;
