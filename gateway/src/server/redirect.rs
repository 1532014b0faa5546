//! The plain-HTTP listener: every request is redirected to HTTPS.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

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
        snapshot.default_headers.finish(response, Vec::new())
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
