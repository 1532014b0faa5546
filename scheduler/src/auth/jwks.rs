//! Where the verifier's keys come from: the gateway's JWKS, fetched
//!
//! * at start-up, until it succeeds;
//! * every `gateway_jwks_refresh` (5 minutes by default), so a rotation
//!   reaches the scheduler;
//! * at once when an assertion names a key id (`kid`) that is not in the
//!   set: the gateway has restarted with a new key (it generates one when
//!   the policy names no `[assertion] key_file`), and every request would
//!   otherwise be refused until the next refresh.
//!
//! The on-demand fetch is single-flight and rate-limited: requests that
//! arrive while one is in flight wait for it and share its result, and
//! after it at most one more starts per [`MIN_REFETCH_INTERVAL`]. A flood of
//! made-up key ids (anyone who can reach the port can send them, no
//! signature is needed to name a kid) therefore costs the gateway one
//! request every few seconds, not one per request.
//!
//! Redirects are never followed, and an `https` URL is checked against the
//! system roots or, with `gateway_jwks_ca`, against that CA only.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

/// The least time between two fetches caused by unknown key ids.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(5);
/// Keys last fetched longer ago than this many refresh intervals are
/// stale: the refreshes in between have all failed.
pub const STALE_AFTER_REFRESHES: u32 = 3;
/// Per fetch, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the gateway's key set could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("cannot read gateway_jwks_ca {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("the request failed: {0}")]
    Request(#[source] reqwest::Error),
    /// Never followed: the key set must come from the URL in the policy,
    /// not from wherever that URL points us.
    #[error("answered {} with a redirect to `{location}`; redirects are not followed, so set gateway_jwks to the final URL", .status.as_u16())]
    Redirected {
        status: reqwest::StatusCode,
        location: String,
    },
    #[error("answered {}", .0.as_u16())]
    Status(reqwest::StatusCode),
    #[error("the answer is not a JWKS: {0}")]
    NotJwks(#[source] reqwest::Error),
    #[error("the key set is empty")]
    Empty,
}

/// The client for the gateway's JWKS: short timeout, no redirects, and,
/// with `ca_pem`, only that CA trusted for `https`.
pub fn jwks_client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client, JwksError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(JwksError::Client)?;
        if certs.is_empty() {
            return Err(JwksError::Ca {
                path: String::new(),
                reason: "no PEM certificate in it".into(),
            });
        }
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(JwksError::Client)
}

/// One fetch of the key set at `url`, with `client` from [`jwks_client`].
pub async fn fetch_keys(client: &reqwest::Client, url: &url::Url) -> Result<JwkSet, JwksError> {
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(JwksError::Request)?;
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        return Err(JwksError::Redirected { status, location });
    }
    if !status.is_success() {
        return Err(JwksError::Status(status));
    }
    let keys: JwkSet = response.json().await.map_err(JwksError::NotJwks)?;
    if keys.keys.is_empty() {
        return Err(JwksError::Empty);
    }
    Ok(keys)
}

/// The gateway's JWKS endpoint and how to reach it.
pub struct JwksSource {
    pub(super) url: url::Url,
    pub(super) client: reqwest::Client,
    pub(super) refresh: Duration,
    /// When the last on-demand fetch started. Held across that fetch, so
    /// it is also what makes concurrent on-demand fetches one.
    pub(super) on_demand: tokio::sync::Mutex<Option<Instant>>,
}

impl JwksSource {
    /// `ca_file`: the PEM CA that alone is trusted for an `https` URL.
    pub fn new(
        url: url::Url,
        refresh: Duration,
        ca_file: Option<&Path>,
    ) -> Result<JwksSource, JwksError> {
        let ca = match ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| JwksError::Ca {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?),
            None => None,
        };
        let client = jwks_client(ca.as_deref()).map_err(|e| match (e, ca_file) {
            (JwksError::Ca { reason, .. }, Some(path)) => JwksError::Ca {
                path: path.display().to_string(),
                reason,
            },
            (e, _) => e,
        })?;
        Ok(JwksSource {
            url,
            client,
            refresh,
            on_demand: tokio::sync::Mutex::new(None),
        })
    }

    pub fn url(&self) -> &url::Url {
        &self.url
    }
}

/// How fresh the loaded keys are, for `/readyz`.
#[derive(Debug, Default)]
pub(super) struct KeyStatus {
    pub loaded_at: Option<Instant>,
    pub last_error: Option<String>,
    pub failures_since_load: u32,
}

impl KeyStatus {
    /// `Err(reason)` when callers cannot be verified with confidence: no
    /// keys yet, or keys older than [`STALE_AFTER_REFRESHES`] refresh
    /// intervals because the refreshes failed (the gateway may have
    /// rotated its key since, and nobody would notice).
    pub fn readiness(&self, refresh: Duration, now: Instant) -> Result<(), String> {
        let error = self
            .last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        let Some(loaded_at) = self.loaded_at else {
            return Err(format!("the gateway's keys are not loaded yet{error}"));
        };
        let age = now.saturating_duration_since(loaded_at);
        if age > refresh * STALE_AFTER_REFRESHES {
            return Err(format!(
                "the gateway's keys are stale: fetched {}s ago, {} refresh(es) failed since{error}",
                age.as_secs(),
                self.failures_since_load
            ));
        }
        Ok(())
    }
}

/// Records a fetch failure in `status` and logs it.
pub(super) fn note_failure(status: &Mutex<KeyStatus>, url: &url::Url, error: &JwksError) {
    if let Ok(mut s) = status.lock() {
        s.failures_since_load = s.failures_since_load.saturating_add(1);
        s.last_error = Some(error.to_string());
    }
    tracing::warn!(%url, %error, "cannot fetch the gateway's assertion keys");
}
