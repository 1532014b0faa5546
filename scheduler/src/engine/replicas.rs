//! Schedulers sharing one PostgreSQL database, seen from one of them.
//!
//! Every fire time is recorded once (the first scheduler to record it
//! runs it; `Triggered::TakenElsewhere` for the others), and a job that
//! forbids overlap is checked against every scheduler's unfinished runs as
//! the run is recorded (`RunEngine::trigger`). What remains is done here,
//! every [`FOLLOW_EVERY`]:
//! - a cancel (or a replacement) asked through another scheduler's API of
//!   a run this one owns is carried out;
//! - the runs of a scheduler presumed dead are adopted and settled like a
//!   restart's (`reconcile::adopt_from_others`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::reconcile::adopt_from_others;
use super::{RunEngine, StopReason};

/// How often a scheduler looks at what other schedulers asked of it, and
/// for runs to adopt: how late a cancel through another scheduler may be.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Runs until shutdown; returns at once when the database is not shared.
pub async fn follow_other_schedulers(engine: Arc<RunEngine>, mut shutdown: watch::Receiver<bool>) {
    if !engine.store.is_shared() {
        return;
    }
    let mut every = tokio::time::interval(FOLLOW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = super::until_true(&mut shutdown) => return,
        }
        carry_out_stop_requests(&engine).await;
        // Adopted runs are settled against Docker, so only while it answers
        // (the start's reconciliation adopts the rest).
        if engine.docker_status().ready().is_ok() {
            if let Err(e) = adopt_from_others(&engine).await {
                tracing::warn!(error = %e, "Docker failed while adopting another scheduler's runs; retrying");
            }
        }
    }
}

async fn carry_out_stop_requests(engine: &RunEngine) {
    let requests = match engine.store.stop_requests().await {
        Ok(requests) => requests,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read stop requests from other schedulers");
            return;
        }
    };
    for (run, request) in requests {
        match StopReason::from_request(&request) {
            // Asked again each time until the run is recorded; stopping is
            // idempotent.
            Some(reason) => {
                if engine.stop(run, reason) {
                    tracing::debug!(run, %request, "stopping a run as another scheduler asked");
                }
            }
            None => tracing::warn!(run, %request, "ignoring an unknown stop request"),
        }
    }
}
