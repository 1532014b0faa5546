//! The job a run belongs to, as settling and recording the run need it.

use std::time::Duration;

use gatehouse_policy::notify::JobNotify;
use gatehouse_policy::scheduler::{Job, SchedulerSettings};

/// A run's job: the one the current policy has, or, for a run of the
/// previous process whose job the policy no longer has, only its name.
/// Such a run is still settled (supervised, recorded, notified about),
/// with the scheduler's defaults where the job would have said.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RunJob<'a> {
    Current(&'a Job),
    Removed { name: &'a str },
}

/// How long a removed job's adopted run may still run: at least an hour,
/// and never less than the stop grace period.
const REMOVED_JOB_TIMEOUT: Duration = Duration::from_secs(3600);

impl<'a> RunJob<'a> {
    /// The current job named `name`, if the policy has it.
    pub(crate) fn new(job: Option<&'a Job>, name: &'a str) -> RunJob<'a> {
        match job {
            Some(job) => RunJob::Current(job),
            None => RunJob::Removed { name },
        }
    }

    pub(crate) fn name(&self) -> &'a str {
        match self {
            RunJob::Current(job) => &job.name,
            RunJob::Removed { name } => name,
        }
    }

    pub(crate) fn timeout(&self, settings: &SchedulerSettings) -> Duration {
        match self {
            RunJob::Current(job) => job.timeout,
            RunJob::Removed { .. } => settings.stop_grace.max(REMOVED_JOB_TIMEOUT),
        }
    }

    /// Who hears about the run: a removed job's runs go to the defaults.
    pub(crate) fn notify(&self, settings: &'a SchedulerSettings) -> &'a JobNotify {
        match self {
            RunJob::Current(job) => &job.notify,
            RunJob::Removed { .. } => &settings.notify.default,
        }
    }

    /// A removed job is never retried.
    pub(crate) fn max_retries(&self) -> u32 {
        match self {
            RunJob::Current(job) => job.retries.max,
            RunJob::Removed { .. } => 0,
        }
    }

    /// The masker for an adopted run's output, from the job's env read
    /// now: the previous process's values are gone, and a secret rotated
    /// meanwhile is missed. A removed job has no env to mask.
    pub(crate) fn adopted_mask(&self) -> crate::mask::Masker {
        let RunJob::Current(job) = self else {
            return crate::mask::Masker::default();
        };
        match crate::job_env::resolve_all(job) {
            Ok(env) => crate::mask::Masker::for_env(job, &env),
            Err(reason) => {
                tracing::warn!(job = %job.name, %reason, "cannot read the env to mask an adopted run's output");
                crate::mask::Masker::default()
            }
        }
    }
}
