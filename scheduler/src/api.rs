//! The HTTP API, reached only through the gateway. Every request passes
//! `authenticate` (the gateway's signed assertion) before any handler; each
//! handler then authorizes per job from `view_roles` and `run_roles`.
//! A job the caller may not view answers 404, as if it did not exist.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::Utc;
use gatehouse_policy::scheduler::Job;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{AuthError, Caller, Verifier, ASSERTION_HEADER};
use crate::engine::{CancelError, RunEngine, TriggerError, Triggered};
use crate::metrics::Metrics;
use crate::store::{Run, RunFilter, RunStatus};

const MAX_LIMIT: usize = 500;
const DEFAULT_LIMIT: usize = 50;
const NEXT_RUNS_SHOWN: usize = 5;

#[derive(Clone)]
pub struct Api {
    pub engine: Arc<RunEngine>,
    pub verifier: Arc<Verifier>,
    pub metrics: Arc<Metrics>,
}

/// An error as the client sees it: a status and a message, never internals.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for `Retry-After`, when trying again later may work.
    retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 503: Docker is not connected, so nothing was queued.
    fn docker_unavailable(reason: &str) -> Self {
        ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "docker_unavailable",
                format!(
                    "the run was not queued: Docker is not available ({reason}); try again once the scheduler is ready"
                ),
            )
        }
    }

    fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    fn forbidden(message: &'static str) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "API request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the scheduler could not complete the request",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (self.status, no_store(), body).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

/// The JSON API and the dashboard, behind one authentication stage.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{name}", get(show_job))
        .route("/api/jobs/{name}/run", post(run_job))
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(show_run))
        .route("/api/runs/{id}/logs", get(run_logs))
        .route("/api/runs/{id}/cancel", post(cancel_run))
        .merge(crate::dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            )
        })
        .layer(middleware::from_fn_with_state(api.clone(), authenticate))
        .with_state(api)
}

/// Unknown paths: JSON under /api, a page elsewhere.
async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::not_found("endpoint").into_response()
    } else {
        crate::dashboard::error_page(&ApiError::not_found("page"))
    }
}

/// Stage one of every request: no valid assertion, no answer but 401.
async fn authenticate(State(api): State<Api>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(ASSERTION_HEADER)
        .and_then(|v| v.to_str().ok());
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    match api.verifier.verify_or_refetch(token, &method, &path).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => {
            api.metrics
                .api_denials
                .with_label_values(&[e.metric_reason()])
                .inc();
            if e == AuthError::Replayed {
                // Only a captured assertion is ever presented twice.
                tracing::warn!(reason = %e, %method, %path, "API request with a replayed gateway assertion");
            } else {
                tracing::info!(reason = %e, %method, %path, "API request without a valid gateway assertion");
            }
            refuse(e)
        }
    }
}

/// 401 for every assertion that does not prove this request, and 503 when
/// the replay check is full (the assertion may be fine; retry shortly).
fn refuse(error: AuthError) -> Response {
    if error == AuthError::ReplayCacheFull {
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the scheduler is busy; try again shortly",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    }
    let message = match error {
        AuthError::KeysUnavailable => "the scheduler cannot verify callers yet",
        _ => "a valid gateway assertion is required",
    };
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Gatehouse-Assertion"),
    );
    response
}

#[derive(Serialize)]
pub struct JobView {
    pub name: String,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub description: Option<String>,
    pub next_runs: Vec<String>,
    pub image: String,
    pub image_pinned: bool,
    pub timeout_seconds: u64,
    pub overlap: &'static str,
    pub may_run: bool,
    pub last_run: Option<Run>,
}

pub(crate) fn job_view(engine: &RunEngine, job: &Job, caller: &Caller) -> JobView {
    let now = Utc::now();
    let last_run = engine
        .store()
        .list(&RunFilter {
            job: Some(job.name.clone()),
            status: None,
            limit: 1,
        })
        .ok()
        .and_then(|mut runs| runs.pop());
    JobView {
        name: job.name.clone(),
        schedule: job.schedule.as_ref().map(|s| s.expression().to_owned()),
        timezone: job.schedule.as_ref().map(|s| s.timezone_name().to_owned()),
        description: job.schedule.as_ref().map(|s| s.describe()),
        next_runs: job
            .schedule
            .as_ref()
            .map(|s| {
                s.upcoming(now, NEXT_RUNS_SHOWN)
                    .iter()
                    .map(|t| t.to_rfc3339())
                    .collect()
            })
            .unwrap_or_default(),
        image: job.image.clone(),
        image_pinned: job.image_pinned,
        timeout_seconds: job.timeout.as_secs(),
        overlap: match job.overlap {
            gatehouse_policy::scheduler::Overlap::Forbid => "forbid",
            gatehouse_policy::scheduler::Overlap::Allow => "allow",
            gatehouse_policy::scheduler::Overlap::Replace => "replace",
        },
        may_run: job.may_run(&caller.roles),
        last_run,
    }
}

