//! The plain-HTTP redirect listener and the admin listener.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::assertion::AssertionSigner;
use crate::audit::Audit;
use crate::headers::PreparedHeaders;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// Answers every request with 308 to the public origin, keeping path and
/// query. The target is never built from the Host header, so there is no
/// open redirect and no host-header injection.
pub struct RedirectToHttps {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
}

#[async_trait]
impl ServeHttp for RedirectToHttps {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let snapshot = self.snapshot.load();
        let target = redirect_target(
            snapshot.policy.listen.public_origin.as_str(),
            session.req_header().raw_path(),
        );
        session.set_keepalive(None);
        let response = Response::builder()
            .status(StatusCode::PERMANENT_REDIRECT)
            .header(http::header::LOCATION, target)
            .header(http::header::CONTENT_LENGTH, 0)
            .header(http::header::CACHE_CONTROL, "no-store");
        finish(response, &snapshot.default_headers, Vec::new())
    }
}

/// `origin` + the request's path and query when they are a plain
/// origin-form target, else `origin/`.
fn redirect_target(origin: &str, raw_target: &[u8]) -> String {
    let plain =
        raw_target.first() == Some(&b'/') && raw_target.iter().all(|b| b.is_ascii_graphic());
    match std::str::from_utf8(raw_target) {
        Ok(target) if plain => format!("{origin}{target}"),
        _ => format!("{origin}/"),
    }
}

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
        finish(response, &snapshot.default_headers, body)
    }
}

fn finish(
    mut builder: http::response::Builder,
    headers: &PreparedHeaders,
    body: Vec<u8>,
) -> Response<Vec<u8>> {
    for (name, value) in headers.iter() {
        builder = builder.header(name, value);
    }
    builder.body(body).unwrap_or_else(|_| {
        let mut fallback = Response::new(Vec::new());
        *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_keeps_path_and_query_but_never_the_host() {
        let origin = "https://localhost:8443";
        assert_eq!(
            redirect_target(origin, b"/a/b?x=1"),
            "https://localhost:8443/a/b?x=1"
        );
        assert_eq!(
            redirect_target(origin, b"http://evil.test/x"),
            "https://localhost:8443/"
        );
        assert_eq!(
            redirect_target(origin, b"/a\r\nSet-Cookie: x"),
            "https://localhost:8443/"
        );
        assert_eq!(
            redirect_target(origin, b"//evil.test/"),
            "https://localhost:8443//evil.test/"
        );
    }
}
