//! The admin listener: `/metrics`, `/healthz` and `/readyz`. It never
//! serves the API, and the API listener never serves these.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::auth::Verifier;
use crate::engine::RunEngine;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Admin {
    pub engine: Arc<RunEngine>,
    pub verifier: Arc<Verifier>,
    pub metrics: Arc<Metrics>,
}

pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(admin)
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    let audit = &admin.engine.audit;
    admin
        .metrics
        .audit_healthy
        .set(i64::from(audit.is_healthy()));
    let stats = audit.stats();
    // Counters only move forward: add what the writer did since.
    for (counter, now) in [
        (&admin.metrics.audit_records, stats.written),
        (&admin.metrics.audit_files_deleted, stats.files_deleted),
    ] {
        counter.inc_by(now.saturating_sub(counter.get()));
    }
    admin
        .metrics
        .assertions_remembered
        .set(i64::try_from(admin.verifier.live_assertions()).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        admin.metrics.render(),
    )
}

/// Ready when every check passes: callers can be verified (the gateway's
/// keys are loaded and fresh) and Docker answers. A 503 names each failing
/// check on a line of its own, `check: reason`.
async fn ready(State(admin): State<Admin>) -> impl IntoResponse {
    let mut failing = Vec::new();
    if let Err(reason) = gateway_keys_check(&admin) {
        failing.push(format!("gateway_keys: {reason}"));
    }
    if let Err(reason) = docker_check(&admin.engine).await {
        failing.push(format!("docker: {reason}"));
    }
    if failing.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}\n", failing.join("\n")),
        )
    }
}

/// Missing keys, or keys gone stale after failed refreshes.
fn gateway_keys_check(admin: &Admin) -> Result<(), String> {
    admin.verifier.key_readiness()
}

/// The Docker part of readiness: connected, reconciled and scheduling
/// (the scheduler starts without Docker and says so here), and answering
/// a ping now.
async fn docker_check(engine: &RunEngine) -> Result<(), String> {
    engine.docker_status().ready()?;
    match tokio::time::timeout(Duration::from_secs(2), engine.executor.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("not answering: {e}")),
        Err(_) => Err("not answering a ping within 2 s".to_owned()),
    }
}
