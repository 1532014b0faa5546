//! The dashboard's pages, as maud templates: every value is escaped, and
//! nothing here carries inline script or style (the CSP forbids both).
//! Element ids and `data-*` attributes are what `dashboard.js` updates and
//! what the browser tests look for; keep them stable.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use crate::auth::Caller;
use crate::http::access::JobView;
use crate::store::{ReasonCode, Run, RunStatus, Trigger};

/// Upcoming fire times shown in the jobs table (the job page shows all).
const NEXT_RUNS_IN_TABLE: usize = 3;

fn layout(title: &str, caller: Option<&Caller>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Gatehouse" }
                link rel="icon" href="/static/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/static/dashboard.css";
                script src="/static/dashboard.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "Gatehouse" }
                    @if let Some(caller) = caller {
                        span.identity {
                            "Signed in as " span #whoami { (display_name(caller)) }
                            " · roles: " span #roles { (roles(caller)) }
                        }
                        // A link, not a POST form: logout ends at the identity
                        // provider, another origin, and `form-action 'self'`
                        // would stop a form's redirect there.
                        a #logout href="/.gatehouse/logout" { "Log out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn display_name(caller: &Caller) -> &str {
    caller.email.as_deref().unwrap_or(&caller.subject)
}

fn roles(caller: &Caller) -> String {
    if caller.roles.is_empty() {
        return "none".into();
    }
    caller
        .roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn jobs(caller: &Caller, jobs: &[JobView]) -> Markup {
    layout(
        "Jobs",
        Some(caller),
        html! {
            h1 { "Jobs" }
            @if jobs.is_empty() {
                p.empty { "There are no jobs your roles may see." }
            } @else {
                table #jobs {
                    thead { tr { th { "Job" } th { "Schedule" } th { "Next runs" } th { "Last run" } th { } } }
                    tbody {
                        @for job in jobs {
                            tr data-job=(job.name) {
                                td { a href={ "/jobs/" (job.name) } { (job.name) } }
                                td.schedule { (schedule(job)) }
                                td.next-runs { (next_runs(&job.next_runs[..job.next_runs.len().min(NEXT_RUNS_IN_TABLE)])) }
                                (last_outcome(job.last_run.as_ref()))
                                td { @if job.may_run { (run_now_form(&job.name)) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn schedule(job: &JobView) -> Markup {
    html! {
        @match (&job.description, &job.schedule) {
            (Some(words), Some(expr)) => {
                (words)
                @if let Some(zone) = &job.timezone { " (" (zone) ")" }
                br; code { (expr) }
            }
            _ => { "on demand only" }
        }
    }
}

fn next_runs(times: &[String]) -> Markup {
    html! {
        @if times.is_empty() {
            "—"
        } @else {
            ul { @for t in times { li { time datetime=(t) { (local_time(t)) } } } }
        }
    }
}

fn last_outcome(run: Option<&Run>) -> Markup {
    html! {
        @match run {
            Some(run) => {
                td.last-outcome data-status=(run.status.as_str()) {
                    a href={ "/runs/" (run.id) } { (status_badge(run)) }
                    " " (when(run.queued_at))
                }
            }
            None => { td.last-outcome data-status="none" { "never run" } }
        }
    }
}

fn status_badge(run: &Run) -> Markup {
    html! {
        span.status data-status=(run.status.as_str()) { (run.status.as_str().replace('_', " ")) }
        @if let Some(code) = shown_code(run) {
            " " span.cause data-code=(code.as_str()) { (code.as_str().replace('_', " ")) }
        }
    }
}

/// The reason code beside a status where it tells more than the status
/// (a lost run that never started from one whose container vanished, a
/// skip for overlap from a missed time); dashboard.js does the same.
fn shown_code(run: &Run) -> Option<ReasonCode> {
    run.reason_code
        .filter(|c| !matches!(c, ReasonCode::Cancelled | ReasonCode::Timeout))
}

/// When the run started; for a finished run that never did, "never".
fn started(run: &Run) -> String {
    match run.started_at {
        Some(at) => when(at),
        None if run.status.is_terminal() && run.status != RunStatus::Skipped => "never".to_owned(),
        None => String::new(),
    }
}

fn run_now_form(job: &str) -> Markup {
    html! {
        form.run-now method="post" action={ "/jobs/" (job) "/run" } {
            button type="submit" { "Run now" }
        }
    }
}

pub fn job(caller: &Caller, job: &JobView, runs: &[Run]) -> Markup {
    layout(
        &job.name,
        Some(caller),
        html! {
            h1 { "Job " (job.name) }
            dl.facts {
                dt { "Schedule" } dd { (schedule(job)) }
                dt { "Image" } dd {
                    code { (job.image) }
                    @if !job.image_pinned { " " span.warning { "not pinned by digest" } }
                }
                dt { "Timeout" } dd { (job.timeout_seconds) " s" }
                dt { "Overlap" } dd { (job.overlap) }
                dt { "Next runs" } dd { (next_runs(&job.next_runs)) }
            }
            @if job.may_run { (run_now_form(&job.name)) }
            h2 { "Runs" }
            @if runs.is_empty() {
                p.empty { "No runs yet." }
            } @else {
                table #runs {
                    thead { tr { th { "Run" } th { "Status" } th { "Trigger" } th { "Queued" } th { "Duration" } th { "Exit code" } } }
                    tbody {
                        @for run in runs {
                            tr data-run=(run.id) data-status=(run.status.as_str()) {
                                td { a href={ "/runs/" (run.id) } { "#" (run.id) } }
                                td { (status_badge(run)) }
                                td { (trigger(&run.trigger)) }
                                td { (when(run.queued_at)) }
                                td { (duration(run).unwrap_or_default()) }
                                td { (run.exit_code.map(|c| c.to_string()).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn run(caller: &Caller, run: &Run, logs: &str, may_cancel: bool) -> Markup {
    layout(
        &format!("Run {}", run.id),
        Some(caller),
        html! {
            h1 { "Run #" (run.id) " of " a href={ "/jobs/" (run.job) } { (run.job) } }
            // dashboard.js follows an unfinished run from these attributes.
            section #run data-run=(run.id) data-terminal=(run.status.is_terminal()) {
                dl.facts {
                    dt { "Status" }
                    dd #run-status data-status=(run.status.as_str()) { (run.status.as_str()) }
                    dt { "Trigger" } dd #run-trigger { (trigger(&run.trigger)) }
                    dt { "Queued" } dd { (when(run.queued_at)) }
                    dt { "Started" } dd #run-started { (started(run)) }
                    dt { "Finished" } dd #run-finished { (run.finished_at.map(when).unwrap_or_default()) }
                    dt { "Duration" } dd #run-duration { (duration(run).unwrap_or_default()) }
                    dt { "Exit code" } dd #run-exit { (run.exit_code.map(|c| c.to_string()).unwrap_or_default()) }
                    @if run.oom_killed { dt { "Memory" } dd { "killed: out of memory" } }
                    dt { "Reason" } dd #run-reason { (run.reason.as_deref().unwrap_or_default()) }
                    dt { "Reason code" } dd #run-reason-code { code { (run.reason_code.map(ReasonCode::as_str).unwrap_or_default()) } }
                }
                @if may_cancel {
                    form #cancel method="post" action={ "/runs/" (run.id) "/cancel" } {
                        button type="submit" { "Cancel" }
                    }
                }
                h2 { "Logs" }
                @if run.logs_truncated {
                    p.warning #run-logs-truncated { "Only the last bytes were kept." }
                }
                pre #run-logs { (logs) }
            }
        },
    )
}

pub fn error(status: StatusCode, message: &str) -> Markup {
    let reason = status.canonical_reason().unwrap_or("Error");
    layout(
        reason,
        None,
        html! {
            h1 { (status.as_u16()) " " (reason) }
            p #error { (message) }
            p { a href="/" { "Back to the jobs" } }
        },
    )
}

fn trigger(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Schedule { planned } => format!("schedule, planned {}", when(*planned)),
        Trigger::CatchUp { planned } => format!("catch-up of {}", when(*planned)),
        Trigger::Manual { by } => format!("manual, by {by}"),
        Trigger::Retry { of, .. } => format!("retry of run #{of}"),
    }
}

/// An RFC 3339 fire time as the job's wall-clock time with its offset.
fn local_time(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S %:z").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// Unix milliseconds as a UTC time to the second.
fn when(unix_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(unix_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// How long the run took, or has taken so far.
fn duration(run: &Run) -> Option<String> {
    let started = run.started_at?;
    let end = run
        .finished_at
        .unwrap_or_else(|| Utc::now().timestamp_millis());
    Some(format_duration(end.saturating_sub(started)))
}

/// `1.2 s`, `3 m 05 s`, `2 h 03 m`: the same format dashboard.js uses.
pub(crate) fn format_duration(ms: i64) -> String {
    let ms = ms.max(0);
    let seconds = ms / 1000;
    match seconds {
        0..=59 => format!("{:.1} s", ms as f64 / 1000.0),
        60..=3599 => format!("{} m {:02} s", seconds / 60, seconds % 60),
        _ => format!("{} h {:02} m", seconds / 3600, (seconds % 3600) / 60),
    }
}
