//! `executor = "swarm"` on a real private dockerd that is a one-node Swarm
//! manager (its daemons enforce no-new-privileges, as the executor asks
//! of nodes before API 1.44): runs are replicated-job services with the
//! hardening of a local container, on a network of their own; cancel,
//! timeout, the log cap and a restart's reconciliation work as they do
//! with containers; without the no-new-privileges promise no job runs.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use gatehouse_tests::docker::PrivateDocker;
use gatehouse_tests::scheduler::{job, OPERATOR_KEY};
use gatehouse_tests::SchedulerUnderTest;

const LONG: Duration = Duration::from_secs(90);
const SWARM: &str = "executor = \"swarm\"\nswarm_nodes_enforce_no_new_privileges = true\n";

/// One Swarm daemon for these tests (Swarm's host bridge is one per host).
fn swarm() -> &'static PrivateDocker {
    static DOCKER: OnceLock<PrivateDocker> = OnceLock::new();
    DOCKER.get_or_init(|| {
        PrivateDocker::start_swarm().expect("a private dockerd in swarm mode (needs root)")
    })
}

/// Serialises the tests: they share the one-node Swarm.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

fn docker(args: &[&str]) -> String {
    let output = swarm()
        .docker_cli()
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Our services for `job` (by label), running or not.
fn services_of(job: &str) -> Vec<String> {
    docker(&[
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("label=gatehouse.job={job}"),
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Our networks for `job` (by label).
fn networks_of(job: &str) -> String {
    docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=gatehouse.job={job}"),
    ])
}

/// Polls until `check` holds, for at most `within`.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_as_a_hardened_service_on_a_network_of_its_own() {
    let _one = one_at_a_time().await;
    let jobs = job(
        "probe",
        "shell = true\ncommand = [\"grep NoNewPrivs /proc/self/status; id -u; sleep 4; echo done\"]",
    );
    let stack = SchedulerUnderTest::start_on(&swarm().host(), SWARM, &jobs).await;
    let id = stack.run_now("probe").await;
    stack.wait_run(id, Some("running"), LONG).await;

    // While it runs: the task's container as Docker made it.
    let mut container = String::new();
    eventually(Duration::from_secs(20), "the task's container", || {
        container = docker(&["ps", "-q", "--filter", "label=gatehouse.job=probe"]);
        !container.is_empty()
    })
    .await;
    let inspect: Value =
        serde_json::from_str(&docker(&["inspect", &container])).expect("docker inspect");
    let host = &inspect[0]["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], true, "{host}");
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]), "{host}");
    assert_eq!(host["Init"], true, "{host}");
    assert_eq!(host["Memory"].as_i64(), Some(256 * 1024 * 1024), "{host}");
    assert!(host["PidsLimit"].as_i64().is_some_and(|n| n > 0), "{host}");
    assert!(host["NanoCpus"].as_i64().is_some_and(|n| n > 0), "{host}");
    assert_eq!(inspect[0]["Config"]["User"], "65534:65534");
    let tmp = host["Mounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["Target"] == "/tmp"))
        .expect("a /tmp mount");
    assert_eq!(tmp["Type"], "tmpfs", "{tmp}");
    // Its only network is the run's own, internal (no egress).
    let networks = inspect[0]["NetworkSettings"]["Networks"]
        .as_object()
        .expect("networks")
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(networks.len(), 1, "{networks:?}");
    let network: Value =
        serde_json::from_str(&docker(&["network", "inspect", &networks[0]])).expect("network");
    assert_eq!(network[0]["Internal"], true, "{network}");
    assert_eq!(network[0]["Driver"], "overlay", "{network}");
    assert_eq!(network[0]["Labels"]["gatehouse.job"], "probe", "{network}");

    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["exit_code"], 0, "{run}");
    let logs = stack.logs(id).await;
    assert!(logs.contains("NoNewPrivs:\t1"), "{logs}");
    assert!(
        logs.contains("65534\n") && logs.ends_with("done\n"),
        "{logs}"
    );
    // The service and its network are removed once recorded.
    eventually(Duration::from_secs(10), "the service is removed", || {
        services_of("probe").is_empty()
    })
    .await;
    eventually(
        Duration::from_secs(40),
        "the run's network is removed",
        || networks_of("probe").is_empty(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_and_timeout_remove_the_service_and_keep_the_logs() {
    let _one = one_at_a_time().await;
    let jobs = format!(
        "{}{}",
        job(
            "cancelled",
            "shell = true\ncommand = [\"echo before-cancel; sleep 60\"]"
        ),
        job(
            "slow",
            "timeout = \"2s\"\nshell = true\ncommand = [\"echo before-timeout; sleep 60\"]"
        ),
    );
    let stack = SchedulerUnderTest::start_on(&swarm().host(), SWARM, &jobs).await;

    let id = stack.run_now("cancelled").await;
    stack.wait_run(id, Some("running"), LONG).await;
    eventually(Duration::from_secs(30), "the task writes its line", || {
        services_of("cancelled").first().is_some_and(|service| {
            docker(&["service", "logs", "--raw", service]).contains("before-cancel")
        })
    })
    .await;
    let (status, body) = stack
        .post(OPERATOR_KEY, &format!("/api/runs/{id}/cancel"))
        .await;
    assert_eq!(status, 202, "{body}");
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert!(stack.logs(id).await.contains("before-cancel"));
    assert!(services_of("cancelled").is_empty());

    let id = stack.run_now("slow").await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "timed_out", "{run}");
    assert!(stack.logs(id).await.contains("before-timeout"));
    assert!(services_of("slow").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_are_capped_to_the_last_bytes() {
    let _one = one_at_a_time().await;
    let jobs = job(
        "chatty",
        "shell = true\ncommand = [\"i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done\"]",
    );
    let stack = SchedulerUnderTest::start_on(
        &swarm().host(),
        &format!("{SWARM}log_cap = \"1KiB\"\n"),
        &jobs,
    )
    .await;
    let id = stack.run_now("chatty").await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["logs_truncated"], true, "{run}");
    let logs = stack.logs(id).await;
    assert!(logs.len() <= 1024, "capped at 1KiB: {}", logs.len());
    assert!(
        logs.ends_with("line-399\n"),
        "the last bytes are kept: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_scheduler_finds_its_service_by_its_labels() {
    let _one = one_at_a_time().await;
    let jobs = job(
        "survivor",
        "shell = true\ncommand = [\"sleep 6; echo survived\"]",
    );
    let mut stack = SchedulerUnderTest::start_on(&swarm().host(), SWARM, &jobs).await;
    let id = stack.run_now("survivor").await;
    stack.wait_run(id, Some("running"), LONG).await;
    stack.kill_scheduler("KILL");
    let services = services_of("survivor");
    assert_eq!(services.len(), 1, "the service outlives the scheduler");
    // A network whose service is gone (a crash between the two removals).
    let instance = docker(&[
        "service",
        "inspect",
        "--format",
        "{{index .Spec.Labels \"gatehouse.scheduler\"}}",
        &services[0],
    ]);
    let stray = format!("gh-{instance}-999999");
    let labels = [
        format!("gatehouse.scheduler={instance}"),
        "gatehouse.job=gone".to_owned(),
        "gatehouse.run=999999".to_owned(),
    ];
    docker(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--internal",
        "--label",
        &labels[0],
        "--label",
        &labels[1],
        "--label",
        &labels[2],
        &stray,
    ]);
    let strays = || networks_of("gone");
    assert!(!strays().is_empty(), "the stray network was made");
    stack.spawn_scheduler().await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(stack.logs(id).await.contains("survived"));
    eventually(
        Duration::from_secs(10),
        "the adopted service is removed",
        || services_of("survivor").is_empty(),
    )
    .await;
    eventually(
        Duration::from_secs(40),
        "the run's network is removed",
        || networks_of("survivor").is_empty(),
    )
    .await;
    eventually(
        Duration::from_secs(40),
        "the stray network is swept",
        || strays().is_empty(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_no_new_privileges_no_job_runs() {
    let _one = one_at_a_time().await;
    // This daemon speaks API 1.41: a service cannot ask for
    // no-new-privileges, and the policy does not say the nodes enforce it.
    let stack = SchedulerUnderTest::start_on(
        &swarm().host(),
        "executor = \"swarm\"\n",
        &job("refused", "command = [\"true\"]"),
    )
    .await;
    let id = stack.run_now("refused").await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "failed", "{run}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("no-new-privileges"),
        "the reason says why: {reason}"
    );
    assert!(services_of("refused").is_empty());
}
