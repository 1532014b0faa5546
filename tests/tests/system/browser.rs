//! The dashboard in a real browser: headless Chromium (through
//! chromedriver) logs in at the real OpenID provider through the real
//! gateway, runs and cancels jobs with the page's own buttons, watches the
//! run pages update live, logs out, and then tries what a viewer must not
//! be able to do. Every step leaves a screenshot in `tests/artifacts/browser/`.
//!
//! What only a browser can show: the pages work under the gateway's CSP
//! (no console error, no CSP violation, the live-update script runs), the
//! session cookie's flags as the browser stored them, and that forms post
//! with an `Origin` the gateway's CSRF check accepts.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use gatehouse_tests::browser::{spki_sha256_base64, ConsoleEntry, SameSite};
use gatehouse_tests::{free_port, Browser, DocumentServer, Idp};
use serde_json::json;

use gatehouse_tests::gateway::hash_password;
use gatehouse_tests::idp::oidc_policy;
use gatehouse_tests::scheduler::{job, shared_docker, OPERATOR_KEY};
use gatehouse_tests::SchedulerUnderTest;

const SESSION_COOKIE: &str = "__Host-gatehouse";

fn gateway_login(issuer: &str) -> String {
    format!(
        r#"
[session]
keys = ["a-session-key-for-the-browser-tests-long-enough-0123456789"]
idle_timeout = "10m"
lifetime = "1h"

{}"#,
        oidc_policy(
            issuer,
            r#"allowed_domains = ["example.com"]"#,
            r#"role_map = { ops = ["operator"], staff = ["viewer"] }"#,
        )
    )
}

fn artifacts() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/artifacts/browser"))
}

/// From wherever the provider's pages start, logs in as `user` (its
/// development login form, then consent if asked) until the browser is
/// back at `origin`.
async fn log_in_at_provider(browser: &Browser, issuer: &str, origin: &str, user: &str) {
    for _ in 0..6 {
        let url = browser.url().await.unwrap();
        if url.starts_with(origin) {
            return;
        }
        assert!(
            url.starts_with(issuer),
            "neither provider nor gateway: {url}"
        );
        if browser.has("input[name=login]").await.unwrap() {
            browser.fill("input[name=login]", user).await.unwrap();
            browser.fill("input[name=password]", "any").await.unwrap();
            browser.screenshot(&format!("login-{user}")).await.unwrap();
        }
        browser
            .click_to_navigate("button[type=submit]")
            .await
            .unwrap();
    }
    panic!(
        "the provider never sent the browser back; at {}",
        browser.url().await.unwrap()
    );
}

/// The run id of a `/runs/ID` URL.
fn run_id(url: &str) -> i64 {
    url.split("/runs/")
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a run page: {url}"))
}

/// The gateway's audit log, for failure messages: it names every refusal.
fn gateway_audit(stack: &SchedulerUnderTest) -> String {
    std::fs::read_to_string(stack.dir().join("audit.jsonl")).unwrap_or_default()
}

/// Console errors that are ours: from pages or resources of `origin`, and
/// every CSP violation wherever it happened. The test provider's own pages
/// load Google Fonts (no network here) and have no favicon; those are not
/// ours.
fn ours(errors: Vec<ConsoleEntry>, origin: &str) -> Vec<ConsoleEntry> {
    errors
        .into_iter()
        .filter(|e| e.is_csp_violation() || e.message.starts_with(origin))
        .collect()
}

