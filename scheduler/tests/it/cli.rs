//! The command line: `next` to check a schedule, `check` to validate a
//! policy with file:line:col diagnostics; bad jobs never reach Docker.

use std::process::Command;
use std::time::Duration;

use gatehouse_tests::binaries;
use gatehouse_tests::scheduler::{job, OPERATOR_KEY};
use gatehouse_tests::SchedulerUnderTest;

fn scheduler(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binaries::scheduler())
        .args(args)
        .output()
        .expect("run gatehouse-scheduler");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn next_prints_fire_times_with_offsets_across_dst() {
    // Europe/Berlin springs forward at 02:00 on 2026-03-29: 02:30 does not
    // exist that day and fires once, at 03:00 CEST.
    let (code, out, err) = scheduler(&[
        "next",
        "30 2 * * *",
        "--timezone",
        "Europe/Berlin",
        "--after",
        "2026-03-27T12:00:00Z",
        "--count",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "2026-03-28T02:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00"
        ]
    );
    let (code, _, err) = scheduler(&["next", "61 * * * *"]);
    assert_ne!(code, 0);
    assert!(err.contains("61"), "the reason names the bad field: {err}");
    let (code, _, err) = scheduler(&["next", "0 3 * * *", "--timezone", "Mars/Olympus"]);
    assert_ne!(code, 0);
    assert!(err.contains("Mars/Olympus"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_jobs_are_rejected_with_their_location_and_a_running_scheduler_keeps_its_jobs() {
    let stack = SchedulerUnderTest::start(&job("good", "command = [\"true\"]")).await;
    let cases = [
        (
            "image = \"gatehouse-test/BAD IMAGE\"",
            "not a valid image reference",
        ),
        (
            "env = { \"9LIVES\" = \"x\" }",
            "not a valid environment variable name",
        ),
        ("container = { memory = \"1TiB\" }", "memory is outside"),
    ];
    for (body, expected) in cases {
        let image = if body.starts_with("image") {
            ""
        } else {
            "image = \"gatehouse-test/busybox:latest\"\n"
        };
        let text = format!(
            "{}\n[[job]]\nname = \"bad\"\n{image}{body}\n",
            job("good", "command = [\"true\"]")
        );
        stack.write_policy("", &text);
        let (code, _, err) = scheduler(&[
            "check",
            "--policy",
            stack.policy_path.to_str().expect("path"),
        ]);
        assert_ne!(code, 0, "{body} was accepted");
        assert!(err.contains(expected), "{body}: {err}");
        assert!(
            err.contains("policy.toml:"),
            "diagnostics name the file and line: {err}"
        );
    }
    // An image outside the allowlist, through a reload of the running one.
    stack.write_policy("", &format!("{}\n[[job]]\nname = \"bad\"\nimage = \"evil.example.com/x:1\"\nrun_roles = [\"operator\"]\n", job("good", "command = [\"true\"]")));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = stack.post(OPERATOR_KEY, "/api/jobs/bad/run").await;
    assert_eq!(status, 404, "the rejected job does not exist");
    let id = stack.run_now("good").await;
    let run = stack.wait_run(id, None, Duration::from_secs(30)).await;
    assert_eq!(run["status"], "succeeded");
    assert!(
        stack
            .scheduler_log()
            .contains("not in [scheduler] allowed_images"),
        "{}",
        stack.scheduler_log()
    );
    let (code, out, _) = scheduler(&[
        "check",
        "--policy",
        stack.policy_path.to_str().expect("path"),
    ]);
    assert_ne!(code, 0, "{out}");
}
