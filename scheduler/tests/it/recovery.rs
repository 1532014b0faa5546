//! No run is forgotten, and none is made up: across `kill -9` of the
//! scheduler (also exactly between creating a container and starting it),
//! SIGTERM, a container removed behind its back, and a restart of dockerd.

use std::time::Duration;

use gatehouse_tests::docker::PrivateDocker;

use crate::docker_proxy::DockerProxy;
use gatehouse_tests::metrics::metric_value;
use gatehouse_tests::scheduler::{job, shared_docker};
use gatehouse_tests::SchedulerUnderTest;

const LONG: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread")]
async fn a_run_survives_kill_9_of_the_scheduler_and_is_adopted() {
    let mut stack = SchedulerUnderTest::start(&job(
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
    let adopted = stack.audit_events("run.adopt", 1).await;
    assert_eq!(adopted[0]["details"]["run"], id);
    assert_eq!(adopted[0]["details"]["action"], "supervise");
    assert_eq!(adopted[0]["details"]["previous_status"], "running");
    let reconciled = stack.audit_events("reconcile", 2).await;
    assert_eq!(reconciled[1]["details"]["adopted"], 1, "{reconciled:?}");
}

/// The crash between `docker create` and `docker start`, for real: a proxy
/// on the Docker socket holds the scheduler's start request while the test
/// kills it with SIGKILL. Docker then has a container that never started,
/// and `wait` on it would say 0 at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_create_and_start_never_records_an_invented_outcome() {
    let mut proxy = DockerProxy::start(&shared_docker().host());
    let jobs = format!(
        "{}{}",
        job(
            "resumable",
            "timeout = \"5m\"\ncommand = [\"sh\", \"-c\", \"echo ran; exit 3\"]"
        ),
        job("stale", "timeout = \"2s\"\ncommand = [\"echo\", \"ran\"]"),
    );
    let mut stack = SchedulerUnderTest::start_on(&proxy.host(), "", &jobs).await;
    let state = |stack: &SchedulerUnderTest, job: &str| {
        let ids = stack.containers_of(job);
        assert_eq!(ids.len(), 1, "{job}: {ids:?}");
        let out = stack
            .docker()
            .args(["inspect", "-f", "{{.State.Status}}", &ids[0]])
            .output()
            .expect("docker inspect");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };

    // 1. Back within its start window: the run is started and its own
    //    outcome recorded.
    proxy.hold_next_start();
    let id = stack.run_now("resumable").await;
    let held = proxy.wait_held(LONG).await;
    assert!(held.contains("/start"), "{held}");
    assert_eq!(stack.run(id).await["status"], "starting");
    stack.kill_scheduler("KILL");
    assert_eq!(state(&stack, "resumable"), "created");
    stack.spawn_scheduler().await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["exit_code"], 3, "the run's own exit code: {run}");
    assert_eq!(stack.logs(id).await, "ran\n");
    assert!(run["started_at"].is_i64(), "{run}");
    let resumed = stack.audit_events("run.adopt", 1).await;
    assert_eq!(resumed[0]["details"]["run"], id);
    assert_eq!(resumed[0]["details"]["action"], "resume");
    assert_eq!(resumed[0]["details"]["previous_status"], "starting");
    let reconciled = stack.audit_events("reconcile", 2).await;
    assert_eq!(reconciled[1]["details"]["resumed"], 1, "{reconciled:?}");
    assert!(stack.containers_of("resumable").is_empty());

    // 2. Back after its start window (the job's 2 s timeout): lost, saying
    //    it never started, with no exit code and no success.
    proxy.hold_next_start();
    let id = stack.run_now("stale").await;
    proxy.wait_held(LONG).await;
    stack.kill_scheduler("KILL");
    assert_eq!(state(&stack, "stale"), "created");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stack.spawn_scheduler().await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "lost", "{run}");
    assert_eq!(run["reason_code"], "never_started", "{run}");
    assert!(
        run["exit_code"].is_null(),
        "no exit code is invented: {run}"
    );
    assert!(run["started_at"].is_null(), "{run}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("before starting it") && reason.contains("start window (2s)"),
        "{reason}"
    );
    let metrics = stack.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "gatehouse_scheduler_runs_total{job_name=\"stale\",outcome=\"lost\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "gatehouse_scheduler_runs_total{job_name=\"stale\",outcome=\"succeeded\"}"
        ),
        Some(0.0)
    );
    assert!(
        !metrics.contains("gatehouse_scheduler_last_success_timestamp_seconds{job_name=\"stale\"}"),
        "{metrics}"
    );
    let lost = stack.audit_events("run.lost", 1).await;
    assert_eq!(lost[0]["details"]["run"], id);
    assert_eq!(lost[0]["details"]["reason_code"], "never_started");
    assert!(lost[0]["details"].get("exit_code").is_none(), "{lost:?}");
    assert!(stack.containers_of("stale").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_leaves_containers_running_for_the_next_start() {
    let mut stack =
        SchedulerUnderTest::start(&job("longish", "command = [\"sleep\", \"4\"]")).await;
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
    let mut stack =
        SchedulerUnderTest::start(&job("doomed", "command = [\"sleep\", \"60\"]")).await;
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
    assert_eq!(run["reason_code"], "container_vanished", "{run}");
    assert!(run["started_at"].is_i64(), "it had started: {run}");
    let lost = stack.audit_events("run.lost", 1).await;
    assert_eq!(lost[0]["details"]["run"], id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dockerd_restart_mid_run_is_ridden_out_and_recorded() {
    let mut docker = PrivateDocker::start().expect("a private dockerd of its own");
    let stack = SchedulerUnderTest::start_on(
        &docker.host(),
        "",
        &job("victim", "command = [\"sleep\", \"60\"]"),
    )
    .await;
    let id = stack.run_now("victim").await;
    stack.wait_run(id, Some("running"), LONG).await;
    docker.restart().expect("restart dockerd");
    let run = stack.wait_run(id, None, Duration::from_secs(60)).await;
    // The daemon's stop killed the container; the scheduler recorded how,
    // and says why.
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        [137, 143].contains(&run["exit_code"].as_i64().unwrap_or_default()),
        "{run}"
    );
    assert_eq!(run["reason_code"], "daemon_restarted", "{run}");
    assert!(
        run["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("Docker daemon went away"),
        "{run}"
    );
    // And it keeps working with the restarted daemon, once it has seen the
    // daemon answer again.
    stack.wait_ready().await;
    let next = stack.run_now("victim").await;
    let second = stack.wait_run(next, Some("running"), LONG).await;
    assert_eq!(second["status"], "running");
    let metrics = stack.metrics().await;
    assert!(
        metrics.contains("gatehouse_scheduler_docker_errors_total"),
        "{metrics}"
    );
}

/// Two deployments on one Docker daemon whose databases sit at the same
/// path, as in every stack's container (`/data/scheduler.db`). The
/// instance label on job containers used to be a hash of that path, so
/// the second scheduler took the first's container for a stray of its own
/// and removed it, killing a running job. Now each database makes its own
/// label: the other deployment leaves the container alone, and the run's
/// own database adopts it afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn another_deployments_database_at_the_same_path_leaves_our_containers_alone() {
    let mut stack = SchedulerUnderTest::start(&job(
        "shared-path",
        "command = [\"sh\", \"-c\", \"sleep 8; echo done; exit 4\"]",
    ))
    .await;
    let id = stack.run_now("shared-path").await;
    stack.wait_run(id, Some("running"), LONG).await;
    stack.kill_scheduler("KILL");

    // Our database moves aside; another deployment's, new, takes its path.
    let aside = stack.dir().join("ours");
    std::fs::create_dir(&aside).expect("mkdir");
    let files = ["scheduler.db", "scheduler.db-wal", "scheduler.db-shm"];
    let move_files = |from: &std::path::Path, to: &std::path::Path| {
        for file in files {
            if from.join(file).exists() {
                std::fs::rename(from.join(file), to.join(file)).expect("move the database");
            }
        }
    };
    move_files(stack.dir(), &aside);
    stack.spawn_scheduler().await;
    let reconciled = stack.audit_events("reconcile", 2).await;
    assert_eq!(
        reconciled[1]["details"]["removed_strays"], 0,
        "{reconciled:?}"
    );
    assert_eq!(reconciled[1]["details"]["adopted"], 0, "{reconciled:?}");
    assert_eq!(
        stack.containers_of("shared-path").len(),
        1,
        "the other deployment left our container alone"
    );
    assert!(stack.runs_of("shared-path").await.is_empty());
    stack.kill_scheduler("TERM");

    // Our database back: its own run is adopted and its outcome recorded.
    for file in files {
        let _ = std::fs::remove_file(stack.dir().join(file));
    }
    move_files(&aside, stack.dir());
    stack.spawn_scheduler().await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["exit_code"], 4, "{run}");
    assert_eq!(stack.logs(id).await, "done\n");
    assert!(stack.containers_of("shared-path").is_empty());
}

/// A database upgraded from before versioned migrations keeps its old
/// label (a hash of its path) as `legacy_instance`. A container under that
/// label is adopted only by the run that recorded its id, and one that no
/// run names is left alone: another stack could own it.
#[tokio::test(flavor = "multi_thread")]
async fn containers_under_the_pre_migration_label_are_adopted_only_by_their_own_run() {
    let mut stack = SchedulerUnderTest::start(&job(
        "upgraded",
        "command = [\"sh\", \"-c\", \"sleep 4; echo done; exit 5\"]",
    ))
    .await;
    let id = stack.run_now("upgraded").await;
    stack.wait_run(id, Some("running"), LONG).await;
    stack.kill_scheduler("KILL");
    // The label the container carries becomes the database's old one, as
    // after an upgrade while the run was in flight.
    let db = rusqlite::Connection::open(stack.dir().join("scheduler.db")).expect("open");
    let label: String = db
        .query_row("SELECT instance FROM deployment", [], |r| r.get(0))
        .expect("instance");
    db.execute(
        "UPDATE deployment SET legacy_instance = instance, instance = 'after-upgrade'",
        [],
    )
    .expect("relabel");
    drop(db);
    // And a container under that label that no run of ours names.
    let stranger = format!("legacy-stranger-{}", std::process::id());
    let out = stack
        .docker()
        .args(["create", "--name", &stranger])
        .args([
            "--label",
            "gatehouse.job=upgraded",
            "--label",
            "gatehouse.run=999",
        ])
        .args(["--label", &format!("gatehouse.scheduler={label}")])
        .args([gatehouse_tests::docker::TEST_IMAGE, "true"])
        .output()
        .expect("docker create");
    assert!(out.status.success(), "{out:?}");

    stack.spawn_scheduler().await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["exit_code"], 5, "adopted and recorded: {run}");
    assert_eq!(stack.logs(id).await, "done\n");
    let reconciled = stack.audit_events("reconcile", 2).await;
    let details = &reconciled[1]["details"];
    // Adopted while running, or its outcome recorded if it ended first.
    let settled =
        details["adopted"].as_u64().unwrap_or(0) + details["recorded"].as_u64().unwrap_or(0);
    assert_eq!(settled, 1, "{reconciled:?}");
    assert_eq!(details["removed_strays"], 0, "{reconciled:?}");
    let left = stack.containers_of("upgraded");
    assert_eq!(left.len(), 1, "only the stranger is left: {left:?}");
    let _ = stack.docker().args(["rm", "-f", &stranger]).output();
}
