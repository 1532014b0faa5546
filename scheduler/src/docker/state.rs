//! What Docker says about a container, read from inspect's `State`:
//! whether anything ever ran in it, and how it ended.
//!
//! `wait` alone cannot tell: waiting for "not-running" on a container that
//! was created and never started returns at once with status 0, which is
//! how a crash between create and start once became a recorded success.
//! So an exit code comes only from a state that says the container ran
//! (`StartedAt` set) and ended (`exited` or `dead`).

use bollard::models::{ContainerState as RawState, ContainerStateStatusEnum as Status};
use chrono::{DateTime, Utc};

use super::Exit;

/// A container's life as far as a run is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Created and never started, or a start that failed before the
    /// process ran (Docker then leaves it `created`, with `Error` set).
    /// Nothing ran: there is no exit code to record.
    NeverStarted { error: Option<String> },
    /// Running, paused, restarting or stopping.
    Running { started_at: Option<DateTime<Utc>> },
    /// It ran and ended.
    Ended {
        exit: Exit,
        started_at: Option<DateTime<Utc>>,
        finished_at: Option<DateTime<Utc>>,
    },
    /// Being removed: whatever ran there is gone with it.
    Removing,
}

impl ContainerState {
    /// Reads inspect's `State`. An ended container without an exit code,
    /// or a state Docker did not name, is an error, never a guess.
    pub fn from_inspect(state: &RawState) -> Result<ContainerState, String> {
        let started_at = state.started_at.as_deref().and_then(docker_time);
        let finished_at = state.finished_at.as_deref().and_then(docker_time);
        let error = state.error.clone().filter(|e| !e.is_empty());
        match state.status {
            Some(Status::CREATED) => Ok(ContainerState::NeverStarted { error }),
            Some(Status::RUNNING | Status::PAUSED | Status::RESTARTING | Status::STOPPING) => {
                Ok(ContainerState::Running { started_at })
            }
            Some(Status::REMOVING) => Ok(ContainerState::Removing),
            // Exited without ever having started: a start that failed.
            Some(Status::EXITED | Status::DEAD) if started_at.is_none() => {
                Ok(ContainerState::NeverStarted { error })
            }
            Some(Status::EXITED | Status::DEAD) => {
                let exit_code = state
                    .exit_code
                    .ok_or("the container ended but Docker reports no exit code")?;
                Ok(ContainerState::Ended {
                    exit: Exit {
                        exit_code,
                        oom_killed: state.oom_killed.unwrap_or(false),
                    },
                    started_at,
                    finished_at,
                })
            }
            Some(Status::EMPTY) | None => Err("Docker reports no container status".to_owned()),
        }
    }

    /// How it ended, if it ran and ended.
    pub fn exit(&self) -> Option<Exit> {
        match self {
            ContainerState::Ended { exit, .. } => Some(*exit),
            _ => None,
        }
    }
}

/// Docker's RFC 3339 times; its zero time (`0001-01-01T00:00:00Z`) means
/// "never".
pub fn docker_time(text: &str) -> Option<DateTime<Utc>> {
    let time = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    (time.timestamp() > 0).then_some(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEVER: &str = "0001-01-01T00:00:00Z";

    fn raw(status: Status, started: &str, finished: &str, exit: Option<i64>) -> RawState {
        RawState {
            status: Some(status),
            started_at: Some(started.to_owned()),
            finished_at: Some(finished.to_owned()),
            exit_code: exit,
            ..RawState::default()
        }
    }

    #[test]
    fn a_created_container_never_started_and_has_no_exit_code() {
        // What inspect says between create and start: exit code 0, which a
        // bare wait would have reported as a success.
        let state = ContainerState::from_inspect(&raw(Status::CREATED, NEVER, NEVER, Some(0)));
        assert_eq!(state, Ok(ContainerState::NeverStarted { error: None }));
        assert_eq!(state.expect("state").exit(), None);
    }

    #[test]
    fn a_failed_start_is_never_started_with_dockers_error() {
        let mut failed = raw(Status::CREATED, NEVER, NEVER, Some(127));
        failed.error = Some("exec: \"nope\": executable file not found".into());
        assert_eq!(
            ContainerState::from_inspect(&failed),
            Ok(ContainerState::NeverStarted {
                error: Some("exec: \"nope\": executable file not found".into())
            })
        );
        // Older engines mark such a container exited, still without a start.
        let exited = raw(Status::EXITED, NEVER, "2026-01-01T00:00:01Z", Some(127));
        assert!(matches!(
            ContainerState::from_inspect(&exited),
            Ok(ContainerState::NeverStarted { .. })
        ));
    }

    #[test]
    fn an_ended_container_reports_its_exit_and_times() {
        let mut ended = raw(
            Status::EXITED,
            "2026-01-01T00:00:00.5Z",
            "2026-01-01T00:00:03Z",
            Some(143),
        );
        ended.oom_killed = Some(false);
        let state = ContainerState::from_inspect(&ended).expect("state");
        assert_eq!(
            state.exit(),
            Some(Exit {
                exit_code: 143,
                oom_killed: false
            })
        );
        let ContainerState::Ended {
            started_at,
            finished_at,
            ..
        } = state
        else {
            panic!("not ended: {state:?}");
        };
        assert_eq!(
            finished_at.map(|t| t.timestamp_millis()),
            Some(1_767_225_603_000)
        );
        assert_eq!(
            started_at.map(|t| t.timestamp_millis()),
            Some(1_767_225_600_500)
        );
    }

    #[test]
    fn an_ended_container_without_an_exit_code_is_an_error_not_a_guess() {
        let ended = raw(
            Status::EXITED,
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:01Z",
            None,
        );
        assert!(ContainerState::from_inspect(&ended).is_err());
        assert!(ContainerState::from_inspect(&RawState::default()).is_err());
    }

    #[test]
    fn running_paused_restarting_and_stopping_have_not_ended() {
        for status in [
            Status::RUNNING,
            Status::PAUSED,
            Status::RESTARTING,
            Status::STOPPING,
        ] {
            let state =
                ContainerState::from_inspect(&raw(status, "2026-01-01T00:00:00Z", NEVER, Some(0)))
                    .expect("state");
            assert!(
                matches!(
                    state,
                    ContainerState::Running {
                        started_at: Some(_)
                    }
                ),
                "{status:?}: {state:?}"
            );
            assert_eq!(state.exit(), None);
        }
    }

    #[test]
    fn dockers_zero_time_means_never() {
        assert_eq!(docker_time(NEVER), None);
        assert_eq!(docker_time("garbage"), None);
        assert!(docker_time("2026-03-29T01:30:00.123456789Z").is_some());
    }
}
