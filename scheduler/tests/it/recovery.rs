//! No run is forgotten: across `kill -9` of the scheduler, SIGTERM, a
//! container removed behind its back, and a restart of dockerd.

use std::time::Duration;

use gatehouse_tests::docker::PrivateDocker;

use crate::support::{job, Stack};

const LONG: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread")]
async fn a_run_survives_kill_9_of_the_scheduler_and_is_adopted() {
    let mut stack = Stack::start(&job(
        "steady",
        "command = [\"sh\", \"-c\", \"sleep 3; echo done; exit 4\"]",
    ))
    .await;
    let id = stack.run_now("steady").await;
    stack.wait_run(id, Some("running"), LONG).await;
    stack.kill_scheduler("KILL");
    assert_eq!(
        stack.containers_of("steady").len(),
        1,
        "the container outlives the scheduler"
    );
    stack.spawn_scheduler().await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(
        run["exit_code"], 4,
        "the outcome of the adopted run is recorded: {run}"
    );
    assert_eq!(stack.logs(id).await, "done\n");
    assert!(stack.containers_of("steady").is_empty());
    let finished = stack.audit_events("run.finish", 1).await;
    assert_eq!(finished[0]["details"]["run"], id);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_leaves_containers_running_for_the_next_start() {
    let mut stack = Stack::start(&job("longish", "command = [\"sleep\", \"4\"]")).await;
    let id = stack.run_now("longish").await;
    stack.wait_run(id, Some("running"), LONG).await;
    stack.kill_scheduler("TERM");
    assert_eq!(
        stack.containers_of("longish").len(),
        1,
        "SIGTERM does not stop jobs"
    );
    stack.spawn_scheduler().await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(stack.audit_events("shutdown", 1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_container_vanished_is_marked_lost() {
    let mut stack = Stack::start(&job("doomed", "command = [\"sleep\", \"60\"]")).await;
    let id = stack.run_now("doomed").await;
    stack.wait_run(id, Some("running"), LONG).await;
    stack.kill_scheduler("KILL");
    let containers = stack.containers_of("doomed");
    assert_eq!(containers.len(), 1);
    let status = stack
        .docker()
        .args(["rm", "-f", &containers[0]])
        .output()
        .expect("docker rm");
    assert!(status.status.success());
    stack.spawn_scheduler().await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "lost", "{run}");
    let lost = stack.audit_events("run.lost", 1).await;
    assert_eq!(lost[0]["details"]["run"], id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dockerd_restart_mid_run_is_ridden_out_and_recorded() {
    let mut docker = PrivateDocker::start().expect("a private dockerd of its own");
    let stack = Stack::start_on(
        &docker.host(),
        "",
        &job("victim", "command = [\"sleep\", \"60\"]"),
    )
    .await;
    let id = stack.run_now("victim").await;
    stack.wait_run(id, Some("running"), LONG).await;
    docker.restart().expect("restart dockerd");
    let run = stack.wait_run(id, None, Duration::from_secs(60)).await;
    // The daemon's stop killed the container; the scheduler recorded how.
    assert!(
        matches!(run["status"].as_str(), Some("failed") | Some("lost")),
        "{run}"
    );
    if run["status"] == "failed" {
        assert!(run["exit_code"].as_i64().is_some(), "{run}");
    }
    // And it keeps working with the restarted daemon.
    let jobs = job("victim", "command = [\"sleep\", \"60\"]");
    drop(jobs);
    let next = stack.run_now("victim").await;
    let second = stack.wait_run(next, Some("running"), LONG).await;
    assert_eq!(second["status"], "running");
    let metrics = stack.metrics().await;
    assert!(
        metrics.contains("gatehouse_scheduler_docker_errors_total"),
        "{metrics}"
    );
}
