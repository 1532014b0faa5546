//! The attacker's HTTP/1.1 client: requests built as bytes (nothing checks
//! or repairs them), sent over real TLS from a chosen loopback address,
//! and one response read whole by its framing (`httparse`), so a vector
//! never waits for silence.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_tests::http1::{parse_response_head, BodyFraming, MessageReader};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How long a vector waits for the gateway's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// A request under construction: request line, headers in order, body.
pub struct Req {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// `METHOD target HTTP/1.1` with `Host: localhost`.
pub fn req(method: &str, target: &str) -> Req {
    Req {
        line: format!("{method} {target} HTTP/1.1"),
        headers: vec![("Host".to_owned(), "localhost".to_owned())],
        body: Vec::new(),
    }
}

impl Req {
    /// Appends a header exactly as given.
    pub fn h(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replaces the `Host` header (`None` sends none).
    pub fn host(mut self, host: Option<&str>) -> Self {
        self.headers.retain(|(n, _)| n != "Host");
        if let Some(host) = host {
            self.headers.insert(0, ("Host".to_owned(), host.to_owned()));
        }
        self
    }

    /// A body with its `Content-Length`.
    pub fn body(mut self, body: &[u8]) -> Self {
        self.headers
            .push(("Content-Length".to_owned(), body.len().to_string()));
        self.body = body.to_vec();
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.line.clone().into_bytes();
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

impl From<Req> for Vec<u8> {
    fn from(r: Req) -> Vec<u8> {
        r.bytes()
    }
}

/// One response as the client read it.
#[derive(Debug, Default)]
pub struct H1Response {
    /// 0 when the gateway closed without answering.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The gateway closed the connection after the response.
    pub closed: bool,
}

impl H1Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    pub fn summary(&self) -> String {
        if self.status == 0 {
            return "connection closed without a response".to_owned();
        }
        let location = self
            .header("location")
            .map(|l| format!(" location={l}"))
            .unwrap_or_default();
        format!(
            "{}{location}{}",
            self.status,
            if self.closed { " (closed)" } else { "" }
        )
    }
}

/// TCP from `from` (or any local address), then TLS with SNI `sni`.
pub async fn connect(
    addr: SocketAddr,
    from: Option<IpAddr>,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = tcp_from(addr, from)
        .await
        .map_err(|e| format!("tcp: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned())
        .map_err(|e| format!("server name {sni}: {e}"))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))
}

pub async fn tcp_from(addr: SocketAddr, from: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

/// Writes `request` and reads one response. A gateway that closes before
/// answering gives status 0. With `probe_close`, waits briefly to see
/// whether the gateway closes a connection it did not announce closing.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
    probe_close: bool,
) -> Result<H1Response, String> {
    // A refused request may be answered and closed before it is all
    // written; what came back is what counts.
    let _ = stream.write_all(request).await;
    let _ = stream.flush().await;
    let head_only = request.starts_with(b"HEAD ");
    tokio::time::timeout(ANSWER_WITHIN, read_response(stream, head_only, probe_close))
        .await
        .map_err(|_| format!("no answer within {ANSWER_WITHIN:?}"))?
}

pub async fn read_response<S: AsyncRead + Unpin>(
    stream: S,
    head_only: bool,
    probe_close: bool,
) -> Result<H1Response, String> {
    let mut reader = MessageReader::new(stream);
    let found = reader
        .read_head(|buf| parse_response_head(buf).map(|h| h.map(|h| h.len)))
        .await;
    match found {
        Ok(Some(_)) => {}
        // Closed (or reset) before a response: the gateway refused silently.
        Ok(None) | Err(_) if reader.buf.is_empty() => {
            return Ok(H1Response {
                closed: true,
                ..H1Response::default()
            })
        }
        Ok(None) => return Err("connection closed inside a response head".to_owned()),
        Err(e) => return Err(format!("unparseable response: {e}")),
    }
    let head = parse_response_head(&reader.buf)?.ok_or("response head vanished")?;
    let framing = match head.framing {
        _ if head_only || head.status == 204 || head.status == 304 => BodyFraming::None,
        Some(BodyFraming::None) => BodyFraming::UntilClose,
        Some(framing) => framing,
        None => return Err("response with a bad Content-Length".to_owned()),
    };
    reader
        .read_body(head.len, framing)
        .await
        .map_err(|e| format!("response body: {e}"))?;
    let closes = head
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
    let closed = reader.eof || closes || (probe_close && closed_soon(&mut reader).await);
    Ok(H1Response {
        status: head.status,
        headers: head.headers,
        closed,
    })
}

/// Whether the gateway closes the connection within a short wait.
async fn closed_soon<S: AsyncRead + Unpin>(reader: &mut MessageReader<S>) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_millis(300), reader.fill()).await,
        Ok(Ok(false)) | Ok(Err(_))
    )
}
