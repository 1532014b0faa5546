//! An in-memory HTTP/1.1 connection for Pingora's downstream `Session`,
//! with a socket peer, so the gateway's phases run as they do on a real
//! connection, minus the socket.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora::proxy::Session;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

/// The server half of an in-memory connection, with the socket peer
/// Pingora reports as the client address.
#[derive(Debug)]
pub struct Conn {
    io: DuplexStream,
    socket: Arc<SocketDigest>,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[async_trait::async_trait]
impl Shutdown for Conn {
    async fn shutdown(&mut self) {}
}

impl UniqueID for Conn {
    fn id(&self) -> UniqueIDType {
        0
    }
}

impl Ssl for Conn {}
impl Peek for Conn {}

impl GetTimingDigest for Conn {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

impl GetProxyDigest for Conn {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for Conn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(self.socket.clone())
    }
}

/// A downstream session that has read `head`, and the client's half of
/// its connection (kept open for the session's lifetime).
pub async fn session(head: &str, peer: std::net::SocketAddr) -> (Session, DuplexStream) {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    // No socket behind it: the peer address is set, never looked up.
    let socket = SocketDigest::from_raw_fd(-1);
    socket.peer_addr.set(Some(SocketAddr::Inet(peer))).unwrap();
    let conn = Conn {
        io: server,
        socket: Arc::new(socket),
    };
    let mut session = Session::new_h1(Box::new(conn));
    client.write_all(head.as_bytes()).await.unwrap();
    assert!(session.read_request().await.unwrap());
    (session, client)
}
