//! PROXY protocol v2 (HAProxy's `send-proxy-v2`): the binary header an L4
//! balancer writes before the TLS handshake, carrying the client's address.
//! Read only from peers the policy trusts for it (`server/proxy_protocol.rs`
//! decides that); from them it is required. Anyone else's header is never
//! read: it reaches the TLS handshake, which refuses it as a bad
//! ClientHello.
//!
//! The header is parsed by the `ppp` crate; this reads exactly its bytes
//! (the fixed 16, then the length they announce) and nothing of the TLS
//! stream behind it.

use std::net::SocketAddr;

use ppp::v2::{Addresses, Command, Header};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12 bytes every v2 header starts with.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family, and the length of the rest.
const FIXED_LEN: usize = 16;
/// Addresses take 12 (IPv4) or 36 (IPv6) bytes; the rest is TLVs, which a
/// balancer keeps small. A longer header is refused, not buffered.
pub const MAX_REST_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("the connection closed or failed before a whole PROXY header: {0}")]
    Read(#[from] std::io::Error),
    #[error("the connection did not start with a PROXY protocol v2 header")]
    Missing,
    #[error("the PROXY header announces {0} bytes, more than {MAX_REST_LEN}")]
    TooLong(usize),
    #[error("the PROXY header does not parse: {0}")]
    Malformed(String),
}

impl ProxyHeaderError {
    /// A label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyHeaderError::Read(_) => "read",
            ProxyHeaderError::Missing => "missing",
            ProxyHeaderError::TooLong(_) => "too_long",
            ProxyHeaderError::Malformed(_) => "malformed",
        }
    }
}

/// Reads one v2 header from the start of `stream` and returns the client
/// address it carries: `None` for a `LOCAL` header (the balancer's own
/// health check) or a family without addresses (UNIX, unspecified), where
/// the connection's own peer stands.
pub async fn read_client_address<S>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyHeaderError>
where
    S: AsyncRead + Unpin,
{
    let mut header = vec![0u8; FIXED_LEN];
    stream.read_exact(&mut header).await?;
    if header[..SIGNATURE.len()] != SIGNATURE {
        return Err(ProxyHeaderError::Missing);
    }
    let rest = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if rest > MAX_REST_LEN {
        return Err(ProxyHeaderError::TooLong(rest));
    }
    header.resize(FIXED_LEN + rest, 0);
    stream.read_exact(&mut header[FIXED_LEN..]).await?;
    let parsed =
        Header::try_from(&header[..]).map_err(|e| ProxyHeaderError::Malformed(e.to_string()))?;
    if parsed.command == Command::Local {
        return Ok(None);
    }
    Ok(match parsed.addresses {
        Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests;
