//! Every way a run can be found at start-up, and what becomes of it.

use std::path::Path;

use chrono::{TimeZone, Utc};

use super::*;
use crate::docker::Exit;
use crate::store::Trigger;

const POLICY: &str = concat!(
    gatehouse_policy::scheduler_test_head!(),
    r#"
[scheduler]
listen = "127.0.0.1:9100"
database = "state/scheduler.db"
allowed_images = ["local/*"]

[[job]]
name = "backup"
image = "local/busybox:1"
timeout = "10m"
run_roles = ["operator"]

[[job]]
name = "nightly"
image = "local/busybox:1"
schedule = "0 3 * * *"
timeout = "10m"
catch_up = "latest"
starting_deadline = "2h"
run_roles = ["operator"]
"#
);

fn job(name: &str) -> Job {
    let policy = gatehouse_policy::parse(Path::new("/etc/gatehouse/policy.toml"), POLICY)
        .unwrap_or_else(|e| panic!("test policy: {e:?}"));
    policy
        .jobs
        .into_iter()
        .find(|j| j.name == name)
        .expect("job in the test policy")
}

const QUEUED_AT: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;

fn run(status: RunStatus, container: Option<&str>, started_at: Option<i64>) -> Run {
    Run {
        id: 7,
        job: "backup".into(),
        trigger: Trigger::Schedule { planned: QUEUED_AT },
        attempt: 1,
        status,
        queued_at: QUEUED_AT,
        started_at,
        finished_at: None,
        exit_code: None,
        oom_killed: false,
        container_id: container.map(str::to_owned),
        logs_truncated: false,
        reason: None,
        reason_code: None,
    }
}

fn never_started() -> ContainerState {
    ContainerState::NeverStarted { error: None }
}

#[test]
fn a_container_created_and_never_started_is_started_within_the_window() {
    // The crash between create and start: the row says starting, Docker
    // says created. Never a recorded exit code.
    let run = run(RunStatus::Starting, Some("c1"), None);
    let backup = job("backup");
    let state = never_started();
    for age in [0, 5 * MINUTE, 10 * MINUTE] {
        assert_eq!(
            plan(&run, Some(&backup), Some(&state), QUEUED_AT + age),
            Plan::Resume,
            "{age} ms after it was queued"
        );
    }
}

#[test]
fn a_container_never_started_past_its_window_is_lost_with_the_reason() {
    let run = run(RunStatus::Starting, Some("c1"), None);
    let decided = plan(
        &run,
        Some(&job("backup")),
        Some(&never_started()),
        QUEUED_AT + 11 * MINUTE,
    );
    let Plan::Lost(code, reason) = decided else {
        panic!("not lost: {decided:?}");
    };
    assert_eq!(code, ReasonCode::NeverStarted);
    assert!(
        reason.contains("after creating the run's container and before starting it")
            && reason.contains("start window (10m)"),
        "{reason}"
    );
}

#[test]
fn the_start_window_is_the_starting_deadline_for_jobs_that_catch_up() {
    let nightly = job("nightly");
    let run = Run {
        job: "nightly".into(),
        ..run(RunStatus::Queued, None, None)
    };
    assert_eq!(
        plan(&run, Some(&nightly), None, QUEUED_AT + 90 * MINUTE),
        Plan::Resume
    );
    assert!(matches!(
        plan(&run, Some(&nightly), None, QUEUED_AT + 121 * MINUTE),
        Plan::Lost(ReasonCode::NeverStarted, _)
    ));
}

#[test]
fn a_queued_run_without_a_container_is_started_again_or_lost_as_never_started() {
    let queued = run(RunStatus::Queued, None, None);
    let backup = job("backup");
    assert_eq!(
        plan(&queued, Some(&backup), None, QUEUED_AT + MINUTE),
        Plan::Resume
    );
    let Plan::Lost(code, reason) = plan(&queued, Some(&backup), None, QUEUED_AT + 60 * MINUTE)
    else {
        panic!("not lost");
    };
    assert_eq!(code, ReasonCode::NeverStarted);
    assert!(
        reason.contains("before the run's container was created"),
        "{reason}"
    );
}

#[test]
fn a_run_of_a_job_no_longer_in_the_policy_is_never_started_again() {
    let queued = run(RunStatus::Starting, Some("c1"), None);
    let Plan::Lost(code, reason) = plan(&queued, None, Some(&never_started()), QUEUED_AT) else {
        panic!("not lost");
    };
    assert_eq!(code, ReasonCode::NeverStarted);
    assert!(reason.contains("no longer in the policy"), "{reason}");
}

#[test]
fn a_running_container_is_supervised_from_its_start() {
    let docker_start = Utc.timestamp_millis_opt(QUEUED_AT + 2_000).unwrap();
    let running = ContainerState::Running {
        started_at: Some(docker_start),
    };
    // The crash came after start and before the row said running: Docker
    // knows when it started.
    assert_eq!(
        plan(
            &run(RunStatus::Starting, Some("c1"), None),
            Some(&job("backup")),
            Some(&running),
            QUEUED_AT + MINUTE
        ),
        Plan::Supervise {
            started_at: QUEUED_AT + 2_000
        }
    );
    // The row's own start wins when it has one.
    assert_eq!(
        plan(
            &run(RunStatus::Running, Some("c1"), Some(QUEUED_AT + 1_000)),
            Some(&job("backup")),
            Some(&running),
            QUEUED_AT + MINUTE
        ),
        Plan::Supervise {
            started_at: QUEUED_AT + 1_000
        }
    );
}

#[test]
fn an_ended_container_is_recorded_even_for_a_job_that_is_gone() {
    let ended = ContainerState::Ended {
        exit: Exit {
            exit_code: 4,
            oom_killed: false,
        },
        started_at: Utc.timestamp_millis_opt(QUEUED_AT + 500).single(),
        finished_at: Utc.timestamp_millis_opt(QUEUED_AT + 3_000).single(),
    };
    assert_eq!(
        plan(
            &run(RunStatus::Running, Some("c1"), Some(QUEUED_AT + 400)),
            None,
            Some(&ended),
            QUEUED_AT + 24 * 60 * MINUTE
        ),
        Plan::Record {
            started_at: QUEUED_AT + 400
        }
    );
}

#[test]
fn a_container_gone_after_the_run_started_is_lost_as_vanished() {
    for run in [
        run(RunStatus::Running, Some("c1"), Some(QUEUED_AT + 400)),
        // A container was recorded; whether it started, nobody can say.
        run(RunStatus::Starting, Some("c1"), None),
    ] {
        assert!(
            matches!(
                plan(&run, Some(&job("backup")), None, QUEUED_AT + MINUTE),
                Plan::Lost(ReasonCode::ContainerVanished, _)
            ),
            "{run:?}"
        );
    }
    assert!(matches!(
        plan(
            &run(RunStatus::Running, Some("c1"), Some(QUEUED_AT)),
            Some(&job("backup")),
            Some(&ContainerState::Removing),
            QUEUED_AT + MINUTE
        ),
        Plan::Lost(ReasonCode::ContainerVanished, _)
    ));
}
