//! Step 1 of a notification's life (see `crate::notify`): which event, if
//! any, a recorded outcome is announced as.

use std::collections::BTreeSet;

use gatehouse_policy::notify::NotifyEvent;

use super::{RunEngine, RunJob};
use crate::notify::RunNotice;
use crate::store::{Finish, RunStatus};

impl RunEngine {
    /// Called by `record` once a run's outcome is stored; queues the
    /// notification the job's `notify.on` asks for, never waiting.
    pub(super) async fn notify_outcome(
        &self,
        job: RunJob<'_>,
        id: i64,
        status: RunStatus,
        finish: &Finish,
    ) {
        let notify = job.notify(self.settings());
        if notify.to.is_empty() {
            return;
        }
        let attempt = match self.store.get(id).await {
            Ok(Some(run)) => run.attempt,
            _ => 1,
        };
        let retried = matches!(status, RunStatus::Failed | RunStatus::TimedOut)
            && attempt <= job.max_retries()
            && !self.shutting_down();
        if retried {
            return;
        }
        let Some(event) = self.outcome_event(job, id, status, &notify.on).await else {
            return;
        };
        if !notify.on.contains(&event) {
            return;
        }
        let notice = RunNotice::new(event, job.name(), id, attempt, status, finish);
        self.notifier.enqueue(notice, &notify.to);
    }

    /// The event a terminal status is; a success after a failure is a
    /// recovery when the job asks to hear about those.
    async fn outcome_event(
        &self,
        job: RunJob<'_>,
        id: i64,
        status: RunStatus,
        on: &BTreeSet<NotifyEvent>,
    ) -> Option<NotifyEvent> {
        Some(match status {
            RunStatus::Failed => NotifyEvent::Failed,
            RunStatus::TimedOut => NotifyEvent::TimedOut,
            RunStatus::Lost => NotifyEvent::Lost,
            RunStatus::Succeeded if on.contains(&NotifyEvent::Recovered) => {
                match self.store.previous_outcome(job.name(), id).await {
                    Ok(Some(RunStatus::Failed | RunStatus::TimedOut | RunStatus::Lost)) => {
                        NotifyEvent::Recovered
                    }
                    Ok(_) => NotifyEvent::Succeeded,
                    Err(e) => {
                        tracing::warn!(job = %job.name(), run = id, error = %e, "cannot read the job's history for a recovery notification");
                        NotifyEvent::Succeeded
                    }
                }
            }
            RunStatus::Succeeded => NotifyEvent::Succeeded,
            _ => return None,
        })
    }
}
