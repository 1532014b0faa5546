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

    /// How a stop is asked of another scheduler (the run's
    /// `stop_request` column).
    pub(super) fn as_request(&self) -> String {
        match self {
            StopReason::Cancelled { by } => format!("cancel:{by}"),
            StopReason::Replaced { by_run } => format!("replace:{by_run}"),
        }
    }

    pub(super) fn from_request(request: &str) -> Option<StopReason> {
        match request.split_once(':')? {
            ("cancel", by) => Some(StopReason::Cancelled { by: by.to_owned() }),
            ("replace", run) => Some(StopReason::Replaced {
                by_run: run.parse().ok()?,
            }),
            _ => None,
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

#[cfg(test)]
mod tests {
    use super::StopReason;

    #[test]
    fn a_stop_asked_of_another_scheduler_reads_back_the_same() {
        for reason in [
            StopReason::Cancelled {
                by: "oidc:idp:alice:with-colon".to_owned(),
            },
            StopReason::Replaced { by_run: 42 },
        ] {
            assert_eq!(StopReason::from_request(&reason.as_request()), Some(reason));
        }
        assert_eq!(StopReason::from_request("replace:x"), None);
        assert_eq!(StopReason::from_request("halt:now"), None);
        assert_eq!(StopReason::from_request("cancel"), None);
    }
}