/// The job, if it exists and the caller may see it.
pub(crate) fn visible_job(api: &Api, name: &str, caller: &Caller) -> Result<Arc<Job>, ApiError> {
    match api.engine.job(name) {
        Some(job) if job.may_view(&caller.roles) => Ok(job),
        Some(_) => {
            api.metrics
                .api_denials
                .with_label_values(&["forbidden"])
                .inc();
            Err(ApiError::not_found("job"))
        }
        None => Err(ApiError::not_found("job")),
    }
}

async fn list_jobs(State(api): State<Api>, Extension(caller): Extension<Caller>) -> Response {
    let jobs: Vec<JobView> = api
        .engine
        .jobs()
        .values()
        .filter(|j| j.may_view(&caller.roles))
        .map(|j| job_view(&api.engine, j, &caller))
        .collect();
    (no_store(), Json(json!({"jobs": jobs}))).into_response()
}

async fn show_job(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let job = visible_job(&api, &name, &caller)?;
    let view = job_view(&api.engine, &job, &caller);
    let recent = api
        .engine
        .store()
        .list(&RunFilter {
            job: Some(name),
            status: None,
            limit: 20,
        })
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
    Ok(match trigger(&api, &name, &caller)? {
        Triggered::Queued(id) => (
            StatusCode::ACCEPTED,
            no_store(),
            Json(json!({"run": id, "status": "queued"})),
        )
            .into_response(),
        Triggered::Skipped(id, reason) => (
            StatusCode::CONFLICT,
            no_store(),
            Json(json!({"run": id, "status": "skipped", "error": {"code": "skipped", "message": reason}})),
        )
            .into_response(),
    })
}

/// A manual run of `name`, if `caller` may see and run it. Shared by the
/// API and the dashboard so both authorize and audit the same way.
pub(crate) fn trigger(api: &Api, name: &str, caller: &Caller) -> Result<Triggered, ApiError> {
    let job = visible_job(api, name, caller)?;
    if !job.may_run(&caller.roles) {
        api.metrics
            .api_denials
            .with_label_values(&["forbidden"])
            .inc();
        api.engine
            .audit
            .record(crate::audit::trigger_denied(name, caller));
        return Err(ApiError::forbidden(
            "your roles may view this job but not run it",
        ));
    }
    match api.engine.trigger_by(name, caller) {
        Ok(triggered) => Ok(triggered),
        Err(TriggerError::UnknownJob) => Err(ApiError::not_found("job")),
        Err(TriggerError::DockerUnavailable(reason)) => Err(ApiError::docker_unavailable(&reason)),
        Err(e) => Err(ApiError::internal(e)),
    }
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
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "unknown status")
        })?),
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
        .map_err(ApiError::internal)?
        .into_iter()
        .filter(may_see)
        .take(limit)
        .collect();
    Ok((no_store(), Json(json!({"runs": runs}))).into_response())
}

/// Run ids are positive integers; anything else names no run.
pub(crate) fn run_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found("run"))
}

pub(crate) fn visible_run(
    api: &Api,
    id: i64,
    caller: &Caller,
) -> Result<(Run, Arc<Job>), ApiError> {
    let run = api
        .engine
        .store()
        .get(id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("run"))?;
    let job = visible_job(api, &run.job, caller).map_err(|_| ApiError::not_found("run"))?;
    Ok((run, job))
}

async fn show_run(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = run_id(&id)?;
    let (run, _) = visible_run(&api, id, &caller)?;
    Ok((no_store(), Json(json!({"run": run}))).into_response())
}

async fn run_logs(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = run_id(&id)?;
    visible_run(&api, id, &caller)?;
    let (bytes, truncated) = api
        .engine
        .store()
        .logs(id)
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
    cancel(&api, id, &caller)?;
    Ok((
        StatusCode::ACCEPTED,
        no_store(),
        Json(json!({"run": id, "status": "cancelling"})),
    )
        .into_response())
}

/// Cancels run `id`, if `caller` may see and run its job. Shared by the API
/// and the dashboard.
pub(crate) fn cancel(api: &Api, id: i64, caller: &Caller) -> Result<(), ApiError> {
    let (run, job) = visible_run(api, id, caller)?;
    if !job.may_run(&caller.roles) {
        api.metrics
            .api_denials
            .with_label_values(&["forbidden"])
            .inc();
        api.engine.audit.record(crate::audit::cancel(
            &run,
            caller,
            gatehouse_policy::audit::Outcome::Denied,
        ));
        return Err(ApiError::forbidden(
            "your roles may view this job but not cancel its runs",
        ));
    }
    match api.engine.cancel(&run, caller) {
        Ok(()) => Ok(()),
        Err(CancelError::NotActive) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_active",
            format!("run {id} is {}", run.status.as_str()),
        )),
    }
}
