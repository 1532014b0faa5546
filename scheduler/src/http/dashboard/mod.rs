//! The dashboard: server-rendered HTML for browsers, reached only through
//! the gateway (which logs the user in, sets the CSP and checks CSRF on
//! every POST). It shares the API's authentication stage and its
//! authorization functions (`access::visible_job`, `access::trigger`,
//! `access::cancel`), so a page can never show or do more than the API would.
//!
//! Pages work without JavaScript; `/static/dashboard.js` only refreshes a
//! run's status and logs, and the jobs' last outcomes, in place. There is no
//! inline script or style, so the gateway's CSP needs no `unsafe-inline`.

mod pages;
#[cfg(test)]
mod tests;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::auth::Caller;
use crate::http::access::{self, Api};
use crate::http::error::ApiError;
use crate::store::RunFilter;

/// Runs listed on a job's page.
const RUNS_SHOWN: usize = 50;

const SCRIPT: &str = include_str!("../../../static/dashboard.js");
const STYLE: &str = include_str!("../../../static/dashboard.css");
const ICON: &str = include_str!("../../../static/favicon.svg");

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/", get(jobs_page))
        .route("/jobs/{name}", get(job_page))
        .route("/jobs/{name}/run", post(run_now))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/cancel", post(cancel_now))
        .route("/static/dashboard.js", get(script))
        .route("/static/dashboard.css", get(style))
        .route("/static/favicon.svg", get(icon))
}

/// An error as a page: the API's status and message, nothing more.
pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        PageError(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        error_page(&self.0)
    }
}

pub fn error_page(error: &ApiError) -> Response {
    html(
        error.status(),
        pages::error(error.status(), error.message()),
    )
}

fn html(status: StatusCode, page: maud::Markup) -> Response {
    let mut response = (status, page).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn jobs_page(State(api): State<Api>, Extension(caller): Extension<Caller>) -> Response {
    let mut jobs: Vec<access::JobView> = Vec::new();
    for job in api.engine.jobs().values() {
        if job.may_view(&caller.roles) {
            jobs.push(access::job_view(&api.engine, job, &caller).await);
        }
    }
    html(StatusCode::OK, pages::jobs(&caller, &jobs))
}

async fn job_page(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let job = access::visible_job(&api, &name, &caller)?;
    let view = access::job_view(&api.engine, &job, &caller).await;
    let runs = api
        .engine
        .store()
        .list(&RunFilter {
            job: Some(name),
            status: None,
            limit: RUNS_SHOWN,
        })
        .await
        .map_err(ApiError::internal)?;
    Ok(html(StatusCode::OK, pages::job(&caller, &view, &runs)))
}

/// The *Run now* button: a POST form, answered with 303 to the new run's
/// page (also when overlap = forbid recorded it as skipped, which the page
/// then says).
async fn run_now(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Redirect, PageError> {
    let (id, _skipped) = access::trigger(&api, &name, &caller).await?;
    Ok(Redirect::to(&format!("/runs/{id}")))
}

async fn run_page(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = access::run_id(&id)?;
    let (run, job) = access::visible_run(&api, id, &caller).await?;
    let (logs, _) = api
        .engine
        .store()
        .logs(id)
        .await
        .map_err(ApiError::internal)?
        .unwrap_or_default();
    let may_cancel = job.may_run(&caller.roles) && !run.status.is_terminal();
    Ok(html(
        StatusCode::OK,
        pages::run(&caller, &run, &String::from_utf8_lossy(&logs), may_cancel),
    ))
}

async fn cancel_now(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Redirect, PageError> {
    let id = access::run_id(&id)?;
    access::cancel(&api, id, &caller).await?;
    Ok(Redirect::to(&format!("/runs/{id}")))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Short: a new release's assets replace the old within minutes.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=300"),
            ),
        ],
        body,
    )
        .into_response()
}
