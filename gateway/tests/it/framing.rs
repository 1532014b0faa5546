//! Strict HTTP/1 framing: ambiguous requests get 400 (or 405/431), carry
//! the security headers, and the connection is closed.

use gatehouse_tests::raw_response::RawResponse;
use gatehouse_tests::GatewayUnderTest;

fn assert_refused(response: &RawResponse, status: u16, what: &str) {
    assert_eq!(response.status(), status, "{what}: {}", response.text);
    assert!(response.closed, "{what}: connection left open");
    assert!(
        response.header("strict-transport-security").is_some(),
        "{what}: no security headers: {}",
        response.text
    );
}

#[tokio::test]
async fn ambiguous_framing_is_refused_and_the_connection_closed() {
    let gateway = GatewayUnderTest::start("").await;
    let cases: [(&str, &[u8]); 4] = [
        (
            "content-length with transfer-encoding",
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "repeated content-length",
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        ),
        (
            "transfer-encoding other than chunked",
            b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        ("missing host", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
    ];
    for (what, request) in cases {
        let response = gateway.raw_request(request).await;
        assert_refused(&response, 400, what);
    }
}

/// Pingora refuses these before any gateway code runs, with its own bare
/// 400 (no body, no security headers); see ARCHITECTURE.md, "Known gaps".
#[tokio::test]
async fn unparseable_framing_is_refused_by_pingora_itself() {
    let gateway = GatewayUnderTest::start("").await;
    let cases: [(&str, &[u8]); 3] = [
        (
            "repeated host",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: other.test\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n b\r\n\r\n",
        ),
        (
            "conflicting content-length",
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
        ),
    ];
    for (what, request) in cases {
        let response = gateway.raw_request(request).await;
        assert_eq!(response.status(), 400, "{what}: {}", response.text);
        assert!(response.closed, "{what}");
        assert!(
            !response.text.contains("\"target\""),
            "{what} reached the upstream"
        );
    }
}

#[tokio::test]
async fn h2c_upgrade_never_passes() {
    let gateway = GatewayUnderTest::start("websocket = true\n").await;
    let response = gateway
        .raw_request(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        )
        .await;
    assert_refused(&response, 400, "h2c");
}

#[tokio::test]
async fn websocket_upgrade_passes_only_where_allowed() {
    let request = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let closed_route = GatewayUnderTest::start("").await;
    assert_refused(
        &closed_route.raw_request(request).await,
        400,
        "websocket on a plain route",
    );

    let open_route = GatewayUnderTest::start("websocket = true\n").await;
    let response = open_route.raw_request(request).await;
    // The echo upstream does not speak WebSocket; reaching it is the point.
    assert!(
        response.text.contains("\"target\":\"/ws\""),
        "{}",
        response.text
    );
}

#[tokio::test]
async fn trace_and_connect_get_405() {
    let gateway = GatewayUnderTest::start("").await;
    let trace = gateway
        .raw_request(b"TRACE / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert_refused(&trace, 405, "TRACE");
}

#[tokio::test]
async fn oversized_head_gets_431() {
    let gateway = GatewayUnderTest::start("").await;
    let big = "a".repeat(40 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n");
    let response = gateway.raw_request(request.as_bytes()).await;
    assert_refused(&response, 431, "oversized head");
}
