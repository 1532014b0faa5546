//! Runs against a real Docker engine: on schedule, hardened, stopped on
//! timeout or cancel, overlapping by each mode, retried, caught up.

use std::time::Duration;

use gatehouse_tests::metrics::metric_value;
use gatehouse_tests::process::OutputWithStdin;
use gatehouse_tests::scheduler::job;
use gatehouse_tests::SchedulerUnderTest;

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_job_runs_on_time() {
    // Every two seconds (6-field form with seconds).
    let stack = SchedulerUnderTest::start(&job(
        "tick",
        "schedule = \"*/2 * * * * *\"\ncommand = [\"echo\", \"tick\"]",
    ))
    .await;
    let mut runs = Vec::new();
    for _ in 0..150 {
        runs = stack.runs_of("tick").await;
        if runs.iter().any(|r| r["status"] == "succeeded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = runs
        .iter()
        .find(|r| r["status"] == "succeeded")
        .unwrap_or_else(|| {
            panic!(
                "no scheduled run succeeded: {runs:?}\n{}",
                stack.scheduler_log()
            )
        });
    assert_eq!(run["trigger"]["kind"], "schedule");
    let planned = run["trigger"]["planned"].as_i64().expect("planned");
    assert_eq!(planned % 2000, 0, "fires on even seconds: {planned}");
    let started = run["started_at"].as_i64().expect("started");
    assert!(
        started >= planned,
        "never early: planned {planned}, started {started}"
    );
    assert_eq!(stack.logs(run["id"].as_i64().expect("id")).await, "tick\n");
    let metrics = stack.metrics().await;
    assert!(
        metric_value(
            &metrics,
            "gatehouse_scheduler_schedule_jitter_seconds_count{job_name=\"tick\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
    assert!(
        metric_value(
            &metrics,
            "gatehouse_scheduler_runs_total{job_name=\"tick\",outcome=\"succeeded\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        metric_value(
            &metrics,
            "gatehouse_scheduler_last_success_timestamp_seconds{job_name=\"tick\"}"
        )
        .unwrap_or(0.0)
            > 1.7e9
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hardening_default_is_in_force_inside_the_container() {
    // The limits are read from the kernel's cgroup files (v2 or v1 paths).
    let script = "id; echo x > /probe 2>/dev/null && echo ROOT-WRITABLE || echo ROOT-READONLY; \
        echo NET $(ls /sys/class/net); grep CapEff /proc/self/status; \
        echo PIDS $(cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null); \
        echo MEM $(cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null); \
        echo ok > /tmp/t && echo TMP-WRITABLE; cp /bin/busybox /tmp/bb && /tmp/bb true 2>/dev/null && echo TMP-EXEC || echo TMP-NOEXEC; \
        grep NoNewPrivs /proc/self/status";
    let jobs = format!(
        "{}{}",
        job("probe", &format!("shell = true\ncommand = [{script:?}]")),
        job("hog", "container = { memory = \"16MiB\" }\ncommand = [\"sh\", \"-c\", \"x=$(head -c 200000000 /dev/zero | tr '\\\\0' a); echo survived\"]")
    );
    let stack = SchedulerUnderTest::start(&jobs).await;
    let probe = stack.run_now("probe").await;
    let hog = stack.run_now("hog").await;
    let run = stack.wait_run(probe, None, LONG).await;
    let logs = stack.logs(probe).await;
    assert_eq!(run["status"], "succeeded", "{run}\n{logs}");
    assert!(
        logs.contains("uid=65534") && logs.contains("gid=65534"),
        "{logs}"
    );
    assert!(logs.contains("ROOT-READONLY"), "{logs}");
    assert!(logs.contains("NET lo\n"), "only loopback: {logs}");
    assert!(logs.contains("CapEff:\t0000000000000000"), "{logs}");
    assert!(logs.contains("PIDS 128"), "{logs}");
    assert!(logs.contains("MEM 268435456"), "{logs}");
    assert!(
        logs.contains("TMP-WRITABLE") && logs.contains("TMP-NOEXEC"),
        "{logs}"
    );
    assert!(logs.contains("NoNewPrivs:\t1"), "{logs}");

    let run = stack.wait_run(hog, None, LONG).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["oom_killed"], true, "{run}");
    assert!(run["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("OOMKilled"));
    // Finished containers are removed.
    assert!(stack.containers_of("probe").is_empty());
    assert!(stack.containers_of("hog").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_past_its_timeout_is_stopped() {
    let stack = SchedulerUnderTest::start(&job(
        "slow",
        "timeout = \"1s\"\ncommand = [\"sleep\", \"60\"]",
    ))
    .await;
    let id = stack.run_now("slow").await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "timed_out", "{run}");
    let took = run["finished_at"].as_i64().unwrap_or(0) - run["started_at"].as_i64().unwrap_or(0);
    assert!(
        took < 15_000,
        "stopped with SIGTERM, grace, SIGKILL: took {took} ms"
    );
    assert!(stack.containers_of("slow").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn overlap_forbid_skips_allow_runs_both_replace_cancels_the_first() {
    let sleeper = "command = [\"sleep\", \"30\"]";
    let jobs = format!(
        "{}{}{}",
        job("forbid", &format!("overlap = \"forbid\"\n{sleeper}")),
        job("allow", &format!("overlap = \"allow\"\n{sleeper}")),
        job("replace", &format!("overlap = \"replace\"\n{sleeper}")),
    );
    let stack = SchedulerUnderTest::start(&jobs).await;

    let first = stack.run_now("forbid").await;
    let (status, body) = stack
        .post(
            gatehouse_tests::scheduler::OPERATOR_KEY,
            "/api/jobs/forbid/run",
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["status"], "skipped");
    let skipped = stack.run(body["run"].as_i64().expect("id")).await;
    assert_eq!(skipped["status"], "skipped");
    assert!(skipped["reason"]
        .as_str()
        .unwrap_or_default()
        .contains(&format!("run {first}")));

    let a = stack.run_now("allow").await;
    let b = stack.run_now("allow").await;
    stack.wait_run(a, Some("running"), LONG).await;
    stack.wait_run(b, Some("running"), LONG).await;

    let old = stack.run_now("replace").await;
    stack.wait_run(old, Some("running"), LONG).await;
    let new = stack.run_now("replace").await;
    let replaced = stack.wait_run(old, None, LONG).await;
    assert_eq!(replaced["status"], "cancelled");
    assert_eq!(replaced["reason"], format!("replaced by run {new}"));
    stack.wait_run(new, Some("running"), LONG).await;
    let audit = stack.audit_events("run.skip", 1).await;
    assert_eq!(audit[0]["details"]["job"], "forbid");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_run_is_retried_with_backoff_then_given_up() {
    let stack = SchedulerUnderTest::start(&job(
        "flaky",
        "command = [\"sh\", \"-c\", \"exit 3\"]\nretries = { max = 2, backoff = \"1s\" }",
    ))
    .await;
    let first = stack.run_now("flaky").await;
    let mut runs = Vec::new();
    for _ in 0..200 {
        runs = stack.runs_of("flaky").await;
        if runs.len() == 3 && runs.iter().all(|r| r["status"] == "failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    runs.reverse();
    assert_eq!(runs.len(), 3, "{runs:?}");
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(run["status"], "failed");
        assert_eq!(run["exit_code"], 3);
        assert_eq!(run["attempt"], i as u64 + 1);
    }
    assert_eq!(runs[1]["trigger"]["kind"], "retry");
    assert_eq!(runs[1]["trigger"]["of"], first);
    // Backoff doubles: at least 1 s, then at least 2 s between attempts.
    let gap = |a: &serde_json::Value, b: &serde_json::Value| {
        b["queued_at"].as_i64().unwrap_or(0) - a["finished_at"].as_i64().unwrap_or(0)
    };
    assert!(gap(&runs[0], &runs[1]) >= 0);
    assert!(
        runs[2]["started_at"].as_i64().unwrap_or(0) - runs[1]["finished_at"].as_i64().unwrap_or(0)
            >= 2000,
        "{runs:?}"
    );
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(stack.runs_of("flaky").await.len(), 3, "no fourth attempt");
    // The given-up run no longer counts as active (overlap is forbid).
    let again = stack.run_now("flaky").await;
    assert!(again > runs[2]["id"].as_i64().unwrap_or(i64::MAX));
}

#[tokio::test(flavor = "multi_thread")]
async fn after_downtime_the_latest_missed_run_is_caught_up_once() {
    let jobs = format!(
        "{}{}",
        job("catcher", "schedule = \"*/3 * * * * *\"\ncatch_up = \"latest\"\nstarting_deadline = \"1h\"\noverlap = \"allow\"\ncommand = [\"true\"]"),
        job("ignorer", "schedule = \"*/3 * * * * *\"\noverlap = \"allow\"\ncommand = [\"true\"]"),
    );
    let mut stack = SchedulerUnderTest::start(&jobs).await;
    stack.kill_scheduler("KILL");
    // Down for more than one period of both schedules.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stack.spawn_scheduler().await;
    let mut caught = Vec::new();
    for _ in 0..100 {
        caught = stack
            .runs_of("catcher")
            .await
            .into_iter()
            .filter(|r| r["trigger"]["kind"] == "catch_up")
            .collect();
        if !caught.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        caught.len(),
        1,
        "exactly one catch-up run: {caught:?}\n{}",
        stack.scheduler_log()
    );
    let planned = caught[0]["trigger"]["planned"].as_i64().expect("planned");
    assert_eq!(planned % 3000, 0);
    let ignored = stack.runs_of("ignorer").await;
    assert!(
        ignored.iter().all(|r| r["trigger"]["kind"] != "catch_up"),
        "{ignored:?}"
    );
    // What the job without catch-up missed leaves a record: one skipped
    // run saying why, at the latest missed time, and a count.
    let missed: Vec<_> = ignored
        .iter()
        .filter(|r| r["reason_code"] == "missed")
        .collect();
    assert_eq!(missed.len(), 1, "{ignored:?}");
    assert_eq!(missed[0]["status"], "skipped");
    assert_eq!(missed[0]["trigger"]["kind"], "schedule");
    assert_eq!(
        missed[0]["trigger"]["planned"].as_i64().unwrap_or(1) % 3000,
        0
    );
    let reason = missed[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("was not running") && reason.contains("catch_up = \"none\""),
        "{reason}"
    );
    let metrics = stack.metrics().await;
    let count = |job: &str| {
        metric_value(
            &metrics,
            &format!("gatehouse_scheduler_missed_runs_total{{job_name=\"{job}\"}}"),
        )
    };
    assert!(count("ignorer").unwrap_or(0.0) >= 1.0, "{metrics}");
    assert!(count("catcher").is_some(), "{metrics}");
    let skips = stack.audit_events("run.skip", 1).await;
    assert!(
        skips
            .iter()
            .any(|r| r["details"]["reason_code"] == "missed"),
        "{skips:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_keep_the_last_bytes_and_sensitive_values_never_leave_the_container() {
    let secret = "s3cr3t-value-that-must-not-leak";
    let stack = SchedulerUnderTest::start_on(
        &gatehouse_tests::scheduler::shared_docker().host(),
        "log_cap = \"1KiB\"\nsecret_dirs = [\"{dir}\"]",
        "",
    )
    .await;
    let secret_file = stack.dir().join("token");
    std::fs::write(&secret_file, format!("{secret}\n")).expect("secret file");
    let jobs = format!(
        "{}{}",
        job("chatty", "shell = true\ncommand = [\"i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done\"]"),
        job(
            "secretive",
            &format!(
                "env = {{ TOKEN = {{ file = {:?}, sensitive = true }}, PLAIN = \"visible\" }}\nshell = true\ncommand = [\"[ \\\"$TOKEN\\\" = {secret} ] && echo token-ok; echo $PLAIN\"]",
                secret_file.display().to_string()
            ),
        ),
    );
    stack.write_policy("log_cap = \"1KiB\"\nsecret_dirs = [\"{dir}\"]", &jobs);
    // Both programs pick the new jobs up from the file change.
    stack.wait_job("chatty").await;

    let id = stack.run_now("chatty").await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["logs_truncated"], true, "{run}");
    let logs = stack.logs(id).await;
    assert!(logs.len() <= 1024, "capped at 1KiB: {}", logs.len());
    assert!(
        logs.ends_with("line-399\n"),
        "the last bytes are kept: {logs}"
    );
    assert!(!logs.contains("line-0\n"));

    let id = stack.run_now("secretive").await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        stack.logs(id).await,
        "token-ok\nvisible\n",
        "the value reached the job"
    );
    let (_, job) = stack
        .get(
            gatehouse_tests::scheduler::OPERATOR_KEY,
            "/api/jobs/secretive",
        )
        .await;
    let everything = format!(
        "{}\n{}\n{}\n{}",
        stack.scheduler_log(),
        job,
        std::fs::read_to_string(stack.dir().join("audit.scheduler.jsonl")).unwrap_or_default(),
        stack.metrics().await
    );
    assert!(!everything.contains(secret), "a sensitive value leaked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_changes_jobs_without_touching_runs_in_flight() {
    let stack = SchedulerUnderTest::start(&job(
        "keeper",
        "command = [\"sh\", \"-c\", \"sleep 3; echo kept\"]",
    ))
    .await;
    let id = stack.run_now("keeper").await;
    stack.wait_run(id, Some("running"), LONG).await;
    // Remove the running job and add another; the run goes on.
    stack.write_policy("", &job("newcomer", "command = [\"echo\", \"new\"]"));
    stack.wait_job("newcomer").await;
    let (status, _) = stack
        .post(
            gatehouse_tests::scheduler::OPERATOR_KEY,
            "/api/jobs/keeper/run",
        )
        .await;
    assert_eq!(status, 404, "the removed job cannot be triggered");
    let (code, _) = stack
        .get(
            gatehouse_tests::scheduler::OPERATOR_KEY,
            &format!("/api/runs/{id}"),
        )
        .await;
    assert_eq!(
        code, 404,
        "runs of removed jobs have no owner to show them to"
    );
    // Put it back and see the run finished normally, its logs intact.
    stack.write_policy(
        "",
        &format!(
            "{}{}",
            job("keeper", "command = [\"true\"]"),
            job("newcomer", "command = [\"echo\", \"new\"]")
        ),
    );
    stack.wait_job("keeper").await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(stack.logs(id).await, "kept\n");
    let reloads = stack.audit_events("policy.reload", 2).await;
    assert!(
        reloads.iter().all(|r| r["outcome"] == "success"),
        "{reloads:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_pass_promtool_and_cover_runs_jitter_and_docker() {
    let stack = SchedulerUnderTest::start(&job("measured", "command = [\"true\"]")).await;
    let id = stack.run_now("measured").await;
    stack.wait_run(id, Some("succeeded"), LONG).await;
    let metrics = stack.metrics().await;
    for series in [
        "gatehouse_scheduler_runs_total{job_name=\"measured\",outcome=\"succeeded\"} 1",
        "gatehouse_scheduler_run_duration_seconds_count{job_name=\"measured\"} 1",
        "gatehouse_scheduler_last_success_timestamp_seconds{job_name=\"measured\"}",
        "gatehouse_scheduler_runs_running 0",
        "gatehouse_scheduler_runs_queued 0",
        "gatehouse_scheduler_schedule_jitter_seconds_bucket",
        "gatehouse_scheduler_audit_log_healthy 1",
    ] {
        assert!(metrics.contains(series), "missing {series}:\n{metrics}");
    }
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(metrics.as_bytes());
    let out = promtool.as_mut().expect("promtool");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_never_means_never_and_a_missing_image_fails_the_run_with_the_reason() {
    let stack = SchedulerUnderTest::start(
        &job("absent", "command = [\"true\"]")
            .replace("gatehouse-test/busybox:latest", "gatehouse-test/not-here:1"),
    )
    .await;
    let id = stack.run_now("absent").await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "failed", "{run}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not present locally"), "{reason}");
    assert!(
        run["container_id"].is_null(),
        "no container was created: {run}"
    );
    let images = stack
        .docker()
        .args(["images", "-q", "gatehouse-test/not-here"])
        .output()
        .expect("docker images");
    assert!(images.stdout.is_empty(), "nothing was pulled");
}
