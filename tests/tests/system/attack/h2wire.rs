//! A raw HTTP/2 client for malformed requests: frames are written by hand
//! (a 9-byte header and a payload, RFC 9113 §4.1) and header blocks are
//! encoded by `loona-hpack`, which encodes whatever names and values it is
//! given. The `h2` crate would refuse to send most of these requests.
//!
//! One request on stream 1; the outcome is the response status, or the
//! stream reset, the connection error, or the close that refused it.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// A request as header fields (pseudo-headers included, in the order
/// given) and the DATA frames that follow.
pub struct H2Request {
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    pub data: Vec<Vec<u8>>,
}

/// A GET with the usual pseudo-headers for `path` on `localhost`.
pub fn get(path: &str) -> H2Request {
    request(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path),
    ])
}

/// Exactly these fields, in this order.
pub fn request(fields: &[(&str, &str)]) -> H2Request {
    H2Request {
        fields: fields
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        data: Vec::new(),
    }
}

impl H2Request {
    /// Appends a field (name and value as raw bytes).
    pub fn field(mut self, name: &[u8], value: &[u8]) -> Self {
        self.fields.push((name.to_vec(), value.to_vec()));
        self
    }

    /// Adds a DATA frame; the last one ends the stream.
    pub fn data(mut self, payload: &[u8]) -> Self {
        self.data.push(payload.to_vec());
        self
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum H2Outcome {
    Response(u16),
    /// RST_STREAM on stream 1 with this error code.
    Reset(u32),
    /// GOAWAY with a non-zero error code.
    GoAway(u32),
    Closed,
    NoAnswer,
}

impl H2Outcome {
    /// Refused as malformed: 400, a stream or connection error, or a close.
    pub fn refused(&self) -> bool {
        matches!(
            self,
            H2Outcome::Response(400)
                | H2Outcome::Reset(_)
                | H2Outcome::GoAway(_)
                | H2Outcome::Closed
        )
    }
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Sends the preface, `request` on stream 1, and reads until stream 1 is
/// answered or refused.
pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &H2Request,
) -> H2Outcome {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let block = loona_hpack::Encoder::new().encode(
        request
            .fields
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice())),
    );
    let end = if request.data.is_empty() {
        END_STREAM
    } else {
        0
    };
    out.extend(frame(HEADERS, END_HEADERS | end, 1, &block));
    for (i, payload) in request.data.iter().enumerate() {
        let last = i + 1 == request.data.len();
        out.extend(frame(DATA, if last { END_STREAM } else { 0 }, 1, payload));
    }
    if stream.write_all(&out).await.is_err() {
        return H2Outcome::Closed;
    }
    match tokio::time::timeout(Duration::from_secs(8), read_outcome(&mut stream)).await {
        Ok(outcome) => outcome,
        Err(_) => H2Outcome::NoAnswer,
    }
}

async fn read_outcome<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> H2Outcome {
    let mut decoder = loona_hpack::Decoder::new();
    loop {
        let Some((kind, flags, id, payload)) = read_frame(stream).await else {
            return H2Outcome::Closed;
        };
        match kind {
            SETTINGS if flags & ACK == 0 => {
                let _ = stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
            }
            PING if flags & ACK == 0 => {
                let _ = stream.write_all(&frame(PING, ACK, 0, &payload)).await;
            }
            GOAWAY => {
                let code = u32::from_be_bytes(payload[4..8].try_into().unwrap_or([0; 4]));
                if code != 0 {
                    return H2Outcome::GoAway(code);
                }
            }
            RST_STREAM if id == 1 => {
                return H2Outcome::Reset(u32::from_be_bytes(
                    payload[..4].try_into().unwrap_or([0; 4]),
                ))
            }
            HEADERS if id == 1 => {
                let mut block = header_block(flags, &payload);
                let mut done = flags & END_HEADERS != 0;
                while !done {
                    let Some((CONTINUATION, f, _, more)) = read_frame(stream).await else {
                        return H2Outcome::Closed;
                    };
                    block.extend_from_slice(&more);
                    done = f & END_HEADERS != 0;
                }
                return status_of(&mut decoder, &block);
            }
            _ => {}
        }
    }
}

/// The header block fragment of a HEADERS payload (padding and priority
/// removed).
fn header_block(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut start = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        start = 1;
        end = end.saturating_sub(usize::from(payload[0]));
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    payload[start.min(end)..end].to_vec()
}

fn status_of(decoder: &mut loona_hpack::Decoder<'_>, block: &[u8]) -> H2Outcome {
    let Ok(fields) = decoder.decode(block) else {
        return H2Outcome::Closed;
    };
    fields
        .iter()
        .find(|(n, _)| n == b":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
        .map_or(H2Outcome::Closed, H2Outcome::Response)
}

async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], id, payload))
}
