//! A real HTTP/1.1 upstream that describes each request it receives as
//! JSON, so tests can see exactly what the gateway forwarded.
//!
//! Paths with meaning: `/status/NNN` answers that status; `/sleep/MS`
//! waits before answering; every answer carries `Server` and
//! `X-Powered-By` so tests can check the gateway strips them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub struct EchoUpstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoUpstream {
    /// Starts on a free loopback port in the current tokio runtime.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(echo))
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(EchoUpstream { addr, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut status = 200u16;
    if let Some(code) = target.strip_prefix("/status/") {
        status = code.parse().unwrap_or(200);
    }
    if let Some(ms) = target.strip_prefix("/sleep/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let body_len = match req.into_body().collect().await {
        Ok(body) => body.to_bytes().len(),
        Err(_) => 0,
    };
    let body = serde_json::json!({
        "method": method,
        "target": target,
        "headers": headers,
        "body_len": body_len,
    });
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("server", "echo-upstream/1.0")
        .header("x-powered-by", "hyper")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    Ok(response)
}

/// Serves one document (e.g. a JWKS) whose body and status tests can change
/// while it runs, and counts the requests it answered.
pub struct DocumentServer {
    pub addr: SocketAddr,
    state: std::sync::Arc<std::sync::Mutex<(u16, String, usize)>>,
    task: tokio::task::JoinHandle<()>,
}

impl DocumentServer {
    /// Serves `body` as JSON.
    pub async fn start(body: String) -> anyhow::Result<Self> {
        Self::start_as(body, "application/json").await
    }

    /// Serves `body` with `content_type` (e.g. a page for a browser test).
    pub async fn start_as(body: String, content_type: &'static str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = std::sync::Arc::new(std::sync::Mutex::new((200u16, body, 0usize)));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req: Request<Incoming>| {
                        let shared = shared.clone();
                        async move {
                            let (status, body) = {
                                let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
                                state.2 += 1;
                                (state.0, state.1.clone())
                            };
                            let response = Response::builder()
                                .status(status)
                                .header("content-type", content_type)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(DocumentServer { addr, state, task })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, status: u16, body: String) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 = status;
        state.1 = body;
    }

    pub fn hits(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).2
    }
}

impl Drop for DocumentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The JSON the echo upstream returns.
pub async fn echoed(response: reqwest::Response) -> serde_json::Value {
    response.json().await.expect("echo JSON")
}

/// The values of header `name` the upstream received, from an echo body.
pub fn upstream_header(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .map(|headers| {
            headers
                .iter()
                .filter(|pair| pair[0].as_str() == Some(name))
                .filter_map(|pair| pair[1].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
