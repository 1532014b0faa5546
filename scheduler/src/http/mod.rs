//! The scheduler's HTTP side, reached only through the gateway: the JSON
//! API (`api`) and the dashboard (`dashboard`) share one router behind one
//! authentication stage (`authenticate`, the gateway's signed assertion),
//! and what they share about jobs and runs (`access`). The admin listener
//! (`admin`: metrics and health) is apart, with no authentication.

pub mod access;
pub mod admin;
pub mod api;
pub mod dashboard;
pub mod error;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::auth::{Accepted, AuthError, ASSERTION_HEADER};
use access::Api;
use error::{ApiError, ErrorCode};

/// The JSON API and the dashboard, behind one authentication stage.
pub fn router(api: Api) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed")
        })
        .layer(middleware::from_fn_with_state(api.clone(), authenticate))
        .with_state(api)
}

/// Unknown paths: JSON under /api, a page elsewhere.
async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::not_found("endpoint").into_response()
    } else {
        dashboard::error_page(&ApiError::not_found("page"))
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
    let verified = match api.verifier.verify_or_refetch(token, &method, &path).await {
        Ok((caller, accepted)) => first_use_everywhere(&api, &accepted).await.map(|()| caller),
        Err(e) => Err(e),
    };
    match verified {
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

/// With schedulers sharing a database, an assertion accepted by one must
/// not be accepted by another: checked there after this process's own
/// check. Fails closed (503) when the database cannot say.
async fn first_use_everywhere(api: &Api, accepted: &Accepted) -> Result<(), AuthError> {
    let store = api.engine.store();
    match store.first_use(&accepted.jti, accepted.forget_after).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(AuthError::Replayed),
        Err(e) => {
            tracing::error!(error = %e, "cannot check the assertion against other schedulers");
            Err(AuthError::ReplayCacheFull)
        }
    }
}

/// 401 for every assertion that does not prove this request, and 503 when
/// the replay check is full (the assertion may be fine; retry shortly).
fn refuse(error: AuthError) -> Response {
    if error == AuthError::ReplayCacheFull {
        let mut response =
            ApiError::new(ErrorCode::Busy, "the scheduler is busy; try again shortly")
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
    let mut response = ApiError::new(ErrorCode::Unauthenticated, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Gatehouse-Assertion"),
    );
    response
}
