//! The dashboard through the real gateway, as plain HTTP: pages, forms,
//! role checks and headers. The browser tests drive the same pages in
//! chromium; these pin the server's side without one.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gatehouse_tests::scheduler::{job, OPERATOR_KEY, VIEWER_KEY};
use gatehouse_tests::SchedulerUnderTest;

async fn page(
    stack: &SchedulerUnderTest,
    key: &str,
    method: reqwest::Method,
    path: &str,
) -> reqwest::Response {
    stack
        .client()
        .request(method, stack.url(path))
        .header("x-api-key", key)
        .header("accept", "text/html")
        .send()
        .await
        .expect("request")
}

async fn html(stack: &SchedulerUnderTest, key: &str, path: &str) -> (u16, String) {
    let r = page(stack, key, reqwest::Method::GET, path).await;
    let status = r.status().as_u16();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/html"),
        "{path}: {content_type}"
    );
    (status, r.text().await.unwrap())
}

fn run_link(location: &str) -> i64 {
    location
        .strip_prefix("/runs/")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a run page: {location}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_runs_and_cancels_jobs_for_runners_and_only_shows_them_to_viewers() {
    let jobs = job(
        "hello",
        "schedule = \"0 3 * * *\"\ncommand = [\"echo\", \"hello from <the> job\"]",
    ) + &job("sleeper", "command = [\"sleep\", \"300\"]")
        + "\n[[job]]\nname = \"secret\"\nimage = \"gatehouse-test/busybox:latest\"\npull = \"never\"\nrun_roles = [\"operator\"]\n";
    let stack = SchedulerUnderTest::start(&jobs).await;
    stack.wait_job("hello").await;

    operator_sees_every_job_with_buttons(&stack).await;
    let id = operator_runs_a_job_to_its_page(&stack).await;
    let long = operator_cancels_a_running_job(&stack).await;
    // The job page lists both runs of `hello`'s history, newest first.
    let (_, job_page) = html(&stack, OPERATOR_KEY, "/jobs/hello").await;
    assert!(
        job_page.contains(&format!("<tr data-run=\"{id}\" data-status=\"succeeded\">")),
        "{job_page}"
    );

    viewer_sees_only_view_roles_without_buttons(&stack, id).await;
    viewer_cannot_forge_or_see_what_is_hidden(&stack, long).await;
    static_files_have_their_types(&stack).await;
}

/// The operator's overview: every job, with buttons, under the gateway's CSP.
async fn operator_sees_every_job_with_buttons(stack: &SchedulerUnderTest) {
    let r = page(stack, OPERATOR_KEY, reqwest::Method::GET, "/").await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let overview = r.text().await.unwrap();
    for name in ["hello", "sleeper", "secret"] {
        assert!(
            overview.contains(&format!("<tr data-job=\"{name}\">")),
            "{overview}"
        );
        assert!(
            overview.contains(&format!("action=\"/jobs/{name}/run\"")),
            "{overview}"
        );
    }
    assert!(
        overview.contains("<span id=\"whoami\">api_key:operator</span>"),
        "{overview}"
    );
}

/// Run now: 303 to the run's page, which finishes with the job's output.
/// Returns the run's id.
async fn operator_runs_a_job_to_its_page(stack: &SchedulerUnderTest) -> i64 {
    let r = page(
        stack,
        OPERATOR_KEY,
        reqwest::Method::POST,
        "/jobs/hello/run",
    )
    .await;
    assert_eq!(r.status(), 303);
    let id = run_link(r.headers()["location"].to_str().unwrap());
    stack
        .wait_run(id, Some("succeeded"), Duration::from_secs(60))
        .await;
    let (status, run_page) = html(stack, OPERATOR_KEY, &format!("/runs/{id}")).await;
    assert_eq!(status, 200);
    assert!(
        run_page.contains("<dd id=\"run-status\" data-status=\"succeeded\">"),
        "{run_page}"
    );
    assert!(
        run_page.contains("hello from &lt;the&gt; job"),
        "{run_page}"
    );
    assert!(
        run_page.contains("manual, by api_key:operator"),
        "{run_page}"
    );
    assert!(
        !run_page.contains("id=\"cancel\""),
        "a finished run has no cancel: {run_page}"
    );
    id
}

/// Cancel: the button exists while the run is active and ends it. Returns
/// the cancelled run's id.
async fn operator_cancels_a_running_job(stack: &SchedulerUnderTest) -> i64 {
    let r = page(
        stack,
        OPERATOR_KEY,
        reqwest::Method::POST,
        "/jobs/sleeper/run",
    )
    .await;
    let long = run_link(r.headers()["location"].to_str().unwrap());
    stack
        .wait_run(long, Some("running"), Duration::from_secs(60))
        .await;
    let (_, running) = html(stack, OPERATOR_KEY, &format!("/runs/{long}")).await;
    assert!(
        running.contains(&format!("action=\"/runs/{long}/cancel\"")),
        "{running}"
    );
    let r = page(
        stack,
        OPERATOR_KEY,
        reqwest::Method::POST,
        &format!("/runs/{long}/cancel"),
    )
    .await;
    assert_eq!(r.status(), 303);
    stack
        .wait_run(long, Some("cancelled"), Duration::from_secs(60))
        .await;
    long
}

/// The viewer sees what view_roles allow, without buttons.
async fn viewer_sees_only_view_roles_without_buttons(stack: &SchedulerUnderTest, id: i64) {
    let (status, overview) = html(stack, VIEWER_KEY, "/").await;
    assert_eq!(status, 200);
    assert!(overview.contains("<tr data-job=\"hello\">"), "{overview}");
    assert!(!overview.contains("data-job=\"secret\""), "{overview}");
    assert!(!overview.contains("Run now"), "{overview}");
    let (_, running_for_viewer) = html(stack, VIEWER_KEY, &format!("/runs/{id}")).await;
    assert!(
        !running_for_viewer.contains("cancel"),
        "{running_for_viewer}"
    );
}

/// A forged POST from the viewer is refused by the scheduler, with a page,
/// and creates no run; an invisible job is simply not there.
async fn viewer_cannot_forge_or_see_what_is_hidden(stack: &SchedulerUnderTest, long: i64) {
    let before = stack.runs_of("hello").await.len();
    let r = page(stack, VIEWER_KEY, reqwest::Method::POST, "/jobs/hello/run").await;
    assert_eq!(r.status(), 403);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("may view this job but not run it"));
    assert_eq!(stack.runs_of("hello").await.len(), before);
    let r = page(
        stack,
        VIEWER_KEY,
        reqwest::Method::POST,
        &format!("/runs/{long}/cancel"),
    )
    .await;
    assert_eq!(r.status(), 403);
    for path in ["/jobs/secret", "/jobs/nope", "/runs/999999", "/elsewhere"] {
        let (status, body) = html(stack, VIEWER_KEY, path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("secret"), "{path}: {body}");
    }
}

