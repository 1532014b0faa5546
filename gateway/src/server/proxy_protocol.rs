//! The HTTPS listener's hook before TLS: a connection from a peer in the
//! policy's `proxy_protocol_from` must start with a PROXY protocol v2
//! header (`edge/proxy_protocol.rs`), and the client address it carries
//! replaces the peer's in the connection's socket digest, so every later
//! stage (the allowlist, per-address connection caps and rate limits, the
//! access log, `X-Forwarded-For` to the upstream) sees the client. From
//! any other peer nothing is read, and a header it sends fails the TLS
//! handshake. The trust list follows policy reloads.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use pingora::{Error, ErrorType};

use crate::admin::metrics::Metrics;
use crate::edge::client_addr::is_trusted;
use crate::edge::proxy_protocol::read_client_address;
use crate::snapshot::Snapshot;

/// A balancer writes its header as soon as it connects; a trusted peer
/// that has not within this long is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ProxyProtocolHook {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl PreTlsProcess for ProxyProtocolHook {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(SocketAddr::as_inet).copied());
        let Some(peer) = peer else {
            return Ok(());
        };
        if !is_trusted(peer.ip(), &self.snapshot.load().policy.proxy_protocol_from) {
            return Ok(());
        }
        let refuse = |reason: &'static str, why: String| {
            self.metrics
                .proxy_protocol_refused
                .with_label_values(&[reason])
                .inc();
            tracing::warn!(%peer, reason, "dropping a connection from a PROXY protocol peer: {why}");
            Error::explain(ErrorType::HandshakeError, "PROXY protocol header refused")
        };
        let client = match tokio::time::timeout(HEADER_TIMEOUT, read_client_address(stream)).await {
            Err(_) => return Err(refuse("timeout", "no header in time".to_owned())),
            Ok(Err(e)) => return Err(refuse(e.kind(), e.to_string())),
            Ok(Ok(client)) => client,
        };
        if let Some(client) = client {
            // The digest's address is set once, at accept: a new digest for
            // the same socket, with the client as its peer.
            let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
            let _ = digest.peer_addr.set(Some(SocketAddr::Inet(client)));
            stream.set_socket_digest(digest);
        }
        Ok(())
    }
}
