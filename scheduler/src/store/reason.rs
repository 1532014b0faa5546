//! Stable names for why a run ended as it did.

use serde::Serialize;

/// Why a run ended as it did, as a stable name for programs (the API's
/// `reason_code`, next to the human `reason`). Additive: new codes may
/// appear; a client should treat an unknown one like a missing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Skipped: `overlap = "forbid"` and a run of the job was active.
    Overlap,
    /// Skipped: `max_queued_runs` runs were already waiting.
    QueueFull,
    /// Skipped: the scheduled time passed while the scheduler was not
    /// running (or not yet connected to Docker), and the job does not catch
    /// up, or the time was older than its `starting_deadline`.
    Missed,
    /// Failed: Docker did not answer within the run's start window.
    DockerUnavailable,
    /// Failed before anything ran: env, image, create or start.
    StartFailed,
    /// Failed: the memory limit was reached.
    OomKilled,
    /// Timed out: stopped at the job's `timeout`.
    Timeout,
    /// Cancelled by a user.
    Cancelled,
    /// Cancelled by a newer run (`overlap = "replace"`).
    Replaced,
    /// Failed: the container ended while the Docker daemon was away; a
    /// dockerd restart (without live-restore) stops running containers.
    DaemonRestarted,
    /// Lost before anything ran: the scheduler stopped while the run was
    /// queued or between creating and starting its container, and the run
    /// could not be started after the restart (its start window had passed
    /// or its job is gone).
    NeverStarted,
    /// Lost after it started: its container was removed behind the
    /// scheduler's back, so its outcome is unknown.
    ContainerVanished,
    /// Lost: Docker's state of the container could not be read.
    OutcomeUnknown,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 13] = [
        ReasonCode::Overlap,
        ReasonCode::QueueFull,
        ReasonCode::Missed,
        ReasonCode::DockerUnavailable,
        ReasonCode::StartFailed,
        ReasonCode::OomKilled,
        ReasonCode::Timeout,
        ReasonCode::Cancelled,
        ReasonCode::Replaced,
        ReasonCode::DaemonRestarted,
        ReasonCode::NeverStarted,
        ReasonCode::ContainerVanished,
        ReasonCode::OutcomeUnknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Overlap => "overlap",
            ReasonCode::QueueFull => "queue_full",
            ReasonCode::Missed => "missed",
            ReasonCode::DockerUnavailable => "docker_unavailable",
            ReasonCode::StartFailed => "start_failed",
            ReasonCode::OomKilled => "oom_killed",
            ReasonCode::Timeout => "timeout",
            ReasonCode::Cancelled => "cancelled",
            ReasonCode::Replaced => "replaced",
            ReasonCode::DaemonRestarted => "daemon_restarted",
            ReasonCode::NeverStarted => "never_started",
            ReasonCode::ContainerVanished => "container_vanished",
            ReasonCode::OutcomeUnknown => "outcome_unknown",
        }
    }

    pub fn parse(text: &str) -> Option<ReasonCode> {
        ReasonCode::ALL.into_iter().find(|c| c.as_str() == text)
    }
}
