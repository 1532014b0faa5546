use gatehouse_policy::RoleName;
use std::collections::BTreeSet;

use axum::http::StatusCode;

use super::pages::{self, format_duration};
use crate::auth::Caller;
use crate::http::access::JobView;
use crate::store::{ReasonCode, Run, RunStatus, Trigger};

fn caller(roles: &[&str]) -> Caller {
    Caller {
        subject: "sub-1".into(),
        email: Some("ann@example.com".into()),
        roles: roles
            .iter()
            .map(|r| RoleName::from(*r))
            .collect::<BTreeSet<_>>(),
        auth: "oidc".into(),
    }
}

fn job_view(may_run: bool, last_run: Option<Run>) -> JobView {
    JobView {
        name: "nightly".into(),
        schedule: Some("0 3 * * *".into()),
        timezone: Some("Europe/Berlin".into()),
        description: Some("at 03:00 every day".into()),
        next_runs: vec![
            "2026-12-03T03:00:00+01:00".into(),
            "2026-12-04T03:00:00+01:00".into(),
            "2026-12-05T03:00:00+01:00".into(),
            "2026-12-06T03:00:00+01:00".into(),
        ],
        image: "gatehouse-test/busybox:latest".into(),
        image_pinned: false,
        timeout_seconds: 600,
        overlap: "forbid",
        may_run,
        last_run,
    }
}

fn run(status: RunStatus) -> Run {
    Run {
        id: 7,
        job: "nightly".into(),
        trigger: Trigger::Manual {
            by: "<b>mallory</b>".into(),
        },
        attempt: 1,
        status,
        queued_at: 1_764_633_600_000,
        started_at: Some(1_764_633_601_000),
        finished_at: status.is_terminal().then_some(1_764_633_603_500),
        exit_code: status.is_terminal().then_some(0),
        oom_killed: false,
        container_id: None,
        logs_truncated: false,
        reason: None,
        reason_code: None,
    }
}

/// A run lost at a restart: `started` says whether its container had run.
fn lost(started: bool) -> Run {
    let (code, reason) = if started {
        (
            ReasonCode::ContainerVanished,
            "the container vanished while the scheduler was away",
        )
    } else {
        (
            ReasonCode::NeverStarted,
            "never started: the scheduler stopped before the run's container was created",
        )
    };
    Run {
        started_at: started.then_some(1_764_633_601_000),
        exit_code: None,
        reason: Some(reason.into()),
        reason_code: Some(code),
        ..run(RunStatus::Lost)
    }
}

/// No inline script, no inline style, no event-handler attributes: the
/// gateway's CSP would block them and a browser would log a violation.
fn assert_csp_clean(page: &str) {
    assert!(!page.contains("<style"), "inline style element: {page}");
    assert!(!page.contains(" style="), "style attribute: {page}");
    assert!(!page.contains(" onclick="), "event handler: {page}");
    for (i, _) in page.match_indices("<script") {
        let tag_end = page[i..].find('>').unwrap() + i;
        assert!(page[i..tag_end].contains(" src="), "inline script: {page}");
        assert!(
            page[tag_end..].starts_with("></script>"),
            "script with a body: {page}"
        );
    }
}

