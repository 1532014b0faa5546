//! Docker at start-up and after. The scheduler does not need Docker to
//! start: it serves its API and run history at once, reports not-ready on
//! `/readyz` with the reason, and connects with backoff (backon's
//! exponential backoff with jitter, capped at [`MAX_CONNECT_DELAY`]). Once
//! the daemon answers it reconciles the runs of the previous process and
//! only then schedules, so fire times that passed meanwhile are handled like
//! downtime (caught up or recorded as missed).
//!
//! After that, [`monitor_docker`] pings every [`MONITOR_EVERY`] (every
//! second while the daemon is away) so
//! readiness, `docker_up` and manual triggers follow the daemon going away
//! and coming back; runs in flight ride that out on their own (`run.rs`).

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use gatehouse_policy::scheduler::Job;
use tokio::sync::watch;

use super::stop::{stop_reason, wait_for_stop};
use super::DockerCall;
use super::{reconcile, start_window, Reconciled, RunEngine, RunJob, StopReason};
use crate::docker::DockerError;
use crate::store::{now_ms, Finish, ReasonCode, RunStatus, Trigger};

/// First retry after this long, doubling (with jitter) up to
/// [`MAX_CONNECT_DELAY`].
const FIRST_CONNECT_DELAY: Duration = Duration::from_millis(250);
/// Longest wait between two attempts to reach Docker at start-up, so the
/// scheduler becomes ready within this long of the daemon answering.
pub const MAX_CONNECT_DELAY: Duration = Duration::from_secs(10);
/// How often a connected scheduler checks that Docker still answers.
pub const MONITOR_EVERY: Duration = Duration::from_secs(5);
/// How often it checks while the daemon is away, so that triggers are
/// accepted again soon after it is back.
const MONITOR_AWAY_EVERY: Duration = Duration::from_secs(1);
/// How long one such ping may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What the scheduler knows about Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerStatus {
    /// Not connected yet; retrying with backoff.
    Connecting {
        attempts: u32,
        /// Why the last attempt failed.
        error: Option<String>,
    },
    /// Connected; settling the runs the previous process left.
    Reconciling,
    /// Connected, reconciled and scheduling.
    Ready,
    /// Was ready; the daemon stopped answering at `since` (unix ms).
    Unreachable { since: i64, error: String },
}

impl DockerStatus {
    pub(super) fn starting() -> DockerStatus {
        DockerStatus::Connecting {
            attempts: 0,
            error: None,
        }
    }

    /// `Ok` when runs can start; otherwise why not, in words for
    /// `/readyz` and for the 503 a trigger gets.
    pub fn ready(&self) -> Result<(), String> {
        match self {
            DockerStatus::Ready => Ok(()),
            DockerStatus::Connecting { attempts: 0, .. } => {
                Err("connecting to the Docker daemon".to_owned())
            }
            DockerStatus::Connecting { attempts, error } => Err(format!(
                "not connected to the Docker daemon after {attempts} attempt{} ({}); retrying",
                if *attempts == 1 { "" } else { "s" },
                error.as_deref().unwrap_or("no answer")
            )),
            DockerStatus::Reconciling => {
                Err("reconciling the runs of the previous process with Docker".to_owned())
            }
            DockerStatus::Unreachable { since, error } => Err(format!(
                "the Docker daemon has not answered for {} s ({error})",
                (now_ms() - since).max(0) / 1000
            )),
        }
    }
}

/// Connects to Docker, retrying with backoff until it answers, then
/// reconciles. A reconcile that fails because the daemon went away again
/// starts over (runs already adopted are left to their tasks). Returns
/// `None` when the scheduler is told to stop first.
pub async fn connect_and_reconcile(engine: &Arc<RunEngine>) -> Option<Reconciled> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(FIRST_CONNECT_DELAY)
        .with_max_delay(MAX_CONNECT_DELAY)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    let mut attempts = 0u32;
    let attempt = || async move {
        engine.executor.negotiate().await?;
        engine.set_docker_status(DockerStatus::Reconciling);
        reconcile(engine).await
    };
    let connecting = attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .notify(|error: &DockerError, next: Duration| {
            attempts += 1;
            if attempts == 1 {
                tracing::warn!(%error, "Docker is not answering; serving the API and run history meanwhile, and retrying with backoff");
            } else {
                tracing::info!(%error, attempts, retry_in = ?next, "Docker is still not answering");
            }
            engine.set_docker_status(DockerStatus::Connecting {
                attempts,
                error: Some(error.to_string()),
            });
        });
    let mut shutdown = engine.shutdown.clone();
    let reconciled = tokio::select! {
        result = connecting => result,
        _ = super::until_true(&mut shutdown) => return None,
    };
    // Without a max_times the retry only ends with a success.
    let reconciled = reconciled.ok()?;
    tracing::info!(
        api_version = %engine.executor.api_version(),
        ?reconciled,
        "connected to Docker and reconciled runs"
    );
    Some(reconciled)
}

impl RunEngine {
    /// Reconciled and caught up: runs may start, triggers are accepted.
    pub fn mark_ready(&self) {
        self.set_docker_status(DockerStatus::Ready);
    }

