//! What can go wrong talking to the daemon, sorted from bollard's errors.

use bollard::errors::Error as BollardError;

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
    pub(super) fn from_bollard(err: BollardError) -> Self {
        if is_transport_error(&err) {
            DockerError::Unreachable(err)
        } else {
            DockerError::Api(err)
        }
    }

    /// Like [`Self::from_bollard`], but a 404 means the container `id` is gone.
    pub(super) fn for_container(err: BollardError, id: &str) -> Self {
        if status_code(&err) == Some(404) {
            DockerError::NotFound { id: id.to_owned() }
        } else {
            DockerError::from_bollard(err)
        }
    }
}

/// Errors that mean we never got an HTTP answer from the daemon.
pub(super) fn is_transport_error(err: &BollardError) -> bool {
    matches!(
        err,
        BollardError::HyperLegacyError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::SocketNotFoundError(_)
            | BollardError::RequestTimeoutError
    )
}

pub(super) fn status_code(err: &BollardError) -> Option<u16> {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The daemon's own words for an error, without bollard's prefix.
pub(super) fn server_message(err: &BollardError) -> String {
    match err {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        BollardError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}
