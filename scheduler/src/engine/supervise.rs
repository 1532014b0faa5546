//! Supervising a started container until it ends, times out, is stopped
//! or the scheduler stops, riding out a daemon that goes away and comes
//! back; and what its exit means for the run.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::stop::{stop_reason, wait_for_stop};
use super::DockerCall;
use super::{RunEngine, StopReason};
use crate::docker::{ContainerState, DockerError, Exit};
use crate::store::{now_ms, ReasonCode, RunStatus};

/// How supervision of a container ended.
#[derive(Debug)]
pub(crate) enum Ending {
    Exited {
        exit: Exit,
        /// It ended while the daemon was not answering (see [`Outage`]).
        during_outage: bool,
    },
    TimedOut(Option<Exit>),
    Stopped(StopReason, Option<Exit>),
    /// The container disappeared (removed behind our back).
    Vanished,
    /// Docker says the container never started: nothing ran.
    NeverStarted,
    /// The scheduler is stopping; the container keeps running and the next
    /// start adopts it.
    Abandoned,
}

/// Longest wait between attempts to reach a daemon that went away.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);
/// Clock slack when comparing Docker's `FinishedAt` with our own times.
const OUTAGE_SLACK_MS: i64 = 2_000;

/// When supervision lost the daemon: a container that ended between then
/// and the daemon's next answer ended while it was away. dockerd closes its
/// API before it stops the containers on the way down (without
/// live-restore), so a restart always shows up here first.
#[derive(Debug, Default)]
struct Outage {
    since: Option<i64>,
}

impl Outage {
    fn lost(&mut self) {
        self.since.get_or_insert_with(now_ms);
    }

    /// The daemon answered and the container still runs: it survived.
    fn survived(&mut self) {
        self.since = None;
    }

    /// Whether a container that finished at `finished_at` (Docker's clock)
    /// ended during the outage; `None` (no time) counts as during.
    fn ended_during(&self, finished_at: Option<chrono::DateTime<chrono::Utc>>) -> bool {
        match (self.since, finished_at) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(since), Some(at)) => at.timestamp_millis() >= since - OUTAGE_SLACK_MS,
        }
    }
}

impl RunEngine {
    /// Waits for the container to end, for the deadline, for a stop, or for
    /// shutdown, riding out a daemon that goes away and comes back. An exit
    /// is reported only once inspect says the container ran and ended.
    pub(super) async fn supervise(
        &self,
        container: &str,
        deadline: Instant,
        stop: &mut watch::Receiver<Option<StopReason>>,
    ) -> Ending {
        let mut shutdown = self.shutdown.clone();
        let mut delay = Duration::from_millis(100);
        let mut outage = Outage::default();
        loop {
            tokio::select! {
                waited = self.executor.wait(container) => match waited {
                    Ok(exit) if outage.since.is_none() => {
                        return Ending::Exited { exit, during_outage: false };
                    }
                    Ok(_) => {
                        // Back after an outage: when did it end?
                        if let Some(ending) = self.settle(container, &mut outage).await {
                            return ending;
                        }
                    }
                    Err(DockerError::NotFound { .. }) => return Ending::Vanished,
                    Err(e) => {
                        if e.is_connection_error() {
                            outage.lost();
                        }
                        self.docker_error(DockerCall::Wait, &e);
                        // The daemon may be restarting: ask again until it
                        // answers, then trust what it says.
                        tokio::time::sleep(delay).await;
                        if self.shutting_down() {
                            return Ending::Abandoned;
                        }
                        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
                        if let Some(ending) = self.settle(container, &mut outage).await {
                            return ending;
                        }
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Ending::TimedOut(self.stop_container(container).await);
                }
                _ = wait_for_stop(stop) => {
                    let reason = stop_reason(stop).unwrap_or(StopReason::Cancelled { by: "unknown".into() });
                    return Ending::Stopped(reason, self.stop_container(container).await);
                }
                _ = crate::engine::until_true(&mut shutdown) => return Ending::Abandoned,
            }
        }
    }

    /// Asks Docker how the container is; `None` means "still running (or
    /// no answer yet): keep supervising".
    async fn settle(&self, container: &str, outage: &mut Outage) -> Option<Ending> {
        match self.executor.inspect_state(container).await {
            Ok(ContainerState::Ended {
                exit, finished_at, ..
            }) => Some(Ending::Exited {
                exit,
                during_outage: outage.ended_during(finished_at),
            }),
            Ok(ContainerState::Running { .. }) => {
                outage.survived();
                None
            }
            Ok(ContainerState::NeverStarted { .. }) => Some(Ending::NeverStarted),
            Ok(ContainerState::Removing) | Err(DockerError::NotFound { .. }) => {
                Some(Ending::Vanished)
            }
            Err(e) => {
                if e.is_connection_error() {
                    outage.lost();
                }
                None
            }
        }
    }

    /// SIGTERM, the grace period, then SIGKILL; returns how it exited.
    async fn stop_container(&self, container: &str) -> Option<Exit> {
        if let Err(e) = self
            .executor
            .stop(container, self.settings.stop_grace)
            .await
        {
            self.docker_error(DockerCall::Stop, &e);
        }
        match self.executor.inspect_exit(container).await {
            Ok(exit) => exit,
            Err(e) => {
                self.docker_error(DockerCall::Inspect, &e);
                None
            }
        }
    }
}

/// The status of a container that ran and exited, and why when it did not
/// succeed.
pub(super) fn exit_outcome(
    exit: Exit,
    during_outage: bool,
) -> (RunStatus, Option<(ReasonCode, String)>) {
    if exit.oom_killed {
        return (
            RunStatus::Failed,
            Some((
                ReasonCode::OomKilled,
                "OOMKilled: the memory limit was reached".to_owned(),
            )),
        );
    }
    if exit.exit_code == 0 {
        return (RunStatus::Succeeded, None);
    }
    let reason = during_outage.then(|| {
        (
            ReasonCode::DaemonRestarted,
            format!(
                "the Docker daemon went away while the run was running, and the container ended meanwhile with exit code {}: a dockerd restart (without live-restore) stops every running container",
                exit.exit_code
            ),
        )
    });
    (RunStatus::Failed, reason)
}
