//! One run, from waiting for a slot to its recorded outcome.

use std::borrow::Cow;
use std::sync::Arc;

use gatehouse_policy::scheduler::Job;
use tokio::sync::watch;
use tokio::time::Instant;

use super::run_job::RunJob;
use super::stop::{stop_reason, wait_for_stop};
use super::supervise::{exit_outcome, Ending};
use super::DockerCall;
use super::{RunEngine, StopReason};
use crate::audit;
use crate::docker::{self, ContainerSpec, DockerError};
use crate::mask::Masker;
use crate::store::{now_ms, Finish, ReasonCode, RunStatus, Trigger};

impl RunEngine {
    /// Runs attempt after attempt while the job's retries allow. Returns the
    /// id of the last attempt, under which the run is registered as active.
    pub(super) async fn drive(
        self: Arc<Self>,
        job: Arc<Job>,
        mut id: i64,
        mut trigger: Trigger,
        mut attempt: u32,
        mut stop: watch::Receiver<Option<StopReason>>,
    ) -> i64 {
        loop {
            let status = self.execute(&job, id, &trigger, &mut stop).await;
            let retryable = matches!(status, Some(RunStatus::Failed | RunStatus::TimedOut));
            if !retryable || attempt > job.retries.max || self.shutting_down() {
                return id;
            }
            // Backoff doubles per attempt: 30s, 60s, 120s...
            let backoff = job.retries.backoff * 2u32.saturating_pow(attempt - 1);
            let next_trigger = Trigger::Retry {
                of: id,
                by: trigger.by().map(str::to_owned),
            };
            let next = match self
                .store
                .queue(&job.name, &next_trigger, attempt + 1, false)
                .await
            {
                Ok(crate::store::Claim::Recorded(next)) => next,
                // Only first attempts of scheduled times are claimed.
                Ok(claim) => {
                    tracing::error!(job = %job.name, run = id, ?claim, "a retry was not recorded");
                    return id;
                }
                Err(e) => {
                    tracing::error!(job = %job.name, run = id, error = %e, "cannot record a retry");
                    return id;
                }
            };
            // The retry takes over this task's place among the active runs,
            // so cancelling it during the backoff works.
            {
                let mut active = self.lock_active();
                if let Some(entry) = active.remove(&id) {
                    active.insert(next, entry);
                }
            }
            tracing::info!(job = %job.name, failed = id, retry = next, ?backoff, "retrying");
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {}
                _ = crate::engine::until_true(&mut shutdown) => return next,
            }
            id = next;
            trigger = next_trigger;
            attempt += 1;
        }
    }

    /// Step 1 of `execute`: a concurrency slot. `Err` carries what
    /// `execute` returns: the recorded status of a run cancelled while
    /// queued, or `None` when the scheduler is shutting down.
    async fn wait_for_slot(
        &self,
        job: &Job,
        id: i64,
        trigger: &Trigger,
        stop: &mut watch::Receiver<Option<StopReason>>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Option<RunStatus>> {
        self.metrics.queued.inc();
        let mut shutdown = self.shutdown.clone();
        let permit = tokio::select! {
            permit = self.slots.clone().acquire_owned() => permit.ok(),
            _ = wait_for_stop(stop) => None,
            _ = crate::engine::until_true(&mut shutdown) => {
                self.metrics.queued.dec();
                return Err(None);
            }
        };
        self.metrics.queued.dec();
        match (permit, stop_reason(stop)) {
            (Some(permit), None) => Ok(permit),
            // Cancelled or replaced while queued (or as the slot came).
            (_, reason) => {
                let finish = match reason {
                    Some(reason) => Finish::because(reason.code(), reason.describe()),
                    None => Finish::default(),
                };
                let job = RunJob::Current(job);
                let status = self
                    .record(job, id, trigger, RunStatus::Cancelled, finish, None)
                    .await;
                Err(Some(status))
            }
        }
    }

    /// Step 2 of `execute`: the env, the image and the container's spec
    /// with its mount sources checked on disk. A failure is recorded here;
    /// its status is returned.
    async fn prepare<'j>(
        &self,
        job: &'j Job,
        id: i64,
        trigger: &Trigger,
    ) -> Result<(ContainerSpec<'j>, Masker), RunStatus> {
        let env = match crate::job_env::resolve_all(job) {
            Ok(env) => env,
            Err(reason) => {
                return Err(self.fail_before_start(job, id, trigger, reason, None).await);
            }
        };
        if let Err(e) = self.executor.ensure_image(&job.image, job.pull).await {
            self.docker_error(DockerCall::EnsureImage, &e);
            return Err(self
                .fail_before_start(job, id, trigger, e.to_string(), Some(&e))
                .await);
        }
        let mask = Masker::for_env(job, &env);
        let mut spec = container_spec(
            job,
            id,
            env,
            self.settings.log_cap as usize,
            self.instance(),
        );
        // Mount sources are checked on disk now, not only as policy text.
        spec.mounts = match docker::mounts::confine(&job.container.mounts) {
            Ok(mounts) => mounts,
            Err(refused) => {
                let reason = refused.to_string();
                self.audit
                    .record(audit::run_refused(&job.name, id, trigger, &reason));
                return Err(self.fail_before_start(job, id, trigger, reason, None).await);
            }
        };
        Ok((spec, mask))
    }

    /// One attempt. Returns the terminal status it recorded, or `None`
    /// when the scheduler is shutting down and the run stays to be adopted.
    async fn execute(
        self: &Arc<Self>,
        job: &Job,
        id: i64,
        trigger: &Trigger,
        stop: &mut watch::Receiver<Option<StopReason>>,
    ) -> Option<RunStatus> {
        // 1. Wait for a slot; a cancel or replace while queued ends the run.
        let _permit = match self.wait_for_slot(job, id, trigger, stop).await {
            Ok(permit) => permit,
            Err(outcome) => return outcome,
        };
        // A run queued while the daemon is away (a dockerd restart) waits
        // for it, within its start window, rather than failing at once.
        if let Err(outcome) = self.until_docker_ready(job, id, trigger, stop).await {
            return outcome;
        }
        match self.store.set_status(id, RunStatus::Starting).await {
            Ok(()) => {}
            // Presumed dead and adopted by another scheduler: it starts it.
            Err(e @ crate::store::StoreError::NotOwner(_)) => {
                tracing::error!(run = id, error = %e, "not starting the run");
                return None;
            }
            Err(e) => tracing::error!(run = id, error = %e, "cannot record the run's start"),
        }

        // 2. Everything that can fail before Docker runs anything.
        let (spec, mask) = match self.prepare(job, id, trigger).await {
            Ok(prepared) => prepared,
            Err(status) => return Some(status),
        };
        let container = match self.executor.create(&spec).await {
            Ok(container) => container,
            Err(e) => {
                self.docker_error(DockerCall::Create, &e);
                return Some(
                    self.fail_before_start(job, id, trigger, e.to_string(), Some(&e))
                        .await,
                );
            }
        };
        if let Err(e) = self.store.set_container(id, &container).await {
            tracing::error!(run = id, error = %e, "cannot record the container id");
        }

        // 3. Start it. Jitter is measured to the start request.
        if let Some(planned) = trigger.planned() {
            let late = (now_ms() - planned).max(0) as f64 / 1000.0;
            self.metrics
                .schedule_jitter
                .with_label_values(&[job.name.as_str()])
                .observe(late);
        }
        if let Err(e) = self.executor.start(&container).await {
            self.docker_error(DockerCall::Start, &e);
            let _ = self.executor.remove(&container).await;
            return Some(
                self.fail_before_start(job, id, trigger, e.to_string(), Some(&e))
                    .await,
            );
        }
        let started_at = now_ms();
        if let Err(e) = self.store.mark_running(id, started_at).await {
            tracing::error!(run = id, error = %e, "cannot record that the run is running");
        }
        self.audit.record(audit::run_started(
            &job.name, id, trigger, &container, &job.image,
        ));
        tracing::info!(job = %job.name, run = id, %container, "run started");

        // 4. Supervise until it ends, then record.
        let deadline = Instant::now() + job.timeout;
        self.supervise_and_record(
            RunJob::Current(job),
            id,
            trigger,
            &container,
            started_at,
            deadline,
            stop,
            &mask,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn supervise_and_record(
        &self,
        job: RunJob<'_>,
        id: i64,
        trigger: &Trigger,
        container: &str,
        started_at: i64,
        deadline: Instant,
        stop: &mut watch::Receiver<Option<StopReason>>,
        mask: &Masker,
    ) -> Option<RunStatus> {
        self.metrics.running.inc();
        let ending = self.supervise(container, deadline, stop).await;
        self.metrics.running.dec();
        let (status, exit, reason) = outcome(ending, job.timeout(&self.settings))?;
        let logs = match self
            .executor
            .logs_masked(container, self.settings.log_cap as usize, mask)
            .await
        {
            Ok(logs) => Some(logs),
            Err(e) => {
                if !matches!(e, DockerError::NotFound { .. }) {
                    self.docker_error(DockerCall::Logs, &e);
                }
                None
            }
        };
        if let Err(e) = self.executor.remove(container).await {
            self.docker_error(DockerCall::Remove, &e);
        }
        let finish = Finish {
            exit_code: exit.map(|e| e.exit_code),
            oom_killed: exit.is_some_and(|e| e.oom_killed),
            logs_truncated: logs.as_ref().is_some_and(|l| l.truncated),
            logs: logs.map(|l| l.bytes),
            reason_code: reason.as_ref().map(|(code, _)| *code),
            reason: reason.map(|(_, text)| text),
        };
        let duration = (now_ms() - started_at).max(0) as f64 / 1000.0;
        Some(
            self.record(job, id, trigger, status, finish, Some(duration))
                .await,
        )
    }
    async fn fail_before_start(
        &self,
        job: &Job,
        id: i64,
        trigger: &Trigger,
        reason: String,
        error: Option<&DockerError>,
    ) -> RunStatus {
        tracing::warn!(job = %job.name, run = id, %reason, "run could not start");
        let code = match error {
            Some(e) if e.is_connection_error() => ReasonCode::DockerUnavailable,
            _ => ReasonCode::StartFailed,
        };
        self.record(
            RunJob::Current(job),
            id,
            trigger,
            RunStatus::Failed,
            Finish::because(code, reason),
            None,
        )
        .await
    }

    /// Writes the terminal state, metrics and the audit record.
    pub(super) async fn record(
        &self,
        job: RunJob<'_>,
        id: i64,
        trigger: &Trigger,
        status: RunStatus,
        finish: Finish,
        duration: Option<f64>,
    ) -> RunStatus {
        match self.store.finish(id, status, &finish).await {
            Ok(true) => {}
            Ok(false) => return status, // already recorded by another path
            Err(e) => tracing::error!(run = id, error = %e, "cannot record the run's outcome"),
        }
        let name = job.name();
        self.metrics
            .runs
            .with_label_values(&[name, status.as_str()])
            .inc();
        if let Some(seconds) = duration {
            self.metrics
                .run_duration
                .with_label_values(&[name])
                .observe(seconds);
        }
        if status == RunStatus::Succeeded {
            self.metrics
                .last_success
                .with_label_values(&[name])
                .set(now_ms() as f64 / 1000.0);
        }
        tracing::info!(job = name, run = id, status = status.as_str(), exit_code = ?finish.exit_code, reason = ?finish.reason, reason_code = ?finish.reason_code.map(ReasonCode::as_str), "run finished");
        self.audit.record(audit::run_finished(
            name,
            id,
            trigger,
            status,
            finish.exit_code,
            finish.reason.as_deref(),
            finish.reason_code,
        ));
        self.notify_outcome(job, id, status, &finish).await;
        status
    }
}

/// A run's status, its exit if it has one, and the reason.
type Outcome = (
    RunStatus,
    Option<docker::Exit>,
    Option<(ReasonCode, String)>,
);

/// What a supervised run's ending is recorded as: its status, its exit if
/// it has one, and the reason; `None` when supervision was abandoned (the
/// scheduler is shutting down) and the run is left to be adopted.
fn outcome(ending: Ending, timeout: std::time::Duration) -> Option<Outcome> {
    Some(match ending {
        Ending::Abandoned => return None,
        Ending::Exited {
            exit,
            during_outage,
        } => {
            let (status, reason) = exit_outcome(exit, during_outage);
            (status, Some(exit), reason)
        }
        Ending::TimedOut(exit) => (
            RunStatus::TimedOut,
            exit,
            Some((
                ReasonCode::Timeout,
                format!("timed out after {}", humantime::format_duration(timeout)),
            )),
        ),
        Ending::Stopped(reason, exit) => (
            RunStatus::Cancelled,
            exit,
            Some((reason.code(), reason.describe())),
        ),
        Ending::Vanished => (
            RunStatus::Lost,
            None,
            Some((
                ReasonCode::ContainerVanished,
                "the container vanished".to_owned(),
            )),
        ),
        Ending::NeverStarted => (
            RunStatus::Lost,
            None,
            Some((
                ReasonCode::NeverStarted,
                "never started: Docker says the container was never started".to_owned(),
            )),
        ),
    })
}

/// Container names are unique per Docker daemon, and two schedulers (two
/// databases) may share one: the instance id keeps their run 1s apart.
pub(crate) fn container_name(instance: &str, job: &str, run: i64) -> String {
    format!("gatehouse-{instance}-{job}-{run}")
}

/// The container for a run: the job's validated container settings,
/// borrowed as they are (the policy crate already bounded each loosening),
/// and what this run adds. The mounts are filled in once checked on disk.
pub(crate) fn container_spec<'j>(
    job: &'j Job,
    run: i64,
    env: Vec<(String, String)>,
    log_cap: usize,
    instance: &str,
) -> ContainerSpec<'j> {
    ContainerSpec {
        name: container_name(instance, &job.name, run),
        image: job.image.clone(),
        command: job.command.clone(),
        env,
        settings: Cow::Borrowed(&job.container),
        mounts: Vec::new(),
        job: job.name.clone(),
        run,
        instance: instance.to_owned(),
        log_cap_bytes: log_cap,
    }
}
