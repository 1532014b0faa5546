//! `--log-format json`: every line the real scheduler writes to stderr is
//! one JSON object with the gateway's fields; the human format has no
//! colour codes in a file.

use std::time::Duration;

use serde_json::Value;

use gatehouse_tests::scheduler::{job, OPERATOR_KEY};
use gatehouse_tests::SchedulerUnderTest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_expected_fields() {
    let mut stack = SchedulerUnderTest::start(&job("hello", "command = [\"true\"]")).await;
    let human = stack.scheduler_log();
    assert!(
        !human.contains('\u{1b}'),
        "colour codes in a log file:\n{human}"
    );

    stack.kill_scheduler("TERM");
    stack.scheduler_args = vec!["--log-format".into(), "json".into()];
    stack.spawn_scheduler().await;
    // Some traffic: an accepted request, a refused one, a run, a shutdown.
    let id = stack.run_now("hello").await;
    stack.wait_run(id, None, Duration::from_secs(60)).await;
    let refused = reqwest::get(format!("http://{}/api/jobs", stack.sched))
        .await
        .expect("GET");
    assert_eq!(refused.status(), 401);
    assert_eq!(stack.get(OPERATOR_KEY, "/api/jobs").await.0, 200);
    stack.kill_scheduler("TERM");

    let log = std::fs::read_to_string(stack.dir().join("scheduler-2.log")).expect("log");
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 5, "too few lines:\n{log}");
    for line in &lines {
        let record: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n--- log ---\n{log}"));
        for field in ["timestamp", "level", "target"] {
            assert!(record[field].is_string(), "no {field}: {line}");
        }
        assert!(
            record["message"].is_string() || record["error"].is_string(),
            "no message: {line}"
        );
        assert!(
            chrono::DateTime::parse_from_rfc3339(record["timestamp"].as_str().unwrap_or(""))
                .is_ok(),
            "timestamp not RFC 3339: {line}"
        );
    }
    let has = |level: &str, text: &str| {
        lines.iter().any(|l| {
            let r: Value = serde_json::from_str(l).unwrap_or_default();
            r["level"] == level && r["message"].as_str().is_some_and(|m| m.contains(text))
        })
    };
    assert!(has("INFO", "gatehouse-scheduler is running"), "{log}");
    // Event fields sit at the top level, as in the gateway's JSON.
    let refusal = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| {
            r["message"]
                .as_str()
                .is_some_and(|m| m.contains("without a valid gateway assertion"))
        })
        .unwrap_or_else(|| panic!("no refusal line:\n{log}"));
    assert_eq!(refusal["path"], "/api/jobs", "{refusal}");
    assert_eq!(refusal["reason"], "no gateway assertion", "{refusal}");
}

#[test]
fn a_failure_in_json_mode_is_a_json_line_too() {
    let out = std::process::Command::new(gatehouse_tests::binaries::scheduler())
        .args([
            "--log-format",
            "json",
            "check",
            "--policy",
            "/nonexistent/policy.toml",
        ])
        .output()
        .expect("run the scheduler");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    let last = lines.last().expect("an error line");
    assert_eq!(last["level"], "ERROR", "{stderr}");
    assert!(
        last["error"]
            .as_str()
            .is_some_and(|e| e.contains("/nonexistent/policy.toml")),
        "{stderr}"
    );
}
