//! Startup: every run the database still calls unfinished is settled
//! against what Docker says about its container, so no run is silently
//! forgotten, or made up, across a `kill -9` of the scheduler or a restart
//! of dockerd. What counts is the container's inspected state (has it ever
//! started? has it ended?), never a bare wait, which returns 0 at once for
//! a container that was created and never started.
//!
//! - container running → adopted and supervised (timeout counted from its
//!   start);
//! - container ran and ended → its outcome, exit code and logs are
//!   recorded;
//! - nothing ever ran (no container while the run was queued or starting,
//!   or a container created and never started) → the run is started again,
//!   from the top, if it is still inside its start window
//!   ([`super::start_window`]) and its job still exists; otherwise it is
//!   marked `lost` with reason code `never_started`;
//! - container gone after the run started → `lost`, `container_vanished`.
//!
//! Each adoption writes a `run.adopt` audit record, each settlement its
//! `run.finish` or `run.lost`, and the whole a `reconcile` record.
//! Containers with our labels but no unfinished run are removed.
//!
//! With a shared database (PostgreSQL) a scheduler settles only the runs
//! it owns: at start, and whenever it adopts those of a scheduler presumed
//! dead (`replicas.rs`); other schedulers' containers are theirs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_audit::EventKind;
use gatehouse_policy::scheduler::Job;
use tokio::time::Instant;

use super::DockerCall;
use super::{start_window, RunEngine, RunJob};
use crate::audit::{self, Adoption};
use crate::docker::{ContainerState, DockerError, OurContainer};
use crate::store::{now_ms, Finish, ReasonCode, Run, RunStatus};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// Still running: supervised from here on.
    pub adopted: usize,
    /// Ended while no scheduler watched: outcome recorded.
    pub recorded: usize,
    /// Never started, still inside the start window: started again.
    pub resumed: usize,
    pub lost: usize,
    pub removed_strays: usize,
}

/// What to do with one unfinished run.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Supervise { started_at: i64 },
    Record { started_at: i64 },
    Resume,
    Lost(ReasonCode, String),
}

/// Decides from the run's row and Docker's word on its container; pure, so
/// every case is a unit test.
fn plan(run: &Run, job: Option<&Job>, state: Option<&ContainerState>, now: i64) -> Plan {
    let known_start = |docker: Option<chrono::DateTime<chrono::Utc>>| {
        run.started_at
            .or(docker.map(|t| t.timestamp_millis()))
            .unwrap_or(run.queued_at)
    };
    match state {
        Some(ContainerState::Running { started_at }) => Plan::Supervise {
            started_at: known_start(*started_at),
        },
        Some(ContainerState::Ended { started_at, .. }) => Plan::Record {
            started_at: known_start(*started_at),
        },
        Some(ContainerState::Removing) => Plan::Lost(
            ReasonCode::ContainerVanished,
            "the container was being removed while the scheduler was away".to_owned(),
        ),
        // No container after the run was marked running, or after a
        // container was recorded for it: it may have run; nobody can say.
        None if run.status == RunStatus::Running || run.container_id.is_some() => Plan::Lost(
            ReasonCode::ContainerVanished,
            "the container vanished while the scheduler was away".to_owned(),
        ),
        // Nothing ever ran: queued, or created and never started.
        None | Some(ContainerState::NeverStarted { .. }) => {
            let what = if state.is_some() {
                "the scheduler stopped after creating the run's container and before starting it"
            } else {
                "the scheduler stopped before the run's container was created"
            };
            let Some(job) = job else {
                return Plan::Lost(
                    ReasonCode::NeverStarted,
                    format!("never started: {what}, and the job is no longer in the policy"),
                );
            };
            let window = start_window(job);
            let age = Duration::from_millis((now - run.queued_at).max(0) as u64);
            if age <= window {
                Plan::Resume
            } else {
                Plan::Lost(
                    ReasonCode::NeverStarted,
                    format!(
                        "never started: {what}, and its start window ({}) had passed when the scheduler came back",
                        humantime::format_duration(window)
                    ),
                )
            }
        }
    }
}

/// Settles every unfinished run this scheduler owns, first adopting those
/// of schedulers presumed dead when the database is shared. A connection
/// error ends it early (the caller connects again and calls it again);
/// runs this process already adopted are left alone then.
pub async fn reconcile(engine: &Arc<RunEngine>) -> Result<Reconciled, DockerError> {
    let _settling = engine.settling.lock().await;
    if let Err(e) = engine.store.adopt_orphans().await {
        tracing::error!(error = %e, "cannot adopt the runs of schedulers that are gone");
    }
    let done = settle_own_runs(engine, None).await?;
    tracing::info!(?done, "reconciled runs with Docker");
    record(engine, &done);
    Ok(done)
}

