//! PROXY protocol v2 on the HTTPS listener, behind a real HAProxy in TCP
//! mode with `send-proxy-v2`: the gateway decides on the client's address,
//! not the balancer's; only the trusted balancer's header is read, and it
//! must send one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use gatehouse_tests::haproxy::Balancer;
use gatehouse_tests::metrics::metric_value;
use gatehouse_tests::upstream::{echoed, upstream_header};
use gatehouse_tests::GatewayUnderTest;
use tokio::io::AsyncWriteExt;

/// The balancer connects to the gateway from this address, the only one
/// trusted for PROXY headers.
const BALANCER: [u8; 4] = [127, 0, 0, 9];

const NETWORK: &str = r#"
[network]
proxy_protocol_from = ["127.0.0.9/32"]
deny = ["127.0.0.66/32"]

[limits]"#;

/// A gateway that trusts [`BALANCER`] for PROXY headers and denies
/// 127.0.0.66.
async fn gateway() -> GatewayUnderTest {
    GatewayUnderTest::start_with(
        &gatehouse_tests::gateway::BASE_POLICY.replace("[limits]", NETWORK),
        "",
    )
    .await
}

/// HAProxy in TCP mode in front of the gateway, writing a v2 header on
/// each connection it opens from [`BALANCER`].
fn haproxy(gateway: &GatewayUnderTest) -> Balancer {
    Balancer::start(
        gateway.pki.dir.path(),
        &[gateway.https],
        IpAddr::from(BALANCER),
    )
}

/// A client of the balancer, connecting from `source`.
fn client_via(gateway: &GatewayUnderTest, balancer: &Balancer, source: [u8; 4]) -> reqwest::Client {
    gateway
        .pki
        .https_client(SocketAddr::from(([127, 0, 0, 1], balancer.ports[0])))
        .local_address(IpAddr::from(source))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test]
async fn behind_haproxy_the_client_address_is_the_real_one() {
    let gateway = gateway().await;
    let balancer = haproxy(&gateway);
    let origin = format!("https://localhost:{}/", balancer.ports[0]);

    let response = client_via(&gateway, &balancer, [127, 0, 0, 7])
        .get(&origin)
        .send()
        .await
        .expect("through haproxy");
    assert_eq!(response.status(), 200);
    let echo = echoed(response).await;
    assert_eq!(upstream_header(&echo, "x-forwarded-for"), vec!["127.0.0.7"]);

    // The allowlist applies to the client, not to the balancer.
    let denied = client_via(&gateway, &balancer, [127, 0, 0, 66])
        .get(&origin)
        .send()
        .await
        .expect("through haproxy");
    assert_eq!(denied.status(), 403);

    // Clients that reach the gateway directly are served as themselves.
    let direct = gateway.get("/").await;
    assert_eq!(
        upstream_header(&echoed(direct).await, "x-forwarded-for"),
        vec!["127.0.0.1"]
    );
}

#[tokio::test]
async fn the_trusted_balancer_must_send_the_header() {
    let gateway = gateway().await;
    // TLS straight from the balancer's address, with no header first.
    let result = gateway
        .client_from(IpAddr::from(BALANCER))
        .get(format!("{}/", gateway.origin()))
        .send()
        .await;
    assert!(result.is_err(), "served without a PROXY header: {result:?}");
    let metrics = gateway.metrics().await;
    let refused = metric_value(
        &metrics,
        "gatehouse_proxy_protocol_refused_total{reason=\"missing\"}",
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{metrics}");
}

#[tokio::test]
async fn a_header_from_anyone_else_is_never_read() {
    let gateway = gateway().await;
    // A client claims to be 203.0.113.5 with a well-formed v2 header, then
    // starts TLS.
    let claimed: SocketAddr = "203.0.113.5:40000".parse().expect("address");
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (claimed, gateway.https),
    )
    .build()
    .expect("header");
    let mut tcp = tokio::net::TcpStream::connect(gateway.https)
        .await
        .expect("connect");
    tcp.write_all(&header).await.expect("write the header");
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        gateway.pki.client_config(&[b"http/1.1"]),
    ));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let handshake = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("the gateway answers in time");
    assert!(
        handshake.is_err(),
        "TLS after a forged PROXY header succeeded"
    );
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "gatehouse_proxy_protocol_refused_total{reason=\"missing\"}"
        ),
        None,
        "an untrusted peer's bytes are not read as a header: {metrics}"
    );
}
