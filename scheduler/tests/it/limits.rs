//! Limits Docker would otherwise take from the daemon: `/dev/shm` and the
//! `nofile`/`nproc` ulimits, seen from inside a job's container.

use std::time::Duration;

use gatehouse_tests::scheduler::job;
use gatehouse_tests::SchedulerUnderTest;

#[tokio::test(flavor = "multi_thread")]
async fn a_job_sees_a_small_dev_shm_and_the_default_ulimits() {
    let script = "echo NOFILE $(ulimit -n); echo NPROC $(ulimit -u); df -k /dev/shm | tail -n 1";
    let stack = SchedulerUnderTest::start(&job(
        "limits",
        &format!("shell = true\ncommand = [{script:?}]"),
    ))
    .await;
    let id = stack.run_now("limits").await;
    let run = stack.wait_run(id, None, Duration::from_secs(30)).await;
    let logs = stack.logs(id).await;
    assert_eq!(run["status"], "succeeded", "{run}\n{logs}");
    assert!(logs.contains("NOFILE 1024\n"), "{logs}");
    // max_pids (1024 by default) for each of max_concurrent_runs (4).
    assert!(logs.contains("NPROC 4096\n"), "{logs}");
    let shm_kib = logs
        .lines()
        .find(|l| l.ends_with("/dev/shm"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(shm_kib, Some(16 * 1024), "16 MiB: {logs}");
}
