//! Reading whole HTTP/1.1 messages off a byte stream, with `httparse`
//! doing the parsing: the head, then a body framed by `Content-Length`,
//! chunked encoding (`httparse::parse_chunk_size`) or the end of the
//! connection. Shared by [`crate::RecordingUpstream`] (requests) and raw
//! test clients (responses), so neither waits for silence to know a
//! message is complete.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most headers a message may carry before it counts as unparseable.
pub const MAX_HEADERS: usize = 256;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(usize),
    Chunked,
    /// Until the peer closes (responses without a length only).
    UntilClose,
}

/// Framing from parsed headers: chunked wins over a length (the message
/// is malformed then anyway; the reader must not hang on it).
pub fn framing_of(headers: &[httparse::Header<'_>]) -> Option<BodyFraming> {
    let te = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    if let Some(te) = te {
        let chunked = String::from_utf8_lossy(te.value)
            .to_ascii_lowercase()
            .trim_end()
            .ends_with("chunked");
        return chunked.then_some(BodyFraming::Chunked);
    }
    match headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        Some(cl) => std::str::from_utf8(cl.value)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(BodyFraming::Length),
        None => Some(BodyFraming::None),
    }
}

/// A byte stream with a buffer of what arrived but was not consumed yet.
pub struct MessageReader<S> {
    pub stream: S,
    pub buf: Vec<u8>,
    /// The peer closed its side.
    pub eof: bool,
}

impl<S: AsyncRead + Unpin> MessageReader<S> {
    pub fn new(stream: S) -> Self {
        MessageReader {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Reads more bytes; `Ok(false)` at end of stream.
    pub async fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    /// Reads until `complete(&buf)` returns the length of a whole head.
    /// `Ok(None)` when the stream ended before one arrived.
    pub async fn read_head(
        &mut self,
        mut complete: impl FnMut(&[u8]) -> Result<Option<usize>, String>,
    ) -> io::Result<Option<usize>> {
        loop {
            if !self.buf.is_empty() {
                match complete(&self.buf) {
                    Ok(Some(len)) => return Ok(Some(len)),
                    Ok(None) => {}
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                }
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Reads the body that starts at `start` in the buffer; returns the
    /// length of the whole message (head and body) in the buffer. A body
    /// cut short by the end of the stream is an `UnexpectedEof` error.
    pub async fn read_body(&mut self, start: usize, framing: BodyFraming) -> io::Result<usize> {
        match framing {
            BodyFraming::None => Ok(start),
            BodyFraming::Length(n) => {
                while self.buf.len() < start + n {
                    if !self.fill().await? {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Ok(start + n)
            }
            BodyFraming::UntilClose => {
                while self.fill().await? {}
                Ok(self.buf.len())
            }
            BodyFraming::Chunked => self.read_chunked(start).await,
        }
    }

    async fn read_chunked(&mut self, start: usize) -> io::Result<usize> {
        let mut at = start;
        loop {
            let (size_len, size) = loop {
                match httparse::parse_chunk_size(&self.buf[at..]) {
                    Ok(httparse::Status::Complete(found)) => break found,
                    Ok(httparse::Status::Partial) => self.more().await?,
                    Err(_) => return Err(invalid("bad chunk size")),
                }
            };
            at += size_len;
            if size == 0 {
                return self.read_trailers(at).await;
            }
            let size = usize::try_from(size).map_err(|_| invalid("chunk too large"))?;
            while self.buf.len() < at + size + 2 {
                self.more().await?;
            }
            if &self.buf[at + size..at + size + 2] != b"\r\n" {
                return Err(invalid("chunk not followed by CRLF"));
            }
            at += size + 2;
        }
    }

    async fn read_trailers(&mut self, at: usize) -> io::Result<usize> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(&self.buf[at..], &mut headers) {
                Ok(httparse::Status::Complete((len, _))) => return Ok(at + len),
                Ok(httparse::Status::Partial) => self.more().await?,
                Err(_) => return Err(invalid("bad trailers")),
            }
        }
    }

    async fn more(&mut self) -> io::Result<()> {
        if self.fill().await? {
            Ok(())
        } else {
            Err(io::ErrorKind::UnexpectedEof.into())
        }
    }

    /// Drops the first `len` bytes (a message that was handled).
    pub fn consume(&mut self, len: usize) {
        self.buf.drain(..len);
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// A parsed response head.
pub struct ResponseHead {
    /// Length of the head in the buffer.
    pub len: usize,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// `None` for an unusable `Content-Length`.
    pub framing: Option<BodyFraming>,
}

/// Parses a response head at the start of `buf`; `Ok(None)` until it is
/// complete.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(ResponseHead {
            len,
            status: response.code.unwrap_or(0),
            framing: framing_of(response.headers),
            headers: response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}