/// The script and style the pages load, with their types.
async fn static_files_have_their_types(stack: &SchedulerUnderTest) {
    for (path, kind) in [
        ("/static/dashboard.js", "text/javascript"),
        ("/static/dashboard.css", "text/css"),
    ] {
        let r = page(stack, VIEWER_KEY, reqwest::Method::GET, path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
    }
}

/// The MDN HTTP Observatory grades, through the gateway, the dashboard as a
/// runner and a viewer see it and what an anonymous visitor meets (the 401
/// that asks for credentials): A+ each, with no failed test and a real
/// HTTP-to-HTTPS redirect.
#[tokio::test(flavor = "multi_thread")]
async fn the_observatory_grades_the_dashboard_pages_a_plus() {
    let stack = SchedulerUnderTest::start(&job("hello", "command = [\"true\"]")).await;
    stack.wait_job("hello").await;
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/tools/observatory");
    for (path, key, status) in [
        ("/", Some(OPERATOR_KEY), 200),
        ("/jobs/hello", Some(VIEWER_KEY), 200),
        ("/", None, 401),
    ] {
        let mut headers = vec![
            "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8".to_owned(),
        ];
        headers.extend(key.map(|key| format!("X-Api-Key: {key}")));
        let options = serde_json::json!({
            "httpsPort": stack.https.port().to_string(),
            "httpPort": stack.http.port().to_string(),
            "path": path,
            "headers": headers,
        });
        let out = tokio::process::Command::new(tool)
            .arg("localhost")
            .arg(stack.gateway.pki.ca_path())
            .arg("A+")
            .env("OBSERVATORY_OPTIONS", options.to_string())
            .output()
            .await
            .expect("tests/tools/observatory runs");
        let report = format!(
            "{path} as {key:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{report}");
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect(&report);
        assert_eq!(result["scan"]["grade"], "A+", "{report}");
        assert_eq!(result["scan"]["statusCode"], status, "{report}");
        assert_eq!(result["scan"]["testsFailed"], 0, "{report}");
        assert_eq!(
            result["tests"]["redirection"]["result"], "redirection-to-https",
            "{report}"
        );
    }
}
