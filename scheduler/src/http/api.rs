//! The JSON API, reached only through the gateway. Every request has
//! passed `super::authenticate` (the gateway's signed assertion) before
//! any handler; each handler then authorizes per job from `view_roles` and
//! `run_roles` (`super::access`). A job the caller may not view answers
//! 404, as if it did not exist.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::access::{cancel, job_view, run_id, trigger, visible_job, visible_run, Api, JobView};
use super::error::{no_store, ApiError, ErrorCode};
use crate::auth::Caller;
use crate::store::{Run, RunFilter, RunStatus};

const MAX_LIMIT: usize = 500;
const DEFAULT_LIMIT: usize = 50;

/// The API's routes; `super::router` puts them behind authentication.
pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{name}", get(show_job))
        .route("/api/jobs/{name}/run", post(run_job))
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(show_run))
        .route("/api/runs/{id}/logs", get(run_logs))
        .route("/api/runs/{id}/cancel", post(cancel_run))
}

async fn list_jobs(State(api): State<Api>, Extension(caller): Extension<Caller>) -> Response {
    let mut jobs: Vec<JobView> = Vec::new();
    for job in api.engine.jobs().values() {
        if job.may_view(&caller.roles) {
            jobs.push(job_view(&api.engine, job, &caller).await);
        }
    }
    (no_store(), Json(json!({"jobs": jobs}))).into_response()
}

async fn show_job(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let job = visible_job(&api, &name, &caller)?;
    let view = job_view(&api.engine, &job, &caller).await;
    let recent = api
        .engine
        .store()
        .list(&RunFilter {
            job: Some(name),
            status: None,
            limit: 20,
        })
        .await
        .map_err(ApiError::internal)?;
    Ok((
        no_store(),
        Json(json!({"job": view, "recent_runs": recent})),
    )
        .into_response())
}

async fn run_job(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(match trigger(&api, &name, &caller).await? {
        (id, None) => (
            StatusCode::ACCEPTED,
            no_store(),
            Json(json!({"run": id, "status": "queued"})),
        )
            .into_response(),
        (id, Some(reason)) => (
            StatusCode::CONFLICT,
            no_store(),
            Json(json!({"run": id, "status": "skipped", "error": {"code": "skipped", "message": reason}})),
        )
            .into_response(),
    })
}

#[derive(Deserialize)]
struct RunsQuery {
    job: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

async fn list_runs(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<RunsQuery>,
) -> Result<Response, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            RunStatus::parse(s)
                .ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "unknown status"))?,
        ),
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    if let Some(job) = query.job.as_deref().filter(|j| !j.is_empty()) {
        visible_job(&api, job, &caller)?;
    }
    let jobs = api.engine.jobs();
    // Runs of jobs no longer in the policy are shown only to those who may
    // run every job; nobody else can be said to own them.
    let may_see = |run: &Run| match jobs.get(&run.job) {
        Some(job) => job.may_view(&caller.roles),
        None => false,
    };
    let runs: Vec<Run> = api
        .engine
        .store()
        .list(&RunFilter {
            job: query.job.filter(|j| !j.is_empty()),
            status,
            limit: MAX_LIMIT.max(limit),
        })
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .filter(may_see)
        .take(limit)
        .collect();
    Ok((no_store(), Json(json!({"runs": runs}))).into_response())
}

async fn show_run(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = run_id(&id)?;
    let (run, _) = visible_run(&api, id, &caller).await?;
    Ok((no_store(), Json(json!({"run": run}))).into_response())
}

async fn run_logs(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = run_id(&id)?;
    visible_run(&api, id, &caller).await?;
    let (bytes, truncated) = api
        .engine
        .store()
        .logs(id)
        .await
        .map_err(ApiError::internal)?
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-gatehouse-logs-truncated",
        HeaderValue::from_static(if truncated { "true" } else { "false" }),
    );
    Ok((headers, bytes).into_response())
}

async fn cancel_run(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = run_id(&id)?;
    cancel(&api, id, &caller).await?;
    Ok((
        StatusCode::ACCEPTED,
        no_store(),
        Json(json!({"run": id, "status": "cancelling"})),
    )
        .into_response())
}