    /// `Ok` once Docker is ready; otherwise the run ended waiting for it
    /// (recorded, or `None` when the scheduler is stopping).
    pub(super) async fn until_docker_ready(
        &self,
        job: &Job,
        id: i64,
        trigger: &Trigger,
        stop: &mut watch::Receiver<Option<StopReason>>,
    ) -> Result<(), Option<RunStatus>> {
        let Err(unready) = self.docker_status().ready() else {
            return Ok(());
        };
        match self.wait_for_docker(job, id, stop).await {
            DockerWait::Ready => Ok(()),
            DockerWait::Shutdown => Err(None),
            DockerWait::Stopped(reason) => {
                let finish = Finish::because(reason.code(), reason.describe());
                Err(Some(
                    self.record(
                        RunJob::Current(job),
                        id,
                        trigger,
                        RunStatus::Cancelled,
                        finish,
                        None,
                    )
                    .await,
                ))
            }
            DockerWait::TooLate => {
                let unready = self.docker_status().ready().err().unwrap_or(unready);
                let window = humantime::format_duration(start_window(job));
                let reason = format!(
                    "Docker was not available within the run's start window ({window}) after it was queued: {unready}"
                );
                tracing::warn!(job = %job.name, run = id, %reason, "run could not start");
                let finish = Finish::because(ReasonCode::DockerUnavailable, reason);
                Err(Some(
                    self.record(
                        RunJob::Current(job),
                        id,
                        trigger,
                        RunStatus::Failed,
                        finish,
                        None,
                    )
                    .await,
                ))
            }
        }
    }

    /// Waits until Docker is ready, for a stop, for shutdown, or until the
    /// run's start window (from when it was queued) has passed.
    async fn wait_for_docker(
        &self,
        job: &Job,
        id: i64,
        stop: &mut watch::Receiver<Option<StopReason>>,
    ) -> DockerWait {
        let queued_at = self
            .store
            .get(id)
            .await
            .ok()
            .flatten()
            .map_or_else(now_ms, |run| run.queued_at);
        let window = start_window(job);
        let waited = Duration::from_millis((now_ms() - queued_at).max(0) as u64);
        let left = window.saturating_sub(waited);
        tracing::info!(job = %job.name, run = id, ?left, "waiting for Docker before starting the run");
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = self.docker_ready() => DockerWait::Ready,
            _ = tokio::time::sleep(left) => DockerWait::TooLate,
            _ = wait_for_stop(stop) => match stop_reason(stop) {
                Some(reason) => DockerWait::Stopped(reason),
                None => DockerWait::TooLate,
            },
            _ = crate::engine::until_true(&mut shutdown) => DockerWait::Shutdown,
        }
    }
}

/// How waiting for Docker before a start ended.
enum DockerWait {
    Ready,
    TooLate,
    Stopped(StopReason),
    Shutdown,
}

/// Follows the daemon after start-up until shutdown.
pub async fn monitor_docker(engine: Arc<RunEngine>) {
    let mut shutdown = engine.shutdown.clone();
    loop {
        let every = match engine.docker_status() {
            DockerStatus::Unreachable { .. } => MONITOR_AWAY_EVERY,
            _ => MONITOR_EVERY,
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = super::until_true(&mut shutdown) => return,
        }
        let answer = match tokio::time::timeout(PING_TIMEOUT, engine.executor.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer to a ping within {PING_TIMEOUT:?}")),
        };
        match (engine.docker_status(), answer) {
            (DockerStatus::Unreachable { since, .. }, Ok(())) => {
                tracing::info!(away_s = (now_ms() - since) / 1000, "Docker answers again");
                engine.set_docker_status(DockerStatus::Ready);
            }
            (DockerStatus::Ready, Err(error)) => {
                tracing::warn!(%error, "Docker stopped answering; manual triggers are refused until it is back");
                engine.docker_error(DockerCall::Ping, &DockerError::Protocol(error.clone()));
                engine.set_docker_status(DockerStatus::Unreachable {
                    since: now_ms(),
                    error,
                });
            }
            (DockerStatus::Unreachable { since, .. }, Err(error)) => {
                engine.set_docker_status(DockerStatus::Unreachable { since, error });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_but_ready_says_why() {
        assert_eq!(DockerStatus::Ready.ready(), Ok(()));
        let first = DockerStatus::starting().ready().expect_err("not ready");
        assert!(first.contains("connecting"), "{first}");
        let retrying = DockerStatus::Connecting {
            attempts: 3,
            error: Some("Docker daemon unreachable: socket not found".into()),
        }
        .ready()
        .expect_err("not ready");
        assert!(
            retrying.contains("3 attempts") && retrying.contains("socket not found"),
            "{retrying}"
        );
        let away = DockerStatus::Unreachable {
            since: now_ms() - 12_000,
            error: "connection refused".into(),
        }
        .ready()
        .expect_err("not ready");
        assert!(
            away.contains("12 s") && away.contains("connection refused"),
            "{away}"
        );
        assert!(DockerStatus::Reconciling.ready().is_err());
    }
}
