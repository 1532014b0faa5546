//! The run engine: turns triggers into runs and runs into containers.
//!
//! A run's life, in order:
//! 1. `trigger` applies the job's overlap rule and the queue cap, and
//!    writes the run's row (queued, or skipped with the reason);
//! 2. the run waits for one of `max_concurrent_runs` slots;
//! 3. `run::execute` resolves its env, checks the image, creates the
//!    hardened container (row first, then container, so a crash leaves a
//!    row to reconcile), starts it and supervises it until it exits, times
//!    out, is cancelled or replaced;
//! 4. the outcome, exit code, OOM flag and capped logs (sensitive env
//!    values masked, `mask.rs`) are recorded and the container is removed;
//!    a failure may queue a retry after a backoff. Recording queues the
//!    run's notifications (`notify::on_recorded`), which never wait.
//!
//! Before any of this, Docker must answer: the scheduler starts without it,
//! serves the API and history, and connects with backoff (`connect`); only
//! then does it reconcile and schedule. A manual trigger while Docker is
//! not connected is refused (503) rather than queued; a run already queued
//! when the daemon goes away waits for it within its start window.
//!
//! On SIGTERM supervision stops without touching containers; the next start
//! adopts them (`reconcile`).

mod connect;
mod notice;
mod reconcile;
mod replicas;
mod run;
mod run_job;
mod stop;
mod supervise;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use gatehouse_audit::Outcome;
use gatehouse_policy::scheduler::{CatchUp, Job, Overlap, SchedulerSettings};
use tokio::sync::{watch, Semaphore};

use crate::audit::{self, Audit};
use crate::auth::Caller;
use crate::docker;
use crate::metrics::Metrics;
use crate::store::{Claim, ReasonCode, Run, RunStatus, Store, StoreError, Trigger};

pub use connect::{connect_and_reconcile, monitor_docker, DockerStatus};
pub use replicas::follow_other_schedulers;
pub(crate) use run_job::RunJob;
pub use stop::StopReason;

/// The jobs of the policy in force, by name. Replaced whole on reload;
/// runs in flight keep the `Arc<Job>` they started with.
pub type JobTable = BTreeMap<String, Arc<Job>>;

/// A Docker API call the engine makes: the `operation` label of
/// `gatehouse_scheduler_docker_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DockerCall {
    Ping,
    EnsureImage,
    Create,
    Start,
    Wait,
    Inspect,
    Stop,
    Logs,
    Remove,
}

impl DockerCall {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DockerCall::Ping => "ping",
            DockerCall::EnsureImage => "ensure_image",
            DockerCall::Create => "create",
            DockerCall::Start => "start",
            DockerCall::Wait => "wait",
            DockerCall::Inspect => "inspect",
            DockerCall::Stop => "stop",
            DockerCall::Logs => "logs",
            DockerCall::Remove => "remove",
        }
    }
}

