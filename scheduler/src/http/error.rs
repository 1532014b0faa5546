//! The error a client sees: a closed set of codes, each with one status,
//! and a message, never internals.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// What went wrong, as `error.code` in the JSON body names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    /// No valid gateway assertion.
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// Cancelling a run that is not queued or running.
    NotActive,
    Internal,
    /// Docker is not connected; nothing was queued.
    DockerUnavailable,
    /// The replay check is full; the assertion may be fine.
    Busy,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::NotActive => "not_active",
            ErrorCode::Internal => "internal",
            ErrorCode::DockerUnavailable => "docker_unavailable",
            ErrorCode::Busy => "busy",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::NotActive => StatusCode::CONFLICT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::DockerUnavailable | ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An error as the client sees it: a status and a message, never internals.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    /// Seconds for `Retry-After`, when trying again later may work.
    retry_after: Option<u32>,
}

impl ApiError {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 503: Docker is not connected, so nothing was queued.
    pub(super) fn docker_unavailable(reason: &str) -> Self {
        ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                ErrorCode::DockerUnavailable,
                format!(
                    "the run was not queued: Docker is not available ({reason}); try again once the scheduler is ready"
                ),
            )
        }
    }

    pub(super) fn not_found(what: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("no such {what}"))
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub(super) fn forbidden(message: &'static str) -> Self {
        ApiError::new(ErrorCode::Forbidden, message)
    }

    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "API request failed");
        ApiError::new(
            ErrorCode::Internal,
            "the scheduler could not complete the request",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code.as_str(), "message": self.message}}));
        let mut response = (self.code.status(), no_store(), body).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub(super) fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}
