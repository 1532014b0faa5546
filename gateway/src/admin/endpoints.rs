//! The admin listener: `/metrics`, `/healthz`, `/readyz` and `/jwks.json`,
//! on an address of its own that the public listener never serves.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::admin::audit::Audit;
use crate::admin::metrics::Metrics;
use crate::identity::assertion::AssertionSigner;
use crate::snapshot::Snapshot;

/// `/metrics`, `/healthz`, `/readyz` and `/jwks.json` on the admin listener.
pub struct Admin {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub assertion: Arc<AssertionSigner>,
    pub audit: Audit,
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let snapshot = self.snapshot.load();
        let (status, content_type, body) = match session.req_header().uri.path() {
            "/metrics" => {
                self.metrics.set_cert_expiries(&snapshot.certs.not_after);
                self.metrics.refresh(&snapshot, &self.audit);
                (
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.metrics.render(),
                )
            }
            "/healthz" => (
                StatusCode::OK,
                "text/plain; charset=utf-8",
                b"ok\n".to_vec(),
            ),
            "/jwks.json" => (
                StatusCode::OK,
                "application/jwk-set+json",
                self.assertion.jwks().as_bytes().to_vec(),
            ),
            "/readyz" if self.audit.must_refuse() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                b"not ready: the audit log cannot be written\n".to_vec(),
            ),
            "/readyz" => (
                StatusCode::OK,
                "text/plain; charset=utf-8",
                format!("ready policy={}\n", snapshot.policy.origin.sha256).into_bytes(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                b"404 Not Found\n".to_vec(),
            ),
        };
        let response = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len())
            .header(http::header::CACHE_CONTROL, "no-store");
        snapshot.default_headers.finish(response, body)
    }
}