/// With a shared database: adopts the runs of schedulers presumed dead
/// (see `store/postgres/members.rs`) and settles them like a restart's.
/// Returns `None` when there were none.
pub(super) async fn adopt_from_others(
    engine: &Arc<RunEngine>,
) -> Result<Option<Reconciled>, DockerError> {
    let _settling = engine.settling.lock().await;
    let adopted = match engine.store.adopt_orphans().await {
        Ok(adopted) if adopted.is_empty() => return Ok(None),
        Ok(adopted) => adopted,
        Err(e) => {
            tracing::error!(error = %e, "cannot adopt the runs of schedulers that are gone");
            return Ok(None);
        }
    };
    tracing::warn!(runs = ?adopted, "adopted the runs of a scheduler that is gone");
    let done = settle_own_runs(engine, Some(&adopted)).await?;
    tracing::info!(?done, "settled the adopted runs with Docker");
    record(engine, &done);
    Ok(Some(done))
}

/// Settles this scheduler's unfinished runs that it does not supervise
/// yet (`only` those, when given). At start and after Docker comes back
/// (`only` = None) it also removes the containers that no unfinished run
/// owns, and what Swarm runs left behind.
async fn settle_own_runs(
    engine: &Arc<RunEngine>,
    only: Option<&[i64]>,
) -> Result<Reconciled, DockerError> {
    let containers = containers_by_run(engine, engine.instance()).await?;
    // Under the label of a database from before versioned migrations (a
    // hash of its path, which another stack's database could share):
    // adopted only by the run that recorded the container's id, and never
    // removed as strays, since they may be another stack's.
    let legacy = match &engine.store.deployment().legacy_instance {
        Some(label) => containers_by_run(engine, label).await?,
        None => HashMap::new(),
    };
    let unfinished = engine.store.unfinished().await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read unfinished runs");
        Vec::new()
    });
    // Runs other schedulers own are theirs, containers too. Unless that
    // is known, no container counts as a stray.
    let elsewhere = match engine.store.unfinished_elsewhere(None).await {
        Ok(ids) => Some(ids),
        Err(e) => {
            tracing::error!(error = %e, "cannot read other schedulers' runs: no stray container is removed");
            None
        }
    };
    let mut done = Reconciled::default();
    // Containers of unfinished runs, and of runs this process already
    // supervises or started again, are not strays.
    let mut claimed: Vec<&str> = containers
        .values()
        .filter(|c| engine.is_active(c.run))
        .map(|c| c.id.as_str())
        .collect();
    for id in elsewhere.iter().flatten() {
        claimed.extend(containers.get(id).map(|c| c.id.as_str()));
    }
    for run in unfinished {
        if engine.is_active(run.id) || only.is_some_and(|only| !only.contains(&run.id)) {
            continue;
        }
        let container = containers.get(&run.id).or_else(|| {
            legacy
                .get(&run.id)
                .filter(|c| run.container_id.as_deref() == Some(c.id.as_str()))
        });
        claimed.extend(container.map(|c| c.id.as_str()));
        settle(engine, run, container, &mut done).await?;
    }
    if only.is_some() || elsewhere.is_none() {
        return Ok(done);
    }
    for (run, c) in &containers {
        if !claimed.contains(&c.id.as_str()) {
            tracing::warn!(container = %c.id, run, job = %c.job, "removing a container of ours that no unfinished run owns");
            if remove(engine, &c.id).await {
                done.removed_strays += 1;
            }
        }
    }
    let keep = elsewhere.as_deref().unwrap_or_default();
    if let Err(e) = engine.executor.sweep(engine.instance(), keep).await {
        tracing::warn!(error = %e, "cannot look for what runs left behind (Swarm networks)");
    }
    Ok(done)
}

fn record(engine: &RunEngine, done: &Reconciled) {
    engine.audit.record(audit::lifecycle(
        EventKind::Reconcile,
        &[
            ("adopted", done.adopted.into()),
            ("recorded", done.recorded.into()),
            ("resumed", done.resumed.into()),
            ("lost", done.lost.into()),
            ("removed_strays", done.removed_strays.into()),
        ],
    ));
}

/// The containers labelled `instance`, by the run each belongs to.
async fn containers_by_run(
    engine: &RunEngine,
    instance: &str,
) -> Result<HashMap<i64, OurContainer>, DockerError> {
    Ok(engine
        .executor
        .list_ours(instance)
        .await?
        .into_iter()
        .map(|c| (c.run, c))
        .collect())
}

/// Settles one run against Docker's word on its container.
async fn settle(
    engine: &Arc<RunEngine>,
    run: Run,
    container: Option<&OurContainer>,
    done: &mut Reconciled,
) -> Result<(), DockerError> {
    let job = engine.job(&run.job);
    let state = match container {
        None => None,
        Some(c) => match engine.executor.inspect_state(&c.id).await {
            Ok(state) => Some(state),
            Err(DockerError::NotFound { .. }) => None,
            Err(e) if e.is_connection_error() => return Err(e),
            Err(e) => {
                engine.docker_error(DockerCall::Inspect, &e);
                let reason = format!("Docker's state of the container could not be read: {e}");
                let decided = Plan::Lost(ReasonCode::OutcomeUnknown, reason);
                carry_out(engine, job, run, Some(c), decided, done).await;
                return Ok(());
            }
        },
    };
    let decided = plan(&run, job.as_deref(), state.as_ref(), now_ms());
    tracing::info!(job = %run.job, run = run.id, status = run.status.as_str(), container = ?container.map(|c| &c.id), ?state, plan = ?decided, "reconciling a run of the previous process");
    carry_out(engine, job, run, container, decided, done).await;
    Ok(())
}

