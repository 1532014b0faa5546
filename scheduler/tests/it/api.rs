//! Who may reach the API, and who may see, run and cancel which job.

use std::time::Duration;

use gatehouse_tests::metrics::metric_value;
use gatehouse_tests::scheduler::{job, OPERATOR_KEY, VIEWER_KEY};
use gatehouse_tests::SchedulerUnderTest;

fn two_jobs() -> String {
    let shared = job(
        "shared",
        "command = [\"sh\", \"-c\", \"sleep 30\"]\noverlap = \"allow\"",
    );
    let private = "\n[[job]]\nname = \"private\"\nimage = \"gatehouse-test/busybox:latest\"\npull = \"never\"\ncommand = [\"true\"]\nrun_roles = [\"operator\"]\n";
    format!("{shared}{private}")
}

#[tokio::test(flavor = "multi_thread")]
async fn only_requests_signed_by_the_gateway_reach_the_api() {
    let stack = SchedulerUnderTest::start(&two_jobs()).await;
    let direct = reqwest::Client::new();
    let url = format!("http://{}/api/jobs", stack.sched);
    // Straight to the scheduler's port, even from localhost: 401.
    let r = direct.get(&url).send().await.expect("direct");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthenticated");
    // A forged assertion (unsigned token) gets the same.
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let r = direct
        .get(&url)
        .header("x-gatehouse-assertion", forged)
        .send()
        .await
        .expect("forged");
    assert_eq!(r.status(), 401);
    // Through the gateway without a credential: the gateway refuses.
    let r = stack
        .client()
        .get(stack.url("/api/jobs"))
        .send()
        .await
        .expect("anonymous");
    assert_eq!(r.status(), 401);
    // Through the gateway with a key: the scheduler answers.
    let (status, body) = stack.get(VIEWER_KEY, "/api/jobs").await;
    assert_eq!(status, 200, "{body}");
    let metrics = stack.metrics().await;
    assert!(
        metric_value(
            &metrics,
            "gatehouse_scheduler_api_denials_total{reason=\"unauthenticated\"}"
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_decide_who_sees_runs_and_cancels_each_job() {
    let stack = SchedulerUnderTest::start(&two_jobs()).await;

    // The viewer sees only the job that names its role, without a Run right.
    let (_, body) = stack.get(VIEWER_KEY, "/api/jobs").await;
    let names: Vec<&str> = body["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert_eq!(names, ["shared"]);
    assert_eq!(body["jobs"][0]["may_run"], false);
    let (status, _) = stack.get(VIEWER_KEY, "/api/jobs/private").await;
    assert_eq!(
        status, 404,
        "a job the caller may not view does not exist for them"
    );
    let (_, body) = stack.get(OPERATOR_KEY, "/api/jobs").await;
    assert_eq!(body["jobs"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["jobs"][0]["may_run"], true);

    // The viewer may not run it; the operator may.
    let (status, body) = stack.post(VIEWER_KEY, "/api/jobs/shared/run").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, _) = stack.post(VIEWER_KEY, "/api/jobs/private/run").await;
    assert_eq!(status, 404);
    let id = stack.run_now("shared").await;
    stack
        .wait_run(id, Some("running"), Duration::from_secs(20))
        .await;

    // The viewer may not cancel; the operator may.
    let (status, _) = stack
        .post(VIEWER_KEY, &format!("/api/runs/{id}/cancel"))
        .await;
    assert_eq!(status, 403);
    let (status, body) = stack
        .post(OPERATOR_KEY, &format!("/api/runs/{id}/cancel"))
        .await;
    assert_eq!(status, 202, "{body}");
    let run = stack.wait_run(id, None, Duration::from_secs(20)).await;
    assert_eq!(run["status"], "cancelled");
    assert_eq!(run["reason"], "cancelled by api_key:operator", "{run}");
    let (status, body) = stack
        .post(OPERATOR_KEY, &format!("/api/runs/{id}/cancel"))
        .await;
    assert_eq!(status, 409, "a finished run cannot be cancelled: {body}");

    // Every decision is audited with the caller.
    let triggers = stack.audit_events("job.trigger", 2).await;
    assert!(
        triggers
            .iter()
            .any(|r| r["outcome"] == "denied" && r["actor"]["subject"] == "api_key:viewer"),
        "{triggers:?}"
    );
    assert!(triggers
        .iter()
        .any(|r| r["outcome"] == "success" && r["details"]["run"] == id));
    let cancels = stack.audit_events("job.cancel", 2).await;
    assert!(cancels.iter().any(|r| r["outcome"] == "denied"));
    assert!(cancels
        .iter()
        .any(|r| r["outcome"] == "success" && r["actor"]["subject"] == "api_key:operator"));
    let finished = stack.audit_events("run.finish", 1).await;
    assert_eq!(finished[0]["details"]["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_json_errors_and_change_nothing() {
    let stack = SchedulerUnderTest::start(&two_jobs()).await;
    for (path, want) in [
        ("/api/jobs/nope", 404),
        ("/api/runs/999999", 404),
        ("/api/runs/not-a-number", 404),
        ("/api/runs?status=exploded", 400),
        ("/api/runs?job=nope", 404),
        ("/api/elsewhere", 404),
    ] {
        let (status, body) = stack.get(OPERATOR_KEY, path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
        let text = body.to_string();
        assert!(
            !text.contains("sqlite") && !text.contains("panick"),
            "{path} leaks internals: {text}"
        );
    }
    let (status, _) = stack.post(OPERATOR_KEY, "/api/jobs/nope/run").await;
    assert_eq!(status, 404);
    assert!(stack.runs_of("shared").await.is_empty(), "nothing ran");
}
