//! Startup: every run the database still calls unfinished is settled
//! against what Docker has, so no run is silently forgotten across a
//! `kill -9` of the scheduler or a restart of dockerd.
//!
//! - container still running → adopted and supervised (timeout counted
//!   from its recorded start);
//! - container exited → its outcome, exit code and logs are recorded;
//! - no container → the run is marked `lost`.
//!
//! Containers with our labels but no unfinished run are removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_policy::scheduler::Job;
use tokio::time::Instant;

use super::Engine;
use crate::docker::{DockerError, OurContainer};
use crate::store::{now_ms, Finish, Run, RunStatus};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub adopted: usize,
    pub recorded: usize,
    pub lost: usize,
    pub removed_strays: usize,
}

pub async fn reconcile(engine: &Arc<Engine>) -> Result<Reconciled, DockerError> {
    let containers: HashMap<i64, OurContainer> = engine
        .docker
        .list_ours(&engine.instance)
        .await?
        .into_iter()
        .map(|c| (c.run, c))
        .collect();
    let unfinished = engine.store.unfinished().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read unfinished runs");
        Vec::new()
    });
    let mut done = Reconciled::default();
    let mut claimed = Vec::new();
    for run in unfinished {
        let job = engine
            .job(&run.job)
            .unwrap_or_else(|| Arc::new(placeholder_job(engine, &run.job)));
        match containers.get(&run.id) {
            Some(c) if c.running => {
                claimed.push(c.id.clone());
                adopt(engine, job, run, c.id.clone());
                done.adopted += 1;
            }
            Some(c) => {
                claimed.push(c.id.clone());
                // Exited while we were away: supervision returns at once.
                let mut stop = engine.register_adopted(run.id, &run.job);
                let started_at = run.started_at.unwrap_or(run.queued_at);
                engine
                    .supervise_and_record(
                        &job,
                        run.id,
                        &run.trigger,
                        &c.id,
                        started_at,
                        Instant::now() + Duration::from_secs(3600),
                        &mut stop,
                        &adopted_mask(&job),
                    )
                    .await;
                engine.unregister(run.id);
                done.recorded += 1;
            }
            None => {
                let reason = if run.status == RunStatus::Queued {
                    "the scheduler stopped before the run started"
                } else {
                    "the container vanished while the scheduler was away"
                };
                let finish = Finish {
                    reason: Some(reason.to_owned()),
                    ..Finish::default()
                };
                engine.record(&job, run.id, &run.trigger, RunStatus::Lost, finish, None);
                done.lost += 1;
            }
        }
    }
    for (run, c) in &containers {
        if !claimed.contains(&c.id) {
            tracing::warn!(container = %c.id, run, job = %c.job, "removing a container of ours that no unfinished run owns");
            if let Err(e) = engine.docker.remove(&c.id).await {
                engine.docker_error("remove", &e);
            } else {
                done.removed_strays += 1;
            }
        }
    }
    tracing::info!(?done, "reconciled runs with Docker");
    Ok(done)
}

fn adopt(engine: &Arc<Engine>, job: Arc<Job>, run: Run, container: String) {
    tracing::info!(job = %run.job, run = run.id, %container, "adopting a running container");
    let mut stop = engine.register_adopted(run.id, &run.job);
    let started_at = run.started_at.unwrap_or(run.queued_at);
    let elapsed = Duration::from_millis((now_ms() - started_at).max(0) as u64);
    let deadline = Instant::now() + job.timeout.saturating_sub(elapsed);
    let engine = engine.clone();
    tokio::spawn(async move {
        engine
            .supervise_and_record(
                &job,
                run.id,
                &run.trigger,
                &container,
                started_at,
                deadline,
                &mut stop,
                &adopted_mask(&job),
            )
            .await;
        engine.unregister(run.id);
    });
}

/// An adopted run's masker, from the job's env read now: the previous
/// process's values are gone, and a secret rotated meanwhile is missed.
fn adopted_mask(job: &Job) -> crate::mask::Masker {
    match super::run::resolve_env(job) {
        Ok(env) => crate::mask::Masker::for_env(job, &env),
        Err(reason) => {
            tracing::warn!(job = %job.name, %reason, "cannot read the env to mask an adopted run's output");
            crate::mask::Masker::default()
        }
    }
}

/// A run of a job the current policy no longer has is still settled, with
/// the scheduler's defaults for what it needs (its timeout).
fn placeholder_job(engine: &Engine, name: &str) -> Job {
    Job {
        name: name.to_owned(),
        schedule: None,
        image: String::new(),
        image_pinned: false,
        pull: gatehouse_policy::scheduler::PullPolicy::Never,
        command: Vec::new(),
        env: Vec::new(),
        timeout: engine.settings.stop_grace.max(Duration::from_secs(3600)),
        overlap: gatehouse_policy::scheduler::Overlap::Allow,
        catch_up: gatehouse_policy::scheduler::CatchUp::None,
        retries: gatehouse_policy::scheduler::Retries {
            max: 0,
            backoff: Duration::from_secs(30),
        },
        run_roles: Default::default(),
        view_roles: Default::default(),
        container: gatehouse_policy::scheduler::ContainerSettings {
            user: String::new(),
            read_only_rootfs: true,
            cap_add: Vec::new(),
            network: "none".into(),
            memory: 0,
            cpus: 0.0,
            pids: 0,
            tmp_size: 0,
            shm_size: 0,
            nofile: 0,
            nproc: 0,
            mounts: Vec::new(),
        },
        notify: engine.settings.notify.default.clone(),
    }
}