/// `job` is `None` when the policy no longer has the run's job.
async fn carry_out(
    engine: &Arc<RunEngine>,
    job: Option<Arc<Job>>,
    run: Run,
    container: Option<&OurContainer>,
    decided: Plan,
    done: &mut Reconciled,
) {
    let run_job = RunJob::new(job.as_deref(), &run.job);
    match (decided, container) {
        (Plan::Supervise { started_at }, Some(c)) => {
            if run.status != RunStatus::Running || run.started_at.is_none() {
                let _ = engine.store.mark_running(run.id, started_at).await;
            }
            engine
                .audit
                .record(audit::run_adopted(&run, Adoption::Supervise, Some(&c.id)));
            adopt(engine, job.clone(), run, c.id.clone(), started_at);
            done.adopted += 1;
        }
        (Plan::Record { started_at }, Some(c)) => {
            record_ended(engine, run_job, &run, &c.id, started_at).await;
            done.recorded += 1;
        }
        // `plan` resumes only a run whose job the policy still has.
        (Plan::Resume, container) => {
            let Some(job) = job.clone() else { return };
            // The created container holds the env of its day; a fresh one
            // is made from the job as it is now, under the same name.
            if let Some(c) = container {
                if !remove(engine, &c.id).await {
                    let reason = "never started: its unstarted container could not be removed to start it again";
                    let finish = Finish::because(ReasonCode::NeverStarted, reason);
                    engine
                        .record(run_job, run.id, &run.trigger, RunStatus::Lost, finish, None)
                        .await;
                    done.lost += 1;
                    return;
                }
            }
            engine.audit.record(audit::run_adopted(
                &run,
                Adoption::Resume,
                container.map(|c| c.id.as_str()),
            ));
            tracing::info!(job = %run.job, run = run.id, "starting a run that never started before the restart");
            let _ = engine.store.set_status(run.id, RunStatus::Queued).await;
            engine.spawn_run(job, run.id, run.trigger.clone(), run.attempt);
            done.resumed += 1;
        }
        (Plan::Lost(code, reason), container) => {
            if let Some(c) = container {
                remove(engine, &c.id).await;
            }
            let finish = Finish::because(code, reason);
            engine
                .record(run_job, run.id, &run.trigger, RunStatus::Lost, finish, None)
                .await;
            done.lost += 1;
        }
        // Supervise and Record come only from a container's state.
        (Plan::Supervise { .. } | Plan::Record { .. }, None) => {}
    }
}

/// A run whose container ended while no scheduler watched: its outcome,
/// exit code and logs are recorded (supervision returns at once).
async fn record_ended(
    engine: &Arc<RunEngine>,
    run_job: RunJob<'_>,
    run: &Run,
    container: &str,
    started_at: i64,
) {
    if run.started_at.is_none() {
        let _ = engine.store.mark_running(run.id, started_at).await;
    }
    engine
        .audit
        .record(audit::run_adopted(run, Adoption::Record, Some(container)));
    let stop = engine.register_adopted(run.id, &run.job);
    let deadline = Instant::now() + Duration::from_secs(3600);
    supervise_adopted(engine, run_job, run, container, started_at, deadline, stop).await;
}

/// Supervises an adopted run (registered as active, with `stop`) until
/// its outcome is recorded, masking its output with the job's env now.
async fn supervise_adopted(
    engine: &RunEngine,
    run_job: RunJob<'_>,
    run: &Run,
    container: &str,
    started_at: i64,
    deadline: Instant,
    mut stop: tokio::sync::watch::Receiver<Option<super::StopReason>>,
) {
    engine
        .supervise_and_record(
            run_job,
            run.id,
            &run.trigger,
            container,
            started_at,
            deadline,
            &mut stop,
            &run_job.adopted_mask(),
        )
        .await;
    engine.unregister(run.id);
}

async fn remove(engine: &RunEngine, container: &str) -> bool {
    match engine.executor.remove(container).await {
        Ok(()) => true,
        Err(e) => {
            engine.docker_error(DockerCall::Remove, &e);
            false
        }
    }
}

fn adopt(
    engine: &Arc<RunEngine>,
    job: Option<Arc<Job>>,
    run: Run,
    container: String,
    started_at: i64,
) {
    tracing::info!(job = %run.job, run = run.id, %container, "adopting a running container");
    let stop = engine.register_adopted(run.id, &run.job);
    let elapsed = Duration::from_millis((now_ms() - started_at).max(0) as u64);
    let timeout = RunJob::new(job.as_deref(), &run.job).timeout(&engine.settings);
    let deadline = Instant::now() + timeout.saturating_sub(elapsed);
    let engine = engine.clone();
    tokio::spawn(async move {
        let run_job = RunJob::new(job.as_deref(), &run.job);
        supervise_adopted(
            &engine, run_job, &run, &container, started_at, deadline, stop,
        )
        .await;
    });
}

#[cfg(test)]
mod tests;
