//! Stopping a run early: why, and the watch channel each active run
//! listens on for it.

use tokio::sync::watch;

use crate::store::ReasonCode;

/// Why a supervised run is being stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Cancelled { by: String },
    Replaced { by_run: i64 },
}

impl StopReason {
    pub(super) fn describe(&self) -> String {
        match self {
            StopReason::Cancelled { by } => format!("cancelled by {by}"),
            StopReason::Replaced { by_run } => format!("replaced by run {by_run}"),
        }
    }

    pub(super) fn code(&self) -> ReasonCode {
        match self {
            StopReason::Cancelled { .. } => ReasonCode::Cancelled,
            StopReason::Replaced { .. } => ReasonCode::Replaced,
        }
    }
}

/// Resolves once someone asks the run to stop.
pub(super) async fn wait_for_stop(stop: &mut watch::Receiver<Option<StopReason>>) {
    // A closed channel means nobody can stop us any more: wait forever.
    if stop.wait_for(Option::is_some).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Why the run was asked to stop, if it was.
pub(super) fn stop_reason(stop: &watch::Receiver<Option<StopReason>>) -> Option<StopReason> {
    stop.borrow().clone()
}
