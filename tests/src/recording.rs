//! An upstream that records exactly the bytes that reached it, for tests
//! that must say what an attack did to the server behind the gateway.
//!
//! Unlike [`crate::EchoUpstream`] (hyper, which normalises header names and
//! would refuse or repair odd requests), this keeps each request as it
//! arrived: request line and header block verbatim (original spelling and
//! order), the body as sent (chunk framing included), and the raw bytes.
//! Requests are framed with `httparse`; each complete one is recorded before
//! it is answered with a small fixed 200 on a kept-alive connection, so the
//! gateway's upstream connection reuse works as in production. A head whose
//! body never completes, or bytes that do not parse, are recorded too
//! (`complete == false`): "nothing reached the upstream" means no bytes did.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::http1::{framing_of, BodyFraming, MessageReader, MAX_HEADERS};

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub target: String,
    /// The minor version of `HTTP/1.x`.
    pub version: u8,
    /// Header names as spelled on the wire, in order, with raw values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body bytes as sent (chunked bodies keep their framing).
    pub body: Vec<u8>,
    /// Everything this request consisted of on the wire.
    pub raw: Vec<u8>,
    /// False when the head or body was cut short or did not parse.
    pub complete: bool,
    pub peer: SocketAddr,
}

impl RecordedRequest {
    /// Values of every header whose name equals `name` ignoring ASCII case.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The only value of `name`, or `None` when absent or repeated.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut values = self.header_values(name);
        (values.len() == 1).then(|| values.remove(0))
    }

    pub fn has_header(&self, name: &str) -> bool {
        !self.header_values(name).is_empty()
    }

    /// The head as text, for failure messages.
    pub fn head_text(&self) -> String {
        let end = self
            .raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(self.raw.len());
        String::from_utf8_lossy(&self.raw[..end]).into_owned()
    }
}

type Log = Arc<Mutex<Vec<RecordedRequest>>>;

pub struct RecordingUpstream {
    pub addr: SocketAddr,
    log: Log,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingUpstream {
    /// Starts on a free loopback port in the current tokio runtime.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log: Log = Arc::default();
        let shared = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                tokio::spawn(serve(stream, peer, shared.clone()));
            }
        });
        Ok(RecordingUpstream { addr, log, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything recorded so far, emptying the record.
    pub fn take(&self) -> Vec<RecordedRequest> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits `settle` (for anything a gateway might still send, such as a
    /// smuggled second request), then takes the record.
    pub async fn settle(&self, settle: Duration) -> Vec<RecordedRequest> {
        tokio::time::sleep(settle).await;
        self.take()
    }

    /// How many requests are recorded now.
    pub fn count(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one parse of a complete head yields.
struct Head {
    len: usize,
    method: String,
    target: String,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
    framing: Option<BodyFraming>,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(Head {
            len,
            method: req.method.unwrap_or_default().to_owned(),
            target: req.path.unwrap_or_default().to_owned(),
            version: req.version.unwrap_or(1),
            framing: framing_of(req.headers),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, log: Log) {
    let mut reader = MessageReader::new(stream);
    let record = |request: RecordedRequest| {
        log.lock().unwrap_or_else(|e| e.into_inner()).push(request);
    };
    let broken = |raw: &[u8]| RecordedRequest {
        method: String::new(),
        target: String::new(),
        version: 1,
        headers: Vec::new(),
        body: Vec::new(),
        raw: raw.to_vec(),
        complete: false,
        peer,
    };
    loop {
        let found = reader
            .read_head(|buf| parse_head(buf).map(|h| h.map(|h| h.len)))
            .await;
        let Ok(Some(_)) = found else {
            if !reader.buf.is_empty() {
                record(broken(&reader.buf));
            }
            return;
        };
        let Ok(Some(head)) = parse_head(&reader.buf) else {
            return;
        };
        let Some(framing) = head.framing else {
            record(broken(&reader.buf));
            return;
        };
        let end = match reader.read_body(head.len, framing).await {
            Ok(end) => end,
            Err(_) => {
                record(RecordedRequest {
                    complete: false,
                    ..request(&head, &reader.buf, reader.buf.len(), peer)
                });
                return;
            }
        };
        let close = head.headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("connection")
                && String::from_utf8_lossy(v)
                    .to_ascii_lowercase()
                    .contains("close")
        });
        let is_head = head.method == "HEAD";
        record(request(&head, &reader.buf, end, peer));
        reader.consume(end);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 9\r\n{}\r\n{}",
            if close { "connection: close\r\n" } else { "" },
            if is_head { "" } else { "recorded\n" }
        );
        if reader.stream.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

fn request(head: &Head, buf: &[u8], end: usize, peer: SocketAddr) -> RecordedRequest {
    RecordedRequest {
        method: head.method.clone(),
        target: head.target.clone(),
        version: head.version,
        headers: head.headers.clone(),
        body: buf[head.len..end].to_vec(),
        raw: buf[..end].to_vec(),
        complete: true,
        peer,
    }
}
