//! The plain-HTTP redirect listener, the admin listener, and the cap on
//! client connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::apps::ServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

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
                self.metrics.refresh(&snapshot.rate_limits, &self.audit);
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

/// Closes new client connections beyond `max` at once, so a flood of idle
/// connections cannot exhaust file descriptors or memory. Counted around
/// the app's connection handling, which spans keep-alive waits.
pub struct ConnectionCap<A> {
    pub inner: Arc<A>,
    pub max: usize,
    /// Shared with the drain watcher, which waits for it to reach zero.
    pub open: Arc<AtomicUsize>,
    pub metrics: Arc<Metrics>,
}

struct OpenGuard<'a>(&'a AtomicUsize, &'a Metrics);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        self.1.connections.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionCap<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.metrics.connections_refused.inc();
            return None;
        }
        self.metrics.connections.inc();
        let _guard = OpenGuard(&self.open, &self.metrics);
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
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
