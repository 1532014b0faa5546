//! A run as the history records it: its status, why it exists, and what
//! it left behind.

use serde::Serialize;

use super::ReasonCode;

/// Where a run is in its life. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Starting,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Skipped,
    Lost,
}

impl RunStatus {
    pub const ALL: [RunStatus; 9] = [
        RunStatus::Queued,
        RunStatus::Starting,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::Cancelled,
        RunStatus::Skipped,
        RunStatus::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Starting => "starting",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Skipped => "skipped",
            RunStatus::Lost => "lost",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            RunStatus::Queued | RunStatus::Starting | RunStatus::Running
        )
    }
}

/// Why a run exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// Due by the job's schedule at `planned` (unix ms).
    Schedule { planned: i64 },
    /// The most recent occurrence missed while the scheduler was down.
    CatchUp { planned: i64 },
    /// Started by hand through the API.
    Manual { by: String },
    /// Another attempt after a failed run.
    Retry { of: i64, by: Option<String> },
}

impl Trigger {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Trigger::Schedule { .. } => "schedule",
            Trigger::CatchUp { .. } => "catch_up",
            Trigger::Manual { .. } => "manual",
            Trigger::Retry { .. } => "retry",
        }
    }

    /// The trigger a row's columns describe (`trigger_kind`,
    /// `triggered_by`, `planned_at`, `retry_of`); an unknown kind reads as
    /// manual.
    pub(super) fn from_columns(
        kind: &str,
        by: Option<String>,
        planned: Option<i64>,
        retry_of: Option<i64>,
    ) -> Trigger {
        match kind {
            "schedule" => Trigger::Schedule {
                planned: planned.unwrap_or_default(),
            },
            "catch_up" => Trigger::CatchUp {
                planned: planned.unwrap_or_default(),
            },
            "retry" => Trigger::Retry {
                of: retry_of.unwrap_or_default(),
                by,
            },
            _ => Trigger::Manual {
                by: by.unwrap_or_default(),
            },
        }
    }

    pub(super) fn retry_of(&self) -> Option<i64> {
        match self {
            Trigger::Retry { of, .. } => Some(*of),
            _ => None,
        }
    }

    pub fn planned(&self) -> Option<i64> {
        match self {
            Trigger::Schedule { planned } | Trigger::CatchUp { planned } => Some(*planned),
            _ => None,
        }
    }

    /// The person behind the run, if a person started it.
    pub fn by(&self) -> Option<&str> {
        match self {
            Trigger::Manual { by } => Some(by),
            Trigger::Retry { by, .. } => by.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub job: String,
    pub trigger: Trigger,
    pub attempt: u32,
    pub status: RunStatus,
    /// Unix milliseconds.
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub container_id: Option<String>,
    pub logs_truncated: bool,
    /// Why it was skipped, failed, lost or cancelled.
    pub reason: Option<String>,
    /// The same as a stable name, where there is one (see [`ReasonCode`]).
    pub reason_code: Option<ReasonCode>,
}

/// What a finished run leaves behind.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub logs: Option<Vec<u8>>,
    pub logs_truncated: bool,
    pub reason: Option<String>,
    pub reason_code: Option<ReasonCode>,
}

impl Finish {
    /// Nothing ran: only a reason.
    pub fn because(code: ReasonCode, reason: impl Into<String>) -> Finish {
        Finish {
            reason: Some(reason.into()),
            reason_code: Some(code),
            ..Finish::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub job: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: usize,
}
