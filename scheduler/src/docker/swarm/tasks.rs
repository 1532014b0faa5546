//! A run's service as the engine sees a container: read from its task
//! (a replicated job with one completion and no restarts has one), in the
//! same [`ContainerState`] terms, so supervision and reconciliation work
//! the same on both executors.

use bollard::models::{Task, TaskState};

use super::super::{docker_time, ContainerState, Exit};

/// The state of the run whose service has `tasks` (none yet while Swarm
/// has not scheduled it). The newest task counts.
pub fn run_state(tasks: &[Task]) -> Result<ContainerState, String> {
    let newest = tasks.iter().max_by(|a, b| {
        let at = |t: &Task| {
            t.status
                .as_ref()
                .and_then(|s| s.timestamp.as_deref())
                .and_then(docker_time)
        };
        at(a).cmp(&at(b))
    });
    let Some(task) = newest else {
        return Ok(ContainerState::Running { started_at: None });
    };
    let status = task.status.as_ref().ok_or("a task without a status")?;
    let at = status.timestamp.as_deref().and_then(docker_time);
    let exit_code = status.container_status.as_ref().and_then(|c| c.exit_code);
    let error = status.err.clone().filter(|e| !e.is_empty());
    match status.state {
        Some(TaskState::RUNNING) => Ok(ContainerState::Running { started_at: at }),
        Some(TaskState::COMPLETE) => Ok(ended(exit_code.unwrap_or(0), at)),
        // Failed with an exit code: the process ran and exited non-zero.
        // Without one, the container never ran (no such image, a bad
        // mount): nothing to report as an exit.
        Some(TaskState::FAILED) => match exit_code {
            Some(code) if started(task) => Ok(ended(code, at)),
            _ => Ok(ContainerState::NeverStarted { error }),
        },
        Some(TaskState::REJECTED) => Ok(ContainerState::NeverStarted { error }),
        Some(TaskState::SHUTDOWN | TaskState::REMOVE | TaskState::ORPHANED) => {
            Ok(ContainerState::Removing)
        }
        // Before its process runs (`is_pending`).
        Some(_) => Ok(ContainerState::Running { started_at: None }),
        None => Err("Swarm reports no task state".to_owned()),
    }
}

/// Swarm has the task but has not run its process yet.
pub fn is_pending(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::NEW
            | TaskState::ALLOCATED
            | TaskState::PENDING
            | TaskState::ASSIGNED
            | TaskState::ACCEPTED
            | TaskState::PREPARING
            | TaskState::READY
            | TaskState::STARTING
    )
}

/// Whether the task's container was created (a container id is set).
fn started(task: &Task) -> bool {
    task.status
        .as_ref()
        .and_then(|s| s.container_status.as_ref())
        .and_then(|c| c.container_id.as_deref())
        .is_some_and(|id| !id.is_empty())
}

fn ended(exit_code: i64, finished_at: Option<chrono::DateTime<chrono::Utc>>) -> ContainerState {
    ContainerState::Ended {
        exit: Exit {
            exit_code,
            oom_killed: false,
        },
        started_at: None,
        finished_at,
    }
}

/// The id of the task's container, on whichever node ran it.
pub fn container_id(tasks: &[Task]) -> Option<String> {
    tasks
        .iter()
        .filter_map(|t| {
            t.status
                .as_ref()?
                .container_status
                .as_ref()?
                .container_id
                .clone()
        })
        .find(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerStatus, TaskStatus};

    use super::*;

    fn task(state: TaskState, exit: Option<i64>, container: Option<&str>, at: &str) -> Task {
        Task {
            status: Some(TaskStatus {
                timestamp: Some(at.to_owned()),
                state: Some(state),
                err: Some("no such image".to_owned()),
                container_status: Some(ContainerStatus {
                    container_id: container.map(str::to_owned),
                    exit_code: exit,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const T1: &str = "2026-12-07T10:00:00Z";
    const T2: &str = "2026-12-07T10:00:05Z";

    #[test]
    fn a_service_not_scheduled_yet_is_running() {
        assert!(matches!(run_state(&[]), Ok(ContainerState::Running { .. })));
        let pending = task(TaskState::PENDING, None, None, T1);
        assert!(matches!(
            run_state(&[pending]),
            Ok(ContainerState::Running { started_at: None })
        ));
    }

    #[test]
    fn an_exit_needs_a_container_that_ran() {
        let done = task(TaskState::COMPLETE, Some(0), Some("c1"), T2);
        assert_eq!(run_state(&[done]).unwrap().exit().unwrap().exit_code, 0);
        let failed = task(TaskState::FAILED, Some(3), Some("c1"), T2);
        assert_eq!(run_state(&[failed]).unwrap().exit().unwrap().exit_code, 3);
        // Failed before a container existed: no exit code, never started.
        let no_image = task(TaskState::FAILED, None, None, T2);
        assert_eq!(
            run_state(&[no_image]).unwrap(),
            ContainerState::NeverStarted {
                error: Some("no such image".to_owned())
            }
        );
        let rejected = task(TaskState::REJECTED, None, None, T2);
        assert!(matches!(
            run_state(&[rejected]),
            Ok(ContainerState::NeverStarted { .. })
        ));
    }

    #[test]
    fn the_newest_task_counts() {
        let old = task(TaskState::RUNNING, None, Some("c1"), T1);
        let new = task(TaskState::COMPLETE, Some(0), Some("c1"), T2);
        assert!(run_state(&[old.clone(), new.clone()])
            .unwrap()
            .exit()
            .is_some());
        assert!(run_state(&[new, old]).unwrap().exit().is_some());
        let gone = task(TaskState::SHUTDOWN, None, Some("c1"), T2);
        assert_eq!(run_state(&[gone]).unwrap(), ContainerState::Removing);
    }
}