fn assert_clean(errors: &[ConsoleEntry], when: &str) {
    assert!(
        errors.is_empty(),
        "console errors or CSP violations {when}: {errors:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_and_viewer_use_the_dashboard_in_chromium() {
    let idp_port = free_port();
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let (stack, _idp) = start_stack_and_provider(idp_port, &issuer).await;
    // Only the test server's own key is accepted besides the (empty for
    // this profile) root store; the pages are a real secure context.
    let pin = spki_sha256_base64(&stack.dir().join("server-key.pem")).unwrap();
    let mut browser = Browser::start(&[pin], &artifacts()).await.unwrap();

    let copied = operator_logs_in(&browser, &stack, &issuer).await;
    let hello_run = operator_runs_a_job(&browser, &stack).await;
    operator_cancels_a_run(&mut browser, &stack).await;
    operator_logs_out(&browser, &stack, &issuer).await;
    a_copied_session_cookie_is_revoked(&stack, &copied).await;
    let running = viewer_sees_the_pages_without_buttons(&mut browser, &stack, &issuer).await;
    viewer_cannot_forge_runs_or_cancels(&mut browser, &stack, hello_run, running).await;

    let (_, body) = stack
        .post(OPERATOR_KEY, &format!("/api/runs/{running}/cancel"))
        .await;
    assert!(body.is_object(), "{body}");
    browser.close().await.unwrap();
}

/// The stack with a `hello`, a `sleeper` and a scheduled job, logins at
/// the provider (started on `idp_port`) for an operator and a viewer.
async fn start_stack_and_provider(idp_port: u16, issuer: &str) -> (SchedulerUnderTest, Idp) {
    let jobs = job(
        "hello",
        "command = [\"echo\", \"hello from the browser test\"]",
    ) + &job("sleeper", "command = [\"sleep\", \"300\"]")
        + &job(
            "nightly-report",
            "schedule = \"30 2 * * *\"\ncommand = [\"echo\", \"report\"]",
        );
    let stack = SchedulerUnderTest::start_with_gateway(
        &shared_docker().host(),
        &gateway_login(issuer),
        "",
        &jobs,
    )
    .await;
    stack.wait_job("hello").await;
    let idp = Idp::start_for_gateway(
        idp_port,
        &stack.url(""),
        json!({
            "olivia": {"email": "olivia@example.com", "email_verified": true, "groups": ["ops"]},
            "victor": {"email": "victor@example.com", "email_verified": true, "groups": ["staff"]},
        }),
    )
    .unwrap();
    (stack, idp)
}

/// Not logged in, the dashboard sends the browser to the provider; after
/// the operator's login it shows who they are. Returns the session
/// cookie's value, checked for its flags as the browser stored them.
async fn operator_logs_in(browser: &Browser, stack: &SchedulerUnderTest, issuer: &str) -> String {
    let origin = stack.url("");
    browser.goto(&stack.url("/")).await.unwrap();
    browser
        .wait_url("the provider", |u| u.starts_with(issuer))
        .await
        .unwrap();
    log_in_at_provider(browser, issuer, &origin, "olivia").await;
    browser.wait_css("table#jobs").await.unwrap();
    assert_eq!(browser.url().await.unwrap(), stack.url("/"));
    assert_eq!(browser.text("#whoami").await.unwrap(), "olivia@example.com");
    assert!(browser.text("#roles").await.unwrap().contains("operator"));
    browser.screenshot("01-operator-dashboard").await.unwrap();

    // The session cookie, as the browser stored it.
    let cookies = browser.cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no {SESSION_COOKIE} cookie: {cookies:?}"));
    assert_eq!(session.secure(), Some(true), "{session:?}");
    assert_eq!(session.http_only(), Some(true), "{session:?}");
    assert_eq!(session.same_site(), Some(SameSite::Lax), "{session:?}");
    assert_eq!(session.path(), Some("/"), "{session:?}");
    // A host-only cookie: chromedriver reports its host without the
    // leading dot a Domain attribute would give it.
    assert_eq!(session.domain(), Some("localhost"), "{session:?}");
    session.value().to_owned()
}

/// Run now on the quick job: the run page follows it to success live.
/// Returns the run's id.
async fn operator_runs_a_job(browser: &Browser, stack: &SchedulerUnderTest) -> i64 {
    browser
        .click_to_navigate("tr[data-job=hello] form.run-now button")
        .await
        .unwrap();
    let hello_url = browser
        .wait_url("a run page", |u| u.contains("/runs/"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n--- gateway audit ---\n{}", gateway_audit(stack)));
    let hello_run = run_id(&hello_url);
    browser
        .wait_css("#run-status[data-status=succeeded]")
        .await
        .unwrap();
    assert_eq!(browser.text("#run-status").await.unwrap(), "succeeded");
    let logs = browser.text("#run-logs").await.unwrap();
    assert!(logs.contains("hello from the browser test"), "{logs}");
    assert!(!browser.has("#cancel").await.unwrap());
    browser.screenshot("02-run-succeeded").await.unwrap();

    hello_run
}

/// The long job: running, then cancelled with the page's button; the
/// dashboard then shows the outcomes, with no console errors.
async fn operator_cancels_a_run(browser: &mut Browser, stack: &SchedulerUnderTest) {
    let origin = stack.url("");
    // (A job with no runs yet has no `#runs` table, only a note.)
    browser.goto(&stack.url("/jobs/sleeper")).await.unwrap();
    browser
        .click_to_navigate("form.run-now button")
        .await
        .unwrap();
    let sleeper_url = browser
        .wait_url("a run page", |u| u.contains("/runs/"))
        .await
        .unwrap();
    browser
        .wait_css("#run-status[data-status=running]")
        .await
        .unwrap();
    browser.screenshot("03-run-running").await.unwrap();
    browser.click_to_navigate("#cancel button").await.unwrap();
    assert_eq!(browser.url().await.unwrap(), sleeper_url);
    browser
        .wait_css("#run-status[data-status=cancelled]")
        .await
        .unwrap();
    assert!(!browser.has("#cancel").await.unwrap());
    browser.screenshot("04-run-cancelled").await.unwrap();
    let cancelled = stack.run(run_id(&sleeper_url)).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");

    browser.goto(&stack.url("/")).await.unwrap();
    browser
        .wait_css("tr[data-job=hello] td.last-outcome[data-status=succeeded]")
        .await
        .unwrap();
    browser.screenshot("05-dashboard-after-runs").await.unwrap();
    assert_clean(
        &ours(browser.console_errors().await.unwrap(), &origin),
        "as the operator",
    );
}

/// Log out with the header's link; the provider asks to confirm its own
/// sign-out, then sends the browser back, where there is no session any
/// more.
async fn operator_logs_out(browser: &Browser, stack: &SchedulerUnderTest, issuer: &str) {
    browser.click_to_navigate("a#logout").await.unwrap();
    browser
        .wait_url("the provider's sign-out", |u| u.starts_with(issuer))
        .await
        .unwrap();
    browser.screenshot("06-provider-sign-out").await.unwrap();
    browser
        .click_to_navigate("button[type=submit]")
        .await
        .unwrap();
    browser.wait_css("input[name=login]").await.unwrap();
    assert!(browser.url().await.unwrap().starts_with(issuer));
    browser.goto(&stack.url("/")).await.unwrap();
    browser.wait_css("input[name=login]").await.unwrap();
    assert!(browser.url().await.unwrap().starts_with(issuer));
    browser.screenshot("07-logged-out").await.unwrap();
}

/// The cookie copied before logout was revoked with the session: another
/// client replaying it gets 401, not the operator's dashboard.
async fn a_copied_session_cookie_is_revoked(stack: &SchedulerUnderTest, copied: &str) {
    let replayed = stack
        .client()
        .get(stack.url("/api/jobs"))
        .header("cookie", format!("{SESSION_COOKIE}={copied}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 401);
}

/// The viewer: the same pages, without the buttons, while a run of the
/// sleeper (returned) is running.
async fn viewer_sees_the_pages_without_buttons(
    browser: &mut Browser,
    stack: &SchedulerUnderTest,
    issuer: &str,
) -> i64 {
    let origin = stack.url("");
    let running = stack.run_now("sleeper").await;
    stack
        .wait_run(running, Some("running"), Duration::from_secs(30))
        .await;
    log_in_at_provider(browser, issuer, &origin, "victor").await;
    browser.wait_css("table#jobs").await.unwrap();
    assert_eq!(browser.text("#whoami").await.unwrap(), "victor@example.com");
    assert!(browser.has("tr[data-job=hello]").await.unwrap());
    assert!(!browser.has("form.run-now").await.unwrap());
    browser.screenshot("08-viewer-dashboard").await.unwrap();
    browser
        .goto(&stack.url(&format!("/runs/{running}")))
        .await
        .unwrap();
    browser
        .wait_css("#run-status[data-status=running]")
        .await
        .unwrap();
    assert!(!browser.has("#cancel").await.unwrap());
    browser.goto(&stack.url("/jobs/hello")).await.unwrap();
    browser.wait_css("table#runs").await.unwrap();
    assert!(!browser.has("form.run-now").await.unwrap());
    assert_clean(
        &ours(browser.console_errors().await.unwrap(), &origin),
        "as the viewer",
    );

    running
}

/// Forged from the viewer's own page (same origin, real cookies): the
/// scheduler refuses both, and nothing runs or stops.
async fn viewer_cannot_forge_runs_or_cancels(
    browser: &mut Browser,
    stack: &SchedulerUnderTest,
    hello_run: i64,
    running: i64,
) {
    let origin = stack.url("");
    let statuses = browser
        .client
        .execute(
            "const post = (path) => fetch(path, { method: 'POST', redirect: 'manual', \
               body: new URLSearchParams() }).then((r) => r.status); \
             return Promise.all([post('/jobs/hello/run'), post(arguments[0])]);",
            vec![json!(format!("/runs/{running}/cancel"))],
        )
        .await
        .unwrap();
    assert_eq!(statuses, json!([403, 403]));
    let errors = ours(browser.console_errors().await.unwrap(), &origin);
    assert!(
        errors.iter().all(|e| e.message.contains("403")),
        "only the refused posts may log errors: {errors:#?}"
    );
    // And as a plain form submission, the way a page would do it.
    browser
        .client
        .execute(
            "const form = document.createElement('form'); \
             form.method = 'post'; form.action = '/jobs/hello/run'; \
             document.body.append(form); form.submit();",
            vec![],
        )
        .await
        .unwrap();
    browser.wait_css("#error").await.unwrap();
    browser.screenshot("09-viewer-forged-run").await.unwrap();
    let hello_runs = stack.runs_of("hello").await;
    assert_eq!(hello_runs.len(), 1, "{hello_runs:?}");
    assert_eq!(hello_runs[0]["id"], hello_run);
    assert_eq!(stack.run(running).await["status"], "running");
}

/// Browsers keep basic credentials after the `WWW-Authenticate: Basic`
/// prompt and send them with every later request to the site, a hostile
/// site's form posts included. The gateway's CSRF stage must treat them
/// like a session cookie: the cross-site post is refused before it reaches
/// the scheduler, and no run is created.
#[tokio::test(flavor = "multi_thread")]
async fn a_cross_site_form_post_with_cached_basic_credentials_is_refused() {
    const PASSWORD: &str = "correct horse battery staple";
    let basic_user = format!(
        "[[basic_user]]\nname = \"ops\"\npassword_hash = \"{}\"\nroles = [\"operator\"]\n",
        hash_password(PASSWORD)
    );
    let jobs = job("hello", "command = [\"echo\", \"hello\"]");
    let stack =
        SchedulerUnderTest::start_with_gateway(&shared_docker().host(), &basic_user, "", &jobs)
            .await;
    stack.wait_job("hello").await;
    let pin = spki_sha256_base64(&stack.dir().join("server-key.pem")).unwrap();
    let browser = Browser::start(&[pin], &artifacts()).await.unwrap();

    // Log in the way a user answers the prompt: the browser now holds the
    // credentials for the site.
    let with_credentials = stack.url("/").replacen(
        "https://",
        &format!("https://ops:{}@", PASSWORD.replace(' ', "%20")),
        1,
    );
    browser.goto(&with_credentials).await.unwrap();
    browser.wait_css("table#jobs").await.unwrap();
    browser.goto(&stack.url("/jobs/hello")).await.unwrap();
    browser.wait_css("form.run-now").await.unwrap();
    browser.screenshot("basic-01-logged-in").await.unwrap();

    // A page on another site posts the dashboard's own Run now form.
    let hostile = DocumentServer::start_as(
        format!(
            "<!doctype html><title>cute cats</title>\
             <form method=post action=\"{}\"><input name=x value=1></form>\
             <script>document.forms[0].submit()</script>",
            stack.url("/jobs/hello/run")
        ),
        "text/html; charset=utf-8",
    )
    .await
    .unwrap();
    browser.goto(&hostile.url("/cats")).await.unwrap();
    browser
        .wait_url("the gateway's answer", |u| u.starts_with(&stack.url("")))
        .await
        .unwrap();
    let body = browser.text("body").await.unwrap();
    browser
        .screenshot("basic-02-cross-site-post")
        .await
        .unwrap();
    assert!(body.contains("403"), "{body}");

    // The browser did send the credentials (else this would be a 401), and
    // the gateway refused them for want of a same-origin proof.
    let refused = gateway_audit(&stack)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["event"] == "access.denied" && r["details"]["reason"] == "csrf-cross-site")
        .collect::<Vec<_>>();
    assert_eq!(refused.len(), 1, "{}", gateway_audit(&stack));
    assert_eq!(refused[0]["actor"]["subject"], "basic:ops");
    assert!(stack.runs_of("hello").await.is_empty(), "a run was created");

    // The dashboard's own button, same origin, still works.
    browser.goto(&stack.url("/jobs/hello")).await.unwrap();
    browser
        .click_to_navigate("form.run-now button")
        .await
        .unwrap();
    browser
        .wait_url("a run page", |u| u.contains("/runs/"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n--- gateway audit ---\n{}", gateway_audit(&stack)));
    assert_eq!(stack.runs_of("hello").await.len(), 1);
    browser.close().await.unwrap();
}