#[test]
fn a_runner_sees_the_run_button_and_a_viewer_does_not() {
    let operator = pages::jobs(&caller(&["operator"]), &[job_view(true, None)]).into_string();
    assert!(operator.contains(r#"<form class="run-now" method="post" action="/jobs/nightly/run">"#));
    assert!(operator.contains(r#"<tr data-job="nightly">"#));
    assert!(operator.contains(r#"<td class="last-outcome" data-status="none">never run"#));
    assert_csp_clean(&operator);

    let viewer = pages::jobs(&caller(&["viewer"]), &[job_view(false, None)]).into_string();
    assert!(viewer.contains(r#"<tr data-job="nightly">"#));
    assert!(!viewer.contains("run-now"), "{viewer}");
    assert!(!viewer.contains("Run now"), "{viewer}");
}

#[test]
fn the_header_names_the_user_their_roles_and_a_logout_form() {
    let page = pages::jobs(&caller(&["operator", "viewer"]), &[]).into_string();
    assert!(page.contains(r#"<span id="whoami">ann@example.com</span>"#));
    assert!(page.contains(r#"<span id="roles">operator, viewer</span>"#));
    assert!(page.contains(r#"<a id="logout" href="/.gatehouse/logout">Log out</a>"#));
    assert!(page.contains("no jobs your roles may see"));
}

#[test]
fn the_jobs_table_shows_the_schedule_in_words_three_next_runs_and_the_last_outcome() {
    let page = pages::jobs(
        &caller(&["viewer"]),
        &[job_view(false, Some(run(RunStatus::Failed)))],
    )
    .into_string();
    assert!(page.contains("at 03:00 every day (Europe/Berlin)"));
    assert!(page.contains("<code>0 3 * * *</code>"));
    assert_eq!(page.matches("<time datetime=").count(), 3, "{page}");
    assert!(page.contains(
        r#"<time datetime="2026-12-03T03:00:00+01:00">2026-12-03 03:00:00 +01:00</time>"#
    ));
    assert!(page.contains(r#"<td class="last-outcome" data-status="failed"><a href="/runs/7">"#));
}

#[test]
fn values_from_users_and_containers_are_escaped() {
    let logs = "</pre><script>alert(1)</script>";
    let page = pages::run(
        &caller(&["operator"]),
        &run(RunStatus::Succeeded),
        logs,
        false,
    )
    .into_string();
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains("&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("manual, by &lt;b&gt;mallory&lt;/b&gt;"));
    assert_csp_clean(&page);
}

#[test]
fn a_run_page_offers_cancel_only_when_allowed_and_says_whether_it_is_finished() {
    let running =
        pages::run(&caller(&["operator"]), &run(RunStatus::Running), "", true).into_string();
    assert!(running.contains(r#"<form id="cancel" method="post" action="/runs/7/cancel">"#));
    assert!(running.contains(r#"<dd id="run-status" data-status="running">running</dd>"#));
    assert!(running.contains(r#"data-run="7" data-terminal="false""#));

    let finished = pages::run(
        &caller(&["operator"]),
        &run(RunStatus::Succeeded),
        "",
        false,
    )
    .into_string();
    assert!(!finished.contains("cancel"), "{finished}");
    assert!(finished.contains(r#"data-terminal="true""#));
    assert!(finished.contains(r#"<dd id="run-duration">2.5 s</dd>"#));
    assert!(finished.contains(r#"<dd id="run-exit">0</dd>"#));
}

#[test]
fn error_pages_carry_the_status_and_message_only() {
    let page = pages::error(
        StatusCode::FORBIDDEN,
        "your roles may view this job but not run it",
    )
    .into_string();
    assert!(page.contains("<h1>403 Forbidden</h1>"));
    assert!(page.contains(r#"<p id="error">your roles may view this job but not run it</p>"#));
    assert!(
        !page.contains("logout"),
        "no identity on error pages: {page}"
    );
    assert_csp_clean(&page);
}

#[test]
fn durations_read_like_the_script_prints_them() {
    assert_eq!(format_duration(0), "0.0 s");
    assert_eq!(format_duration(2_450), "2.5 s");
    assert_eq!(format_duration(59_999), "60.0 s");
    assert_eq!(format_duration(60_000), "1 m 00 s");
    assert_eq!(format_duration(3_599_000), "59 m 59 s");
    assert_eq!(format_duration(7_380_000), "2 h 03 m");
    assert_eq!(format_duration(-5), "0.0 s");
}

#[test]
fn a_run_lost_before_it_started_reads_differently_from_one_that_ran() {
    let never = pages::run(&caller(&["viewer"]), &lost(false), "", false).into_string();
    assert!(
        never.contains(r#"<dd id="run-started">never</dd>"#),
        "{never}"
    );
    assert!(never.contains(r#"<dd id="run-reason-code"><code>never_started</code></dd>"#));
    let ran = pages::run(&caller(&["viewer"]), &lost(true), "", false).into_string();
    assert!(
        ran.contains(r#"<dd id="run-started">2025-12-02 00:00:01 UTC</dd>"#),
        "{ran}"
    );
    assert!(ran.contains(r#"<dd id="run-reason-code"><code>container_vanished</code></dd>"#));

    // In the tables the code stands beside the status.
    let view = JobView {
        last_run: Some(lost(false)),
        ..job_view(false, None)
    };
    let jobs = pages::jobs(&caller(&["viewer"]), &[view]).into_string();
    assert!(
        jobs.contains(r#"<span class="status" data-status="lost">lost</span> <span class="cause" data-code="never_started">never started</span>"#),
        "{jobs}"
    );
    let history = pages::job(
        &caller(&["viewer"]),
        &job_view(false, None),
        &[lost(true), run(RunStatus::Succeeded)],
    )
    .into_string();
    assert!(history.contains(
        r#"<span class="cause" data-code="container_vanished">container vanished</span>"#
    ));
    assert_eq!(history.matches("class=\"cause\"").count(), 1, "{history}");
}

#[test]
fn a_skipped_run_shows_why_and_no_start() {
    let missed = Run {
        started_at: None,
        exit_code: None,
        reason_code: Some(ReasonCode::Missed),
        reason: Some("missed: the scheduler was not running".into()),
        ..run(RunStatus::Skipped)
    };
    let page = pages::run(&caller(&["viewer"]), &missed, "", false).into_string();
    assert!(page.contains(r#"<dd id="run-started"></dd>"#), "{page}");
    assert!(page.contains("<code>missed</code>"));
}
