//! How long a client may take to send a request head.
//!
//! Pingora times each *read* of a request head, not the head as a whole, so
//! a client that sends one header line every 50 s holds its connection for
//! as long as it likes; five such clients filled `max_connections = 5`.
//! [`HeadDeadline`] wraps each HTTP/1 connection's stream: the head must be
//! complete within `request_head_timeout` of the connection being accepted
//! (first request) or of its first byte (later requests on a kept-alive
//! connection), else reads fail and the connection is closed. The request
//! path tells the stream where heads end ([`mark_head_received`]) and when
//! the next one may begin ([`mark_request_done`]). HTTP/2 connections are
//! bounded by Pingora's `h2_idle_timeout` instead, which closes a
//! connection that has no complete request.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::proxy::Session;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The request head has arrived: no deadline until the request is done.
pub fn mark_head_received(session: &Session) {
    if let Some(deadline) = head_deadline(session) {
        deadline.phase.store(IN_REQUEST, Ordering::Release);
    }
}

/// The request is done; the next head's clock starts at its first byte.
pub fn mark_request_done(session: &Session) {
    if let Some(deadline) = head_deadline(session) {
        deadline.phase.store(IDLE, Ordering::Release);
    }
}

fn head_deadline(session: &Session) -> Option<&HeadDeadline> {
    session
        .as_downstream()
        .stream()?
        .as_any()
        .downcast_ref::<HeadDeadline>()
}

/// Waiting for (the rest of) a head, with the deadline running.
const AWAITING_HEAD: u8 = 0;
/// Between a head and the end of its request: no deadline.
const IN_REQUEST: u8 = 1;
/// Kept alive after a request: the deadline starts with the next byte.
const IDLE: u8 = 2;

/// A connection's stream with a deadline on request heads.
pub struct HeadDeadline {
    inner: Stream,
    timeout: Duration,
    phase: AtomicU8,
    deadline: Pin<Box<Sleep>>,
}

impl HeadDeadline {
    pub fn new(inner: Stream, timeout: Duration) -> Self {
        HeadDeadline {
            inner,
            timeout,
            phase: AtomicU8::new(AWAITING_HEAD),
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl std::fmt::Debug for HeadDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadDeadline")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AsyncRead for HeadDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let phase = this.phase.load(Ordering::Acquire);
        if phase == AWAITING_HEAD && this.deadline.is_elapsed() {
            return Poll::Ready(Err(head_timed_out()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut *this.inner).poll_read(cx, buf);
        if phase == IDLE && buf.filled().len() > before {
            // The first byte of the next request starts its clock.
            this.phase.store(AWAITING_HEAD, Ordering::Release);
            let at = Instant::now() + this.timeout;
            this.deadline.as_mut().reset(at);
        } else if phase == AWAITING_HEAD && read.is_pending() {
            // The timer wakes this task when it runs out, so a client that
            // sends nothing cannot outwait it either.
            if this.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(head_timed_out()));
            }
        }
        read
    }
}

fn head_timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "request head not complete within request_head_timeout",
    )
}

impl AsyncWrite for HeadDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

// The rest only passes through to the wrapped stream.

#[async_trait]
impl Shutdown for HeadDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeadDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
