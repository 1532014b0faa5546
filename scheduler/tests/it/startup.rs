//! The scheduler starts without Docker: it serves its API and history,
//! says on `/readyz` why it is not ready, refuses manual triggers with 503
//! rather than queueing them, and becomes ready once dockerd answers.

use std::time::Duration;

use gatehouse_tests::docker::PrivateDocker;

use gatehouse_tests::metrics::metric_value;
use gatehouse_tests::scheduler::{job, OPERATOR_KEY, VIEWER_KEY};
use gatehouse_tests::SchedulerUnderTest;

const LONG: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread")]
async fn the_scheduler_starts_without_docker_and_becomes_ready_when_it_answers() {
    let mut docker = PrivateDocker::start().expect("a private dockerd of its own");
    let mut stack = SchedulerUnderTest::start_on(
        &docker.host(),
        "",
        &job("hello", "command = [\"echo\", \"hello\"]"),
    )
    .await;
    // Some history from before.
    let earlier = stack.run_now("hello").await;
    stack.wait_run(earlier, Some("succeeded"), LONG).await;
    stack.kill_scheduler("TERM");

    // dockerd is down (its socket gone) when the scheduler starts.
    let docker = tokio::task::spawn_blocking(move || docker.stop().map(|()| docker))
        .await
        .expect("join")
        .expect("stop dockerd");
    stack.spawn_scheduler_unready().await;

    not_ready_because_of_docker(&stack).await;
    the_api_and_history_are_served(&stack, earlier).await;
    a_manual_trigger_is_refused_and_not_queued(&stack).await;

    // dockerd comes up: the scheduler connects, reconciles and is ready
    // (its backoff is at most 10 s between attempts).
    let mut docker = docker;
    let docker = tokio::task::spawn_blocking(move || docker.start_again().map(|()| docker))
        .await
        .expect("join")
        .expect("start dockerd again");
    let answering = std::time::Instant::now();
    stack.wait_ready().await;
    println!(
        "startup: ready {:?} after dockerd answered",
        answering.elapsed()
    );
    assert_eq!(stack.readyz().await, (200, "ready\n".to_owned()));
    let id = stack.run_now("hello").await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(stack.logs(id).await, "hello\n");
    let metrics = stack.metrics().await;
    assert_eq!(
        metric_value(&metrics, "gatehouse_scheduler_docker_up"),
        Some(1.0)
    );
    assert!(
        stack.scheduler_log().contains("Docker is not answering"),
        "{}",
        stack.scheduler_log()
    );
    drop(stack);
    drop(docker);
}

/// Not ready, and (once the gateway's keys are in) Docker is why.
async fn not_ready_because_of_docker(stack: &SchedulerUnderTest) {
    let mut readyz = stack.readyz().await;
    for _ in 0..100 {
        if readyz.0 != 503 || only_docker_is_missing(&readyz.1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        readyz = stack.readyz().await;
    }
    let (status, body) = readyz;
    assert_eq!(status, 503, "{body}");
    assert!(
        only_docker_is_missing(&body) && body.contains("connect"),
        "readyz names Docker as the reason: {body}"
    );
}

/// The API and the history are served without Docker.
async fn the_api_and_history_are_served(stack: &SchedulerUnderTest, earlier: i64) {
    let (status, run) = stack.get(VIEWER_KEY, &format!("/api/runs/{earlier}")).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["run"]["status"], "succeeded");
    assert_eq!(stack.runs_of("hello").await.len(), 1);
    let page = stack
        .client()
        .get(stack.url("/jobs/hello"))
        .header("x-api-key", VIEWER_KEY)
        .send()
        .await
        .expect("dashboard");
    assert_eq!(page.status(), 200);
}

/// A manual trigger is refused with the reason, and nothing is queued.
async fn a_manual_trigger_is_refused_and_not_queued(stack: &SchedulerUnderTest) {
    let refused = stack
        .client()
        .post(stack.url("/api/jobs/hello/run"))
        .header("x-api-key", OPERATOR_KEY)
        .send()
        .await
        .expect("trigger");
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "docker_unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not queued"),
        "{body}"
    );
    assert_eq!(
        stack.runs_of("hello").await.len(),
        1,
        "a refused trigger records no run"
    );
    let refusals: Vec<_> = stack
        .audit_events("job.trigger", 2)
        .await
        .into_iter()
        .filter(|r| r["outcome"] == "failure")
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(refusals[0]["details"]["reason"].is_string(), "{refusals:?}");
    let metrics = stack.metrics().await;
    assert_eq!(
        metric_value(&metrics, "gatehouse_scheduler_docker_up"),
        Some(0.0)
    );
}

/// `/readyz` lists each failing check as `check: reason`; Docker alone.
fn only_docker_is_missing(body: &str) -> bool {
    let failing: Vec<&str> = body.lines().filter(|l| l.contains(": ")).collect();
    failing.len() == 1 && failing[0].starts_with("docker: ")
}
