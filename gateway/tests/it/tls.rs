//! TLS versions, ALPN, SNI certificate choice and hot reload.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use gatehouse_tests::gateway::BASE_POLICY;
use gatehouse_tests::metrics::metric_value;
use gatehouse_tests::raw_response::read_until_quiet;
use gatehouse_tests::GatewayUnderTest;

fn client_with_versions(
    gateway: &GatewayUnderTest,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    let base = gateway.pki.client_config(alpn);
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(root_store(gateway))
    .with_no_client_auth();
    config.alpn_protocols = base.alpn_protocols;
    config
}

fn root_store(gateway: &GatewayUnderTest) -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            rustls::pki_types::CertificateDer::from_pem_slice(gateway.pki.ca_pem.as_bytes())
                .expect("CA parses"),
        )
        .expect("CA is acceptable");
    roots
}

#[tokio::test]
async fn tls12_and_tls13_are_both_accepted_by_default() {
    let gateway = GatewayUnderTest::start("").await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_with_versions(&gateway, &[version], &[b"http/1.1"]);
        let stream = gateway
            .tls_connect(config, "localhost")
            .await
            .expect("handshake");
        assert_eq!(stream.get_ref().1.protocol_version(), Some(version.version));
    }
}

#[tokio::test]
async fn tls13_only_policy_refuses_tls12_and_counts_the_failure() {
    let template = BASE_POLICY.replace(
        "[[tls.cert]]",
        "[tls]\nmin_version = \"1.3\"\n\n[[tls.cert]]",
    );
    let gateway = GatewayUnderTest::start_with(&template, "").await;
    let tls13 = client_with_versions(&gateway, &[&rustls::version::TLS13], &[]);
    assert!(gateway.tls_connect(tls13, "localhost").await.is_ok());
    let before = metric_value(
        &gateway.metrics().await,
        "gatehouse_tls_handshake_failures_total",
    )
    .unwrap();
    let tls12 = client_with_versions(&gateway, &[&rustls::version::TLS12], &[]);
    assert!(gateway.tls_connect(tls12, "localhost").await.is_err());
    gateway
        .metric_reaches("gatehouse_tls_handshake_failures_total", before + 1.0)
        .await;
    let after = metric_value(
        &gateway.metrics().await,
        "gatehouse_tls_handshake_failures_total",
    )
    .unwrap();
    assert_eq!(after, before + 1.0, "{}", gateway.process.log_text());
}

#[tokio::test]
async fn alpn_negotiates_h2_or_http11() {
    let gateway = GatewayUnderTest::start("").await;
    let h2 = gateway.pki.client_config(&[b"h2", b"http/1.1"]);
    let stream = gateway.tls_connect(h2, "localhost").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let h1 = gateway.pki.client_config(&[b"http/1.1"]);
    let stream = gateway.tls_connect(h1, "localhost").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let response = gateway.get("/").await;
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
}

fn leaf_names(stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<String> {
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certs");
    let (_, leaf) = x509_parser::parse_x509_certificate(&certs[0]).expect("leaf parses");
    let san = leaf
        .subject_alternative_name()
        .expect("extension parses")
        .expect("leaf has SANs");
    san.value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect()
}

fn leaf_serial(stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certs");
    let (_, leaf) = x509_parser::parse_x509_certificate(&certs[0]).expect("leaf parses");
    leaf.raw_serial_as_string()
}

const TWO_CERTS: &str = "[[tls.cert]]\nhosts = [\"other.test\"]\ncert = \"{dir}/other.pem\"\nkey = \"{dir}/other-key.pem\"\n\n[limits]";

#[tokio::test]
async fn certificate_is_chosen_by_sni() {
    let template = BASE_POLICY.replace("[limits]", TWO_CERTS);
    let gateway = GatewayUnderTest::start_custom(&template, "", |pki| {
        pki.issue("other", &["other.test"], 30).unwrap();
    })
    .await;
    let config = gateway.pki.client_config(&[]);
    let other = gateway
        .tls_connect(config.clone(), "other.test")
        .await
        .unwrap();
    assert_eq!(leaf_names(&other), vec!["DNSName(other.test)"]);
    let local = gateway.tls_connect(config, "localhost").await.unwrap();
    assert!(leaf_names(&local).contains(&"DNSName(localhost)".to_owned()));
}

#[tokio::test]
async fn certificate_reloads_on_file_change_without_dropping_connections() {
    let gateway = GatewayUnderTest::start("").await;
    let config = gateway.pki.client_config(&[b"http/1.1"]);
    let mut old = gateway
        .tls_connect(config.clone(), "localhost")
        .await
        .unwrap();
    let old_serial = leaf_serial(&old);

    gateway
        .pki
        .issue("server", &["localhost", "127.0.0.1"], 30)
        .unwrap();

    let mut new_serial = old_serial.clone();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fresh = gateway
            .tls_connect(config.clone(), "localhost")
            .await
            .unwrap();
        new_serial = leaf_serial(&fresh);
        if new_serial != old_serial {
            break;
        }
    }
    assert_ne!(
        new_serial, old_serial,
        "new handshakes should see the new certificate"
    );

    old.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let response = read_until_quiet(&mut old).await;
    assert!(
        response.text.starts_with("HTTP/1.1 200"),
        "{}",
        response.text
    );
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "gatehouse_policy_reloads_total{outcome=\"accepted\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn certificate_expiry_is_exported() {
    let gateway = GatewayUnderTest::start("").await;
    let metrics = gateway.metrics().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("gatehouse_tls_cert_expiry_seconds{"))
        .expect("expiry series");
    let seconds: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    // The test certificate is valid for 30 days.
    assert!(
        (29.0 * 86_400.0..=30.0 * 86_400.0).contains(&seconds),
        "{seconds}"
    );
}
