//! PROXY protocol v2 (issue 15). A gateway that trusts one balancer
//! (127.0.0.4) for PROXY headers, with a route allowlisted for 10.0.0.0/8
//! and 203.0.113.66 denied:
//!
//! - a client anywhere else that writes a v2 header claiming 10.0.0.5
//!   before its TLS handshake gets no TLS session at all: the header is
//!   never read, so it cannot choose its address;
//! - the balancer without a header is dropped (it must send one);
//! - the balancer's header names the client, for the allowlist, the deny
//!   list and what the upstream is told: the positive control that the
//!   refusals above are the trust boundary and not a broken feature.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::client::{exchange, tcp_from};
use super::*;

const BALANCER: [u8; 4] = [127, 0, 0, 4];

fn policy() -> String {
    format!(
        "{NO_RATE_LIMITS}\n[network]\nproxy_protocol_from = [\"127.0.0.4/32\"]\ndeny = [\"203.0.113.66/32\"]\n{}{}\n[route.network]\nallow = [\"10.0.0.0/8\"]\n",
        route("site", "/", "public = true"),
        route("office", "/office", "public = true"),
    )
}

/// A v2 header (TCP over IPv4) naming `client` as the source.
fn header(client: [u8; 4], gateway: SocketAddr) -> Vec<u8> {
    let source = SocketAddr::from((client, 40_000));
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (source, gateway),
    )
    .build()
    .expect("a v2 header")
}

/// TCP from `from`, `prefix` written first, then a TLS handshake.
async fn session(
    target: &Target,
    from: Option<IpAddr>,
    prefix: &[u8],
) -> Result<TlsStream<tokio::net::TcpStream>, String> {
    let mut tcp = tcp_from(target.gateway.https, from)
        .await
        .map_err(|e| format!("tcp: {e}"))?;
    tcp.write_all(prefix)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let config = Arc::new(target.gateway.pki.client_config(&[b"http/1.1"]));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let handshake = TlsConnector::from(config).connect(name, tcp);
    match tokio::time::timeout(std::time::Duration::from_secs(10), handshake).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("tls: {e}")),
        Err(_) => Err("no TLS answer within 10 s".to_owned()),
    }
}

/// Holds when the gateway gives no TLS session, and nothing reaches the
/// upstream.
async fn no_session(target: &Target, from: Option<IpAddr>, prefix: &[u8]) -> Result<(), String> {
    target.upstream.take();
    match session(target, from, prefix).await {
        Ok(_) => Err("a TLS session was established".to_owned()),
        Err(_) => match target.upstream.settle(SETTLE).await.len() {
            0 => Ok(()),
            n => Err(format!("{n} requests reached the upstream")),
        },
    }
}

/// Runs `vector` over a session opened with `prefix` from `from`.
async fn through(
    target: &Target,
    from: Option<IpAddr>,
    prefix: &[u8],
    vector: &Vector,
) -> Result<(), String> {
    target.upstream.take();
    let stream = session(target, from, prefix).await?;
    let response = exchange(stream, &vector.request, vector.expect.closes).await?;
    target.judge(&vector.expect, &response).await
}

#[tokio::test]
async fn proxy_protocol_spoofing() {
    let _shared = shared().await;
    let mut report = Report::new("proxy_protocol");
    let target = match Target::start(&policy()).await {
        Ok(target) => target,
        Err(e) => {
            report.fail_all(&["the gateway starts with proxy_protocol_from"], &e);
            return report.finish();
        }
    };
    let https = target.gateway.https;
    let office = [10, 0, 0, 5];
    let balancer = Some(IpAddr::from(BALANCER));

    report.record(
        "a client's forged PROXY header (for 10.0.0.5) gets no TLS session",
        no_session(&target, None, &header(office, https)).await,
    );
    report.record(
        "from a neighbouring loopback address, neither",
        no_session(&target, Some(lo(0, 0, 5)), &header(office, https)).await,
    );
    report.record(
        "the trusted balancer without a header is dropped",
        no_session(&target, balancer, b"").await,
    );
    let opens = vector(
        "the balancer's header names the client: 10.0.0.5 opens the 10/8 route",
        req("GET", "/office"),
    )
    .status(200)
    .reaches(seen("GET", "/office").with("x-forwarded-for", "10.0.0.5"));
    report.record(
        opens.name.clone(),
        through(&target, balancer, &header(office, https), &opens).await,
    );
    let denied = vector(
        "through the balancer a denied client stays denied",
        req("GET", "/"),
    )
    .status(403)
    .nothing();
    report.record(
        denied.name.clone(),
        through(
            &target,
            balancer,
            &header([203, 0, 113, 66], https),
            &denied,
        )
        .await,
    );
    let direct = vector(
        "a direct client is its socket address: the 10/8 route stays shut",
        req("GET", "/office"),
    )
    .status(403)
    .nothing();
    report.record(
        direct.name.clone(),
        through(&target, None, b"", &direct).await,
    );
    report.finish();
}
