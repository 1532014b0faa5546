//! The Docker client: runs one job as one hardened container through the
//! Docker Engine API (bollard).
//!
//! Every container we create is locked down the same way, whatever the job
//! asks for: no privileges, all capabilities dropped (only `cap_add` comes
//! back), `no-new-privileges`, a memory limit without swap, a CPU and pids
//! limit, a size-limited `noexec` `/tmp`, and a capped json-file log. The
//! job's `ContainerSettings` (the policy's validated model, borrowed as
//! is) only choose the numbers. `host_config` and `container_config` are
//! pure so the exact request we send is unit-tested.
//!
//! Containers carry the labels [`LABEL_JOB`] and [`LABEL_RUN`] so a
//! restarted scheduler can find what it started ([`DockerClient::list_ours`]).
//!
//! With `executor = "swarm"` a run is a Swarm service instead
//! ([`swarm`]); [`Executor`] gives the engine the same operations on both.

mod client;
mod containers;
mod error;
mod executor;
mod logs;
pub mod mounts;
mod spec;
mod state;
pub mod swarm;
pub use client::DockerClient;
pub use error::DockerError;
pub use executor::Executor;
pub use logs::CapturedLogs;
pub use spec::{container_config, host_config, BindMount, ContainerSpec};
pub use state::{docker_time, ContainerState};

/// Label holding the job name of a container we created.
pub const LABEL_JOB: &str = "gatehouse.job";
/// Label holding the run number of a container we created.
pub const LABEL_RUN: &str = "gatehouse.run";
/// Which scheduler (which run history) owns the container, so that two
/// schedulers sharing a daemon never adopt or remove each other's.
pub const LABEL_SCHEDULER: &str = "gatehouse.scheduler";

/// The label filter that finds what scheduler `instance` created.
fn ours_filter(instance: &str) -> std::collections::HashMap<String, Vec<String>> {
    std::collections::HashMap::from([(
        "label".to_owned(),
        vec![
            LABEL_JOB.to_owned(),
            LABEL_RUN.to_owned(),
            format!("{LABEL_SCHEDULER}={instance}"),
        ],
    )])
}

/// The job and run our labels name; `None` for something of someone
/// else's that borrowed our label names.
fn job_and_run(labels: &std::collections::HashMap<String, String>) -> Option<(String, i64)> {
    Some((
        labels.get(LABEL_JOB)?.clone(),
        labels.get(LABEL_RUN)?.parse().ok()?,
    ))
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub exit_code: i64,
    pub oom_killed: bool,
}

/// A container carrying our labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurContainer {
    pub id: String,
    pub job: String,
    pub run: i64,
    pub running: bool,
}

#[cfg(test)]
mod tests;
