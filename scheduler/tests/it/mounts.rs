//! What a job's container may get from the host: bind-mount sources are
//! checked on disk before each create, not only as policy text.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use gatehouse_tests::binaries;
use gatehouse_tests::scheduler::job;
use gatehouse_tests::SchedulerUnderTest;

const LONG: Duration = Duration::from_secs(30);

/// The exploit from issue 12: job 1 may write an allowed directory and
/// plants `nightly -> /` there; job 2 mounts `allowed/nightly`, which the
/// policy text allows, and would read the host's files through it.
#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_planted_by_one_job_does_not_expose_the_host_to_the_next() {
    let allowed = "allowed_mounts = [{ source = \"{dir}/allowed\", writable = true }]";
    let jobs = format!(
        "{}{}",
        job(
            "planter",
            "command = [\"ln\", \"-s\", \"/\", \"/allowed/nightly\"]\n\
             container = { mounts = [{ source = \"{dir}/allowed\", target = \"/allowed\", writable = true }] }"
        ),
        job(
            "reader",
            "command = [\"cat\", \"/host/etc/hostname\"]\n\
             container = { mounts = [{ source = \"{dir}/allowed/nightly\", target = \"/host\" }] }"
        ),
    );
    let stack = SchedulerUnderTest::start_on(
        &gatehouse_tests::scheduler::shared_docker().host(),
        allowed,
        &jobs,
    )
    .await;
    let dir = stack.dir().join("allowed");
    std::fs::create_dir(&dir).expect("mkdir allowed");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");

    // `check` accepts the layout (it is valid text) but warns about it.
    let out = Command::new(binaries::scheduler())
        .args(["check", "--policy"])
        .arg(&stack.policy_path)
        .output()
        .expect("check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("job `planter` may write") && err.contains("that job `reader` mounts"),
        "check warns that planter's writable mount holds reader's: {err}"
    );

    let planter = stack.run_now("planter").await;
    let run = stack.wait_run(planter, None, LONG).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        dir.join("nightly").is_symlink(),
        "the first job planted the link"
    );

    let reader = stack.run_now("reader").await;
    let run = stack.wait_run(reader, None, LONG).await;
    let reason = run["reason"].as_str().unwrap_or_default();
    assert_eq!(
        run["status"],
        "failed",
        "{run}\n{}",
        stack.logs(reader).await
    );
    assert!(
        reason.contains("allowed/nightly refused") && reason.contains("symlink"),
        "the run says why: {run}"
    );
    assert!(
        run["container_id"].is_null(),
        "no container was created: {run}"
    );
    assert!(run["exit_code"].is_null(), "{run}");
    let refused = stack.audit_events("run.refused", 1).await;
    assert_eq!(refused[0]["outcome"], "denied", "{refused:?}");
    assert_eq!(refused[0]["details"]["job"], "reader", "{refused:?}");
    assert!(
        refused[0]["details"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("symlink"),
        "{refused:?}"
    );
}
