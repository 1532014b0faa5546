//! Client connections on the HTTPS listener: how many may be open, in all
//! and per client network, and the request-head deadline
//! ([`HeadDeadline`]) put on each HTTP/1 connection.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;

use crate::admin::metrics::Metrics;
use crate::edge::client_addr::{is_trusted, network_key, NetworkSlot, PerNetwork};
use crate::edge::head_deadline::HeadDeadline;
use crate::snapshot::Snapshot;

/// Caps connections (in all and per client network) around the proxy, and
/// puts a [`HeadDeadline`] on each HTTP/1 connection.
pub struct ConnectionCap<A> {
    pub inner: Arc<A>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub max: usize,
    /// Shared with the drain watcher, which waits for it to reach zero.
    pub open: Arc<AtomicUsize>,
    pub per_address: PerNetwork,
    pub metrics: Arc<Metrics>,
}

/// One open connection, counted until dropped.
struct OpenGuard<'a> {
    open: &'a AtomicUsize,
    metrics: &'a Metrics,
    _address: Option<NetworkSlot>,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.metrics.connections.dec();
    }
}

impl<A> ConnectionCap<A> {
    /// Counts the connection in, or refuses it when either cap is reached.
    fn admit(&self, peer: Option<IpAddr>, snapshot: &Snapshot) -> Option<OpenGuard<'_>> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.metrics.connections_refused.inc();
            return None;
        }
        let policy = &snapshot.policy;
        // A trusted proxy carries many clients on its connections.
        let counted = peer.filter(|ip| !is_trusted(*ip, &policy.trusted_proxies));
        let address = match counted {
            None => None,
            Some(ip) => {
                let network = network_key(ip, policy.rate_limits.ipv6_prefix);
                let slot = self
                    .per_address
                    .try_take(network, policy.limits.max_connections_per_address);
                if slot.is_none() {
                    self.open.fetch_sub(1, Ordering::AcqRel);
                    self.metrics.connections_refused.inc();
                    return None;
                }
                slot
            }
        };
        self.metrics.connections.inc();
        Some(OpenGuard {
            open: &self.open,
            metrics: &self.metrics,
            _address: address,
        })
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionCap<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let snapshot = self.snapshot.load();
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _guard = self.admit(peer, &snapshot)?;
        let stream: Stream = if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            stream
        } else {
            Box::new(HeadDeadline::new(
                stream,
                snapshot.policy.limits.request_head_timeout,
            ))
        };
        drop(snapshot);
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