struct ActiveRun {
    job: String,
    stop: watch::Sender<Option<StopReason>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("no such job")]
    UnknownJob,
    /// Docker is not connected (the scheduler is starting without it, or
    /// the daemon went away): nothing was queued.
    #[error("Docker is not available: {0}")]
    DockerUnavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triggered {
    Queued(i64),
    /// Recorded as skipped, with the reason.
    Skipped(i64, String),
    /// A scheduled time that another scheduler sharing the database
    /// recorded first, and runs.
    TakenElsewhere,
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("the run is not queued or running")]
    NotActive,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Turns triggers into runs and runs into containers (see the module
/// doc): the one owner of the run history, the concurrency slots, the
/// active runs and the Docker connection's status.
pub struct RunEngine {
    pub(crate) settings: SchedulerSettings,
    pub(crate) store: Arc<Store>,
    /// Containers on the daemon, or services on its Swarm.
    pub(crate) executor: Arc<docker::Executor>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit: Audit,
    pub(crate) notifier: crate::notify::Notifier,
    jobs: RwLock<Arc<JobTable>>,
    slots: Arc<Semaphore>,
    active: Mutex<HashMap<i64, ActiveRun>>,
    /// Flips to true on SIGTERM: supervision ends, containers stay.
    shutdown: watch::Receiver<bool>,
    /// Whether Docker answers; only `connect` changes it.
    docker_status: watch::Sender<DockerStatus>,
    /// Held while settling runs with Docker (at start, after Docker comes
    /// back, when adopting another scheduler's runs), so that no run is
    /// settled twice.
    settling: tokio::sync::Mutex<()>,
}

impl RunEngine {
    /// The label on our containers: the database's own id (see
    /// `store::Deployment`), since containers belong to the database that
    /// records them.
    pub(crate) fn instance(&self) -> &str {
        &self.store.deployment().instance
    }

    pub fn new(
        settings: SchedulerSettings,
        jobs: &[Job],
        store: Arc<Store>,
        executor: Arc<docker::Executor>,
        metrics: Arc<Metrics>,
        audit: Audit,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<RunEngine> {
        let slots = Arc::new(Semaphore::new(settings.max_concurrent_runs));
        let notifier =
            crate::notify::Notifier::start(&settings.notify, metrics.clone(), audit.clone());
        let engine = Arc::new(RunEngine {
            notifier,
            settings,
            store,
            executor,
            metrics,
            audit,
            jobs: RwLock::new(Arc::default()),
            slots,
            active: Mutex::default(),
            shutdown,
            docker_status: watch::Sender::new(DockerStatus::starting()),
            settling: tokio::sync::Mutex::new(()),
        });
        engine.replace_jobs(jobs);
        engine
    }

    pub fn jobs(&self) -> Arc<JobTable> {
        self.jobs
            .read()
            .map(|j| j.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub fn job(&self, name: &str) -> Option<Arc<Job>> {
        self.jobs().get(name).cloned()
    }

    /// Installs the jobs of a new policy. Runs in flight are untouched.
    pub fn replace_jobs(&self, jobs: &[Job]) {
        let table: JobTable = jobs
            .iter()
            .map(|j| (j.name.clone(), Arc::new(j.clone())))
            .collect();
        for name in table.keys() {
            self.metrics.declare_job(name);
        }
        match self.jobs.write() {
            Ok(mut slot) => *slot = Arc::new(table),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(table),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Logs and counts a failed Docker API call.
    pub(super) fn docker_error(&self, call: DockerCall, error: &docker::DockerError) {
        let operation = call.as_str();
        tracing::warn!(operation, %error, "Docker API call failed");
        self.metrics
            .docker_errors
            .with_label_values(&[operation])
            .inc();
    }

    pub fn settings(&self) -> &SchedulerSettings {
        &self.settings
    }

    fn active_ids_of(&self, job: &str) -> Vec<i64> {
        self.lock_active()
            .iter()
            .filter(|(_, a)| a.job == job)
            .map(|(id, _)| *id)
            .collect()
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, HashMap<i64, ActiveRun>> {
        self.active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_active(&self, run: i64) -> bool {
        self.lock_active().contains_key(&run)
    }

    /// Starts a run of `job_name` now (or as soon as a slot frees).
    pub async fn trigger(
        self: &Arc<Self>,
        job_name: &str,
        trigger: Trigger,
    ) -> Result<Triggered, TriggerError> {
        let job = self.job(job_name).ok_or(TriggerError::UnknownJob)?;
        let running = self.active_ids_of(job_name);
        if !running.is_empty() && job.overlap == Overlap::Forbid {
            let reason = format!("overlap: run {} is still active", running[0]);
            return self.skip(&job, trigger, reason, ReasonCode::Overlap).await;
        }
        let queued_now = self.metrics.queued.get().max(0) as usize;
        if queued_now >= self.settings.max_queued_runs && self.slots.available_permits() == 0 {
            return self
                .skip(
                    &job,
                    trigger,
                    "queue full (max_queued_runs)".to_owned(),
                    ReasonCode::QueueFull,
                )
                .await;
        }
        // Runs of this job on other schedulers sharing the database count
        // too: checked as the run is recorded.
        let only_if_idle = job.overlap == Overlap::Forbid;
        let id = match self
            .store
            .queue(&job.name, &trigger, 1, only_if_idle)
            .await?
        {
            Claim::Recorded(id) => id,
            Claim::TakenElsewhere => return Ok(Triggered::TakenElsewhere),
            Claim::Busy(other) => {
                let reason = format!("overlap: run {other} is still active");
                return self.skip(&job, trigger, reason, ReasonCode::Overlap).await;
            }
        };
        if job.overlap == Overlap::Replace {
            let replaced = StopReason::Replaced { by_run: id };
            for other in running {
                self.stop(other, replaced.clone());
            }
            self.replace_elsewhere(&job.name, &replaced).await;
        }
        self.spawn_run(job, id, trigger, 1);
        Ok(Triggered::Queued(id))
    }

    /// Asks other schedulers sharing the database to stop their runs of
    /// `job`. The new run is recorded already and must start, so a failure
    /// here is logged rather than returned.
    async fn replace_elsewhere(&self, job: &str, replaced: &StopReason) {
        let others = match self.store.unfinished_elsewhere(Some(job)).await {
            Ok(others) => others,
            Err(e) => {
                tracing::error!(job, error = %e, "cannot find other schedulers' runs to replace");
                return;
            }
        };
        for other in others {
            if let Err(e) = self.store.request_stop(other, &replaced.as_request()).await {
                tracing::error!(job, run = other, error = %e, "cannot ask for a replaced run to stop");
            }
        }
    }

    async fn skip(
        &self,
        job: &Job,
        trigger: Trigger,
        reason: String,
        code: ReasonCode,
    ) -> Result<Triggered, TriggerError> {
        let Some(id) = self
            .store
            .insert_skipped(&job.name, &trigger, &reason, code)
            .await?
        else {
            return Ok(Triggered::TakenElsewhere);
        };
        tracing::info!(job = %job.name, run = id, %reason, "run skipped");
        self.metrics
            .runs
            .with_label_values(&[job.name.as_str(), "skipped"])
            .inc();
        self.audit.record(audit::run_finished(
            &job.name,
            id,
            &trigger,
            RunStatus::Skipped,
            None,
            Some(&reason),
            Some(code),
        ));
        Ok(Triggered::Skipped(id, reason))
    }

    /// Accounts for `missed` scheduled times that passed while the scheduler
    /// was not running (or not connected to Docker) and will not run: they
    /// count in `missed_runs_total`, and with a `reason` one skipped run at
    /// the latest of them says so (without one, a catch-up run stands for
    /// them). Returns that run's id.
    pub async fn record_missed(
        &self,
        job_name: &str,
        latest: i64,
        missed: u64,
        reason: Option<String>,
    ) -> Result<Option<i64>, TriggerError> {
        let job = self.job(job_name).ok_or(TriggerError::UnknownJob)?;
        self.metrics
            .missed_runs
            .with_label_values(&[job_name])
            .inc_by(missed);
        let Some(reason) = reason else {
            return Ok(None);
        };
        match self
            .skip(
                &job,
                Trigger::Schedule { planned: latest },
                reason,
                ReasonCode::Missed,
            )
            .await?
        {
            Triggered::Skipped(id, _) | Triggered::Queued(id) => Ok(Some(id)),
            Triggered::TakenElsewhere => Ok(None),
        }
    }

    /// A caller's trigger, audited with who asked.
    pub async fn trigger_by(
        self: &Arc<Self>,
        job: &str,
        caller: &Caller,
    ) -> Result<Triggered, TriggerError> {
        // A user expects "Run now" to run now: while Docker is not
        // connected the run could only wait an unknown time, so say so and
        // queue nothing. (Scheduled runs already queued do wait; see
        // `run::execute`.)
        if self.job(job).is_some() {
            if let Err(reason) = self.docker_status().ready() {
                self.audit
                    .record(audit::trigger_refused(job, caller, &reason));
                return Err(TriggerError::DockerUnavailable(reason));
            }
        }
        let result = self
            .trigger(
                job,
                Trigger::Manual {
                    by: caller.subject.clone(),
                },
            )
            .await;
        match &result {
            Ok(Triggered::Queued(id)) => {
                self.audit
                    .record(audit::trigger(job, *id, caller, Outcome::Success))
            }
            Ok(Triggered::Skipped(id, _)) => {
                self.audit
                    .record(audit::trigger(job, *id, caller, Outcome::Failure))
            }
            // Only scheduled times are claimed; a manual run never is.
            Ok(Triggered::TakenElsewhere) | Err(_) => {}
        }
        result
    }

    /// What the scheduler knows about Docker now.
    pub fn docker_status(&self) -> DockerStatus {
        self.docker_status.borrow().clone()
    }

    fn set_docker_status(&self, status: DockerStatus) {
        self.metrics
            .docker_up
            .set(i64::from(status.ready().is_ok()));
        self.docker_status.send_replace(status);
    }

    /// Resolves once Docker is ready (connected and reconciled).
    async fn docker_ready(&self) {
        let mut status = self.docker_status.subscribe();
        let _ = status.wait_for(|s| s.ready().is_ok()).await;
    }

    /// Stops an active run; its task records the outcome. A run that
    /// another scheduler sharing the database owns is stopped by it,
    /// within a second (`replicas.rs`).
    pub async fn cancel(&self, run: &Run, caller: &Caller) -> Result<(), CancelError> {
        let reason = StopReason::Cancelled {
            by: caller.subject.clone(),
        };
        let stopped = self.stop(run.id, reason.clone())
            || self
                .store
                .request_stop(run.id, &reason.as_request())
                .await?;
        let outcome = if stopped {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        self.audit.record(audit::cancel(run, caller, outcome));
        if stopped {
            Ok(())
        } else {
            Err(CancelError::NotActive)
        }
    }

    /// Asks an active run of this process to stop; the first reason
    /// asked wins. False when the run is not active here.
    fn stop(&self, run: i64, reason: StopReason) -> bool {
        match self.lock_active().get(&run) {
            Some(active) => {
                active.stop.send_if_modified(|asked| {
                    let first = asked.is_none();
                    if first {
                        *asked = Some(reason);
                    }
                    first
                });
                true
            }
            None => false,
        }
    }

    /// Registers the run as active and starts its task.
    fn spawn_run(self: &Arc<Self>, job: Arc<Job>, id: i64, trigger: Trigger, attempt: u32) {
        let (stop_tx, stop_rx) = watch::channel(None);
        self.lock_active().insert(
            id,
            ActiveRun {
                job: job.name.clone(),
                stop: stop_tx,
            },
        );
        let engine = self.clone();
        tokio::spawn(async move {
            let last = engine
                .clone()
                .drive(job, id, trigger, attempt, stop_rx)
                .await;
            engine.lock_active().remove(&last);
        });
    }

    /// Lets a run adopted from a previous process be cancelled like ours.
    fn register_adopted(&self, id: i64, job: &str) -> watch::Receiver<Option<StopReason>> {
        let (stop_tx, stop_rx) = watch::channel(None);
        self.lock_active().insert(
            id,
            ActiveRun {
                job: job.to_owned(),
                stop: stop_tx,
            },
        );
        stop_rx
    }

    fn unregister(&self, id: i64) {
        self.lock_active().remove(&id);
    }

    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Runs queued, running or waiting to retry in this process.
    pub fn active_count(&self) -> usize {
        self.lock_active().len()
    }
}

pub use reconcile::{reconcile, Reconciled};

/// Resolves once `flag` is true (or its sender is gone). The guard that
/// `wait_for` returns is dropped here, so callers stay `Send`.
pub(crate) async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// How long after it was queued a run may still start, when something kept
/// it from starting on time (the scheduler stopped before its container
/// started, or Docker was away): the job's `starting_deadline` when it
/// catches up (`catch_up = "latest"`), which says how late its runs may
/// start; otherwise its `timeout`: a run that would have ended by now had it
/// started on time is not started late.
pub fn start_window(job: &Job) -> std::time::Duration {
    match job.catch_up {
        CatchUp::Latest { starting_deadline } => starting_deadline,
        CatchUp::None => job.timeout,
    }
}
