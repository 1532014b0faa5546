//! The connection to the daemon (made on first use, version negotiated)
//! and the images a run needs.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::query_parameters::CreateImageOptions;
use bollard::Docker;
use futures_util::StreamExt;
use gatehouse_policy::scheduler::PullPolicy;

use super::error::{is_transport_error, server_message, status_code};
use super::DockerError;

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
    pub(super) fn client(&self) -> Result<&Docker, DockerError> {
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
}
