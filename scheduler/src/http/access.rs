//! What the API and the dashboard share: the handlers' state, the error a
//! client sees, the job view, and the only ways to see or act on a job or
//! run (`visible_job`, `visible_run`, `trigger`, `cancel`), so a page can
//! never show or do more than the API would.

use std::sync::Arc;

use chrono::Utc;
use gatehouse_policy::scheduler::Job;
use serde::Serialize;

use super::error::{ApiError, ErrorCode};
use crate::auth::{Caller, Verifier};
use crate::engine::{CancelError, RunEngine, TriggerError, Triggered};
use crate::metrics::Metrics;
use crate::store::{Run, RunFilter};

const NEXT_RUNS_SHOWN: usize = 5;

#[derive(Clone)]
pub struct Api {
    pub engine: Arc<RunEngine>,
    pub verifier: Arc<Verifier>,
    pub metrics: Arc<Metrics>,
}

#[derive(Serialize)]
pub struct JobView {
    pub name: String,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub description: Option<String>,
    pub next_runs: Vec<String>,
    pub image: String,
    pub image_pinned: bool,
    pub timeout_seconds: u64,
    pub overlap: &'static str,
    pub may_run: bool,
    pub last_run: Option<Run>,
}

pub(crate) async fn job_view(engine: &RunEngine, job: &Job, caller: &Caller) -> JobView {
    let now = Utc::now();
    let last_run = engine
        .store()
        .list(&RunFilter {
            job: Some(job.name.clone()),
            status: None,
            limit: 1,
        })
        .await
        .ok()
        .and_then(|mut runs| runs.pop());
    JobView {
        name: job.name.clone(),
        schedule: job.schedule.as_ref().map(|s| s.expression().to_owned()),
        timezone: job.schedule.as_ref().map(|s| s.timezone_name().to_owned()),
        description: job.schedule.as_ref().map(|s| s.describe()),
        next_runs: job
            .schedule
            .as_ref()
            .map(|s| {
                s.upcoming(now, NEXT_RUNS_SHOWN)
                    .iter()
                    .map(|t| t.to_rfc3339())
                    .collect()
            })
            .unwrap_or_default(),
        image: job.image.clone(),
        image_pinned: job.image_pinned,
        timeout_seconds: job.timeout.as_secs(),
        overlap: match job.overlap {
            gatehouse_policy::scheduler::Overlap::Forbid => "forbid",
            gatehouse_policy::scheduler::Overlap::Allow => "allow",
            gatehouse_policy::scheduler::Overlap::Replace => "replace",
        },
        may_run: job.may_run(&caller.roles),
        last_run,
    }
}

/// The job, if it exists and the caller may see it.
pub(crate) fn visible_job(api: &Api, name: &str, caller: &Caller) -> Result<Arc<Job>, ApiError> {
    match api.engine.job(name) {
        Some(job) if job.may_view(&caller.roles) => Ok(job),
        Some(_) => {
            api.metrics
                .api_denials
                .with_label_values(&["forbidden"])
                .inc();
            Err(ApiError::not_found("job"))
        }
        None => Err(ApiError::not_found("job")),
    }
}

/// A manual run of `name`, if `caller` may see and run it. Shared by the
/// API and the dashboard so both authorize and audit the same way.
/// The run a caller's trigger recorded: its id, and why it was skipped
/// when it was.
pub(crate) async fn trigger(
    api: &Api,
    name: &str,
    caller: &Caller,
) -> Result<(i64, Option<String>), ApiError> {
    let job = visible_job(api, name, caller)?;
    if !job.may_run(&caller.roles) {
        api.metrics
            .api_denials
            .with_label_values(&["forbidden"])
            .inc();
        api.engine
            .audit
            .record(crate::audit::trigger_denied(name, caller));
        return Err(ApiError::forbidden(
            "your roles may view this job but not run it",
        ));
    }
    match api.engine.trigger_by(name, caller).await {
        Ok(Triggered::Queued(id)) => Ok((id, None)),
        Ok(Triggered::Skipped(id, reason)) => Ok((id, Some(reason))),
        // Only scheduled times are claimed by one scheduler of several.
        Ok(Triggered::TakenElsewhere) => Err(ApiError::internal("a manual run was not recorded")),
        Err(TriggerError::UnknownJob) => Err(ApiError::not_found("job")),
        Err(TriggerError::DockerUnavailable(reason)) => Err(ApiError::docker_unavailable(&reason)),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Run ids are positive integers; anything else names no run.
pub(crate) fn run_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found("run"))
}

pub(crate) async fn visible_run(
    api: &Api,
    id: i64,
    caller: &Caller,
) -> Result<(Run, Arc<Job>), ApiError> {
    let run = api
        .engine
        .store()
        .get(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("run"))?;
    let job = visible_job(api, &run.job, caller).map_err(|_| ApiError::not_found("run"))?;
    Ok((run, job))
}

/// Cancels run `id`, if `caller` may see and run its job. Shared by the API
/// and the dashboard.
pub(crate) async fn cancel(api: &Api, id: i64, caller: &Caller) -> Result<(), ApiError> {
    let (run, job) = visible_run(api, id, caller).await?;
    if !job.may_run(&caller.roles) {
        api.metrics
            .api_denials
            .with_label_values(&["forbidden"])
            .inc();
        api.engine.audit.record(crate::audit::cancel(
            &run,
            caller,
            gatehouse_audit::Outcome::Denied,
        ));
        return Err(ApiError::forbidden(
            "your roles may view this job but not cancel its runs",
        ));
    }
    match api.engine.cancel(&run, caller).await {
        Ok(()) => Ok(()),
        Err(CancelError::NotActive) => Err(ApiError::new(
            ErrorCode::NotActive,
            format!("run {id} is {}", run.status.as_str()),
        )),
        Err(CancelError::Store(e)) => Err(ApiError::internal(e)),
    }
}
