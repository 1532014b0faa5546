use super::*;
use ppp::v2::{Builder, Protocol, Version};

fn header(command: Command, addresses: impl Into<Addresses>) -> Vec<u8> {
    Builder::with_addresses(Version::Two | command, Protocol::Stream, addresses)
        .build()
        .expect("a header")
}

async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
    let mut stream = bytes;
    let result = read_client_address(&mut stream).await;
    (result, stream.to_vec())
}

/// The first bytes of a TLS ClientHello, as a client with no balancer in
/// front sends them.
const CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefgh";

#[tokio::test]
async fn an_ipv4_header_gives_the_client_and_leaves_the_tls_bytes_unread() {
    let client: SocketAddr = "203.0.113.7:51515".parse().expect("address");
    let server: SocketAddr = "10.0.0.1:443".parse().expect("address");
    let mut bytes = header(Command::Proxy, (client, server));
    bytes.extend_from_slice(CLIENT_HELLO);
    let (result, rest) = read(&bytes).await;
    assert_eq!(result.expect("parsed"), Some(client));
    assert_eq!(rest, CLIENT_HELLO);
}

#[tokio::test]
async fn an_ipv6_header_gives_the_client() {
    let client: SocketAddr = "[2001:db8::7]:4000".parse().expect("address");
    let server: SocketAddr = "[2001:db8::1]:443".parse().expect("address");
    let (result, rest) = read(&header(Command::Proxy, (client, server))).await;
    assert_eq!(result.expect("parsed"), Some(client));
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_local_header_keeps_the_connections_own_peer() {
    let client: SocketAddr = "203.0.113.7:1".parse().expect("address");
    let server: SocketAddr = "10.0.0.1:443".parse().expect("address");
    let (result, _) = read(&header(Command::Local, (client, server))).await;
    assert_eq!(result.expect("parsed"), None);
}

#[tokio::test]
async fn a_connection_without_the_header_is_refused() {
    let (result, _) = read(CLIENT_HELLO).await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Missing)),
        "{result:?}"
    );
    // Version 1's text header is not accepted either.
    let (result, _) = read(b"PROXY TCP4 203.0.113.7 10.0.0.1 5000 443\r\n").await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Missing)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_truncated_header_is_a_read_error() {
    let client: SocketAddr = "203.0.113.7:51515".parse().expect("address");
    let server: SocketAddr = "10.0.0.1:443".parse().expect("address");
    let whole = header(Command::Proxy, (client, server));
    for cut in [5, FIXED_LEN, whole.len() - 1] {
        let (result, _) = read(&whole[..cut]).await;
        assert!(
            matches!(result, Err(ProxyHeaderError::Read(_))),
            "{cut}: {result:?}"
        );
    }
}

#[tokio::test]
async fn an_oversized_header_is_refused_before_it_is_read() {
    let mut bytes = SIGNATURE.to_vec();
    bytes.extend_from_slice(&[0x21, 0x11]);
    bytes.extend_from_slice(
        &u16::try_from(MAX_REST_LEN + 1)
            .expect("small")
            .to_be_bytes(),
    );
    let (result, _) = read(&bytes).await;
    assert!(
        matches!(result, Err(ProxyHeaderError::TooLong(n)) if n == MAX_REST_LEN + 1),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_header_with_a_bad_version_or_short_addresses_is_malformed() {
    let client: SocketAddr = "203.0.113.7:51515".parse().expect("address");
    let server: SocketAddr = "10.0.0.1:443".parse().expect("address");
    let mut bad_version = header(Command::Proxy, (client, server));
    bad_version[12] = 0x31;
    let (result, _) = read(&bad_version).await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Malformed(_))),
        "{result:?}"
    );
    // IPv4 over TCP announced, with 4 bytes where 12 belong.
    let mut short = SIGNATURE.to_vec();
    short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
    let (result, _) = read(&short).await;
    assert!(
        matches!(result, Err(ProxyHeaderError::Malformed(_))),
        "{result:?}"
    );
}
