//! A unix-socket proxy between the scheduler and a dockerd that passes
//! everything through, except that, when armed, it holds the next
//! `POST /…/containers/{id}/start` without forwarding it. The scheduler then
//! sits between creating a container and starting it, for as long as the
//! test likes: a test can `kill -9` it exactly there, a real crash at a
//! point no timing could hit reliably.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

pub struct DockerProxy {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    armed: Arc<AtomicBool>,
    held: mpsc::UnboundedReceiver<String>,
}

impl DockerProxy {
    /// Listens on a socket of its own and forwards to `docker_host`
    /// (`unix:///…/docker.sock`).
    pub fn start(docker_host: &str) -> DockerProxy {
        let upstream = PathBuf::from(
            docker_host
                .strip_prefix("unix://")
                .expect("a unix:// DOCKER_HOST"),
        );
        let dir = tempfile::Builder::new()
            .prefix("ghdp-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).expect("bind the proxy socket");
        let armed = Arc::new(AtomicBool::new(false));
        let (tx, held) = mpsc::unbounded_channel();
        let flag = armed.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream.clone(), flag.clone(), tx.clone()));
            }
        });
        DockerProxy {
            _dir: dir,
            socket,
            armed,
            held,
        }
    }

    /// `unix://…` for the scheduler's `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The next container start request is held, never forwarded.
    pub fn hold_next_start(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Waits until a start request is being held; returns its request line.
    pub async fn wait_held(&mut self, timeout: Duration) -> String {
        tokio::time::timeout(timeout, self.held.recv())
            .await
            .expect("no container start request within the timeout")
            .expect("proxy stopped")
    }
}

async fn relay(
    client: UnixStream,
    upstream: PathBuf,
    armed: Arc<AtomicBool>,
    held: mpsc::UnboundedSender<String>,
) {
    let Ok(server) = UnixStream::connect(&upstream).await else {
        return; // The daemon is down: the client sees its connection close.
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let answers = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        let forward = if armed.load(Ordering::SeqCst) {
            match scan(&pending) {
                Scan::Forward(upto) => upto,
                Scan::Hold(at) => {
                    armed.store(false, Ordering::SeqCst);
                    if server_write.write_all(&pending[..at]).await.is_err() {
                        break;
                    }
                    let line = request_line(&pending[at..]);
                    let _ = held.send(line);
                    // Hold it: keep both connections open and forward
                    // nothing more, until the client goes away.
                    let mut sink = [0u8; 1024];
                    while matches!(client_read.read(&mut sink).await, Ok(n) if n > 0) {}
                    answers.abort();
                    return;
                }
            }
        } else {
            pending.len()
        };
        if server_write.write_all(&pending[..forward]).await.is_err() {
            break;
        }
        pending.drain(..forward);
    }
    let _ = server_write.shutdown().await;
    let _ = answers.await;
}

#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// Forward this many bytes; keep the rest (an incomplete line that may
    /// become a start request).
    Forward(usize),
    /// A start request begins here.
    Hold(usize),
}

/// Finds a container start request in `buf`. Requests follow one another
/// on a connection without a separator (a body ends where the next request
/// line begins), so any `POST /` may begin one.
fn scan(buf: &[u8]) -> Scan {
    let mut from = 0;
    while let Some(found) = find(&buf[from..], b"POST /") {
        let at = from + found;
        match find(&buf[at..], b"\r\n") {
            Some(end) if is_start_request(&buf[at..at + end]) => return Scan::Hold(at),
            Some(_) => from = at + 1,
            // Its request line is still arriving: keep it back.
            None => return Scan::Forward(at),
        }
    }
    // A tail that may become "POST /" is kept back too.
    let keep = (1..6)
        .rev()
        .find(|n| buf.len() >= *n && b"POST /".starts_with(&buf[buf.len() - n..]))
        .unwrap_or(0);
    Scan::Forward(buf.len() - keep)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn is_start_request(line: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let mut parts = line.split(' ');
    let (Some("POST"), Some(target)) = (parts.next(), parts.next()) else {
        return false;
    };
    let path = target.split('?').next().unwrap_or_default();
    path.contains("/containers/") && path.ends_with("/start")
}

fn request_line(buf: &[u8]) -> String {
    let end = buf
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[test]
fn only_container_start_requests_are_held() {
    let create =
        b"POST /v1.41/containers/create?name=x HTTP/1.1\r\nhost: docker\r\n\r\n{\"Image\":\"x\"}";
    assert_eq!(scan(create), Scan::Forward(create.len()));
    let start = b"POST /v1.41/containers/abc123/start HTTP/1.1\r\nhost: docker\r\n\r\n";
    assert_eq!(scan(start), Scan::Hold(0));
    let both = [&create[..], &start[..]].concat();
    assert_eq!(scan(&both), Scan::Hold(create.len()));
    // A start request line still arriving is kept back, not forwarded.
    assert_eq!(
        scan(b"GET /_ping HTTP/1.1\r\n\r\nPOST /v1.41/conta"),
        Scan::Forward(23)
    );
    assert_eq!(scan(b"PO"), Scan::Forward(0));
    assert_eq!(scan(b"{}\r\n\r\nPOST"), Scan::Forward(6));
    assert_eq!(scan(b"{\"a\":1}"), Scan::Forward(7));
    assert!(!is_start_request(
        b"POST /v1.41/containers/abc/stop HTTP/1.1"
    ));
    assert!(!is_start_request(
        b"GET /v1.41/containers/abc/start HTTP/1.1"
    ));
}
