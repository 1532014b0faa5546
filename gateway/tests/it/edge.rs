//! Headers, redirect, network rules, path normalisation, body limits and
//! upstream failures, seen from a real client.

use std::time::Duration;

use gatehouse_tests::gateway::BASE_POLICY;
use gatehouse_tests::metrics::metric_value;
use gatehouse_tests::raw_response::read_until_quiet;
use gatehouse_tests::upstream::{echoed, upstream_header};
use gatehouse_tests::GatewayUnderTest;

const SECURITY_HEADERS: [&str; 8] = [
    "strict-transport-security",
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
];

fn assert_security_headers(headers: &reqwest::header::HeaderMap) {
    for name in SECURITY_HEADERS {
        assert!(headers.contains_key(name), "missing {name}: {headers:?}");
    }
}

#[tokio::test]
async fn proxied_response_has_security_headers_and_no_fingerprint() {
    let gateway = GatewayUnderTest::start("").await;
    let response = gateway.get("/hello").await;
    assert_eq!(response.status(), 200);
    assert_security_headers(response.headers());
    assert!(response.headers().get("server").is_none());
    assert!(response.headers().get("x-powered-by").is_none());
    assert!(response.headers().get("x-request-id").is_some());
}

#[tokio::test]
async fn gateway_generated_responses_have_security_headers() {
    let extra =
        "\n[[route]]\nname = \"dead\"\npath = \"/dead\"\nupstream = \"http://127.0.0.1:9\"\npublic = true\n";
    let template = BASE_POLICY.replace("path = \"/\"", "path = \"/app\"");
    let gateway = GatewayUnderTest::start_with(&template, extra).await;
    let not_found = gateway.get("/elsewhere").await;
    assert_eq!(not_found.status(), 404);
    assert_security_headers(not_found.headers());
    let bad_gateway = gateway.get("/dead").await;
    assert_eq!(bad_gateway.status(), 502);
    assert_security_headers(bad_gateway.headers());
    let body = bad_gateway.text().await.unwrap();
    assert_eq!(body, "502 Bad Gateway\n", "no internals leak");
}

#[tokio::test]
async fn headers_can_be_overridden_per_route() {
    let extra = "[route.headers]\ncsp = \"default-src 'none'\"\nx_frame_options = false\n";
    let gateway = GatewayUnderTest::start(extra).await;
    let response = gateway.get("/").await;
    assert_eq!(
        response.headers()["content-security-policy"],
        "default-src 'none'"
    );
    assert!(response.headers().get("x-frame-options").is_none());
}

#[tokio::test]
async fn redirect_keeps_path_and_query_and_ignores_the_host_header() {
    let gateway = GatewayUnderTest::start("").await;
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{}/some/path?q=1", gateway.http))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        format!("{}/some/path?q=1", gateway.origin()).as_str()
    );
    assert_security_headers(response.headers());
}

#[tokio::test]
async fn client_outside_the_allowlist_gets_403() {
    let gateway = GatewayUnderTest::start("").await;
    gateway.rewrite_policy(
        &BASE_POLICY.replace(
            "[limits]",
            "[network]\nallow = [\"127.0.0.1/32\"]\n\n[limits]",
        ),
        "",
    );
    gateway.process.signal("HUP").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(gateway.get("/").await.status(), 200);
    let from_127_0_0_2 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(gateway.pki.ca_pem.as_bytes()).unwrap(),
        )
        .resolve("localhost", gateway.https)
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let response = from_127_0_0_2
        .get(format!("{}/", gateway.origin()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_security_headers(response.headers());
}

#[tokio::test]
async fn forwarded_for_is_ignored_without_a_trusted_proxy() {
    let gateway = GatewayUnderTest::start("").await;
    let response = gateway
        .client()
        .get(format!("{}/", gateway.origin()))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    let echo = echoed(response).await;
    assert_eq!(upstream_header(&echo, "x-forwarded-for"), vec!["127.0.0.1"]);
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let network =
        "[network]\ntrusted_proxies = [\"127.0.0.1/32\"]\ndeny = [\"203.0.113.66/32\"]\n\n[limits]";
    let gateway = GatewayUnderTest::start_with(&BASE_POLICY.replace("[limits]", network), "").await;
    let send = |xff: &'static str| {
        gateway
            .client()
            .get(format!("{}/", gateway.origin()))
            .header("x-forwarded-for", xff)
            .send()
    };
    let echo = echoed(send("198.51.100.1, 203.0.113.9").await.unwrap()).await;
    assert_eq!(
        upstream_header(&echo, "x-forwarded-for"),
        vec!["203.0.113.9"]
    );
    assert_eq!(send("203.0.113.66").await.unwrap().status(), 403);
}

#[tokio::test]
async fn forged_identity_headers_are_stripped() {
    let gateway = GatewayUnderTest::start("").await;
    let response = gateway
        .client()
        .get(format!("{}/", gateway.origin()))
        .header("x-gatehouse-user", "admin")
        .header("X-Gatehouse-Roles", "admin")
        .header("x-auth-request-email", "root@example.com")
        .send()
        .await
        .unwrap();
    let echo = echoed(response).await;
    for name in [
        "x-gatehouse-user",
        "x-gatehouse-roles",
        "x-auth-request-email",
    ] {
        assert!(
            upstream_header(&echo, name).is_empty(),
            "{name} reached the upstream"
        );
    }
}

#[tokio::test]
async fn upstream_receives_exactly_the_normalised_path() {
    let gateway = GatewayUnderTest::start("").await;
    let response = gateway
        .raw_request(b"GET /a/./b/../c/%7euser?x=%2F HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(response.status(), 200, "{}", response.text);
    let body = response.text.split("\r\n\r\n").nth(1).unwrap_or("");
    let echo: serde_json::Value = serde_json::from_str(body).expect("echo JSON");
    assert_eq!(echo["target"], "/a/c/~user?x=%2F");
}

#[tokio::test]
async fn ambiguous_paths_are_rejected_with_400() {
    let gateway = GatewayUnderTest::start("").await;
    for path in [
        "/a%2Fb",
        "/a%5Cb",
        "/a%00b",
        "/%2e%2e/etc/passwd",
        "/../x",
        "/a/..;/b",
        "/%C0%AF",
        "/a%252F",
    ] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let response = gateway.raw_request(request.as_bytes()).await;
        assert_eq!(response.status(), 400, "{path}: {}", response.text);
        assert!(response.header("strict-transport-security").is_some());
    }
}

#[tokio::test]
async fn declared_body_over_the_limit_gets_413() {
    let gateway = GatewayUnderTest::start("").await;
    let response = gateway
        .client()
        .post(format!("{}/upload", gateway.origin()))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let ok = gateway
        .client()
        .post(format!("{}/upload", gateway.origin()))
        .body(vec![b'x'; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(echoed(ok).await["body_len"], 512);
}

#[tokio::test]
async fn chunked_body_over_the_limit_gets_413() {
    let gateway = GatewayUnderTest::start("").await;
    let chunk = "x".repeat(800);
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    let response = gateway.raw_request(request.as_bytes()).await;
    assert_eq!(response.status(), 413, "{}", response.text);
}

#[tokio::test]
async fn slow_upstream_gets_504() {
    let gateway = GatewayUnderTest::start("read_timeout = \"300ms\"\n").await;
    let response = gateway.get("/sleep/2000").await;
    assert_eq!(response.status(), 504);
}

#[tokio::test]
async fn slow_request_body_times_out() {
    let template = BASE_POLICY.replace(
        "shutdown_grace = \"5s\"",
        "shutdown_grace = \"5s\"\nclient_read_timeout = \"1s\"",
    );
    let gateway = GatewayUnderTest::start_with(&template, "").await;
    let started = std::time::Instant::now();
    // Declares 100 bytes, sends 10, then goes quiet.
    let response = gateway
        .raw_request(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789")
        .await;
    assert!(
        response.closed || response.status() == 408,
        "{}",
        response.text
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_ne!(response.status(), 200);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed() {
    use tokio::io::AsyncWriteExt;
    let template = BASE_POLICY.replace(
        "shutdown_grace = \"5s\"",
        "shutdown_grace = \"5s\"\nmax_connections = 2",
    );
    let gateway = GatewayUnderTest::start_with(&template, "").await;
    let config = gateway.pki.client_config(&[b"http/1.1"]);
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = gateway
            .tls_connect(config.clone(), "localhost")
            .await
            .unwrap();
        stream.write_all(request).await.unwrap();
        let response = read_until_quiet(&mut stream).await;
        assert_eq!(response.status(), 200);
        held.push(stream);
    }
    let mut third = gateway
        .tls_connect(config.clone(), "localhost")
        .await
        .unwrap();
    let _ = third.write_all(request).await;
    let refused = read_until_quiet(&mut third).await;
    assert!(
        refused.closed && refused.text.is_empty(),
        "{}",
        refused.text
    );

    drop(held.pop());
    gateway
        .metric_falls_to("gatehouse_downstream_connections", 1.0)
        .await;
    let mut fourth = gateway.tls_connect(config, "localhost").await.unwrap();
    fourth.write_all(request).await.unwrap();
    assert_eq!(read_until_quiet(&mut fourth).await.status(), 200);
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_value(&metrics, "gatehouse_downstream_connections_refused_total"),
        Some(1.0)
    );
}

#[tokio::test]
async fn request_id_is_taken_only_from_a_trusted_proxy() {
    let untrusted = GatewayUnderTest::start("").await;
    let send = |gateway: &GatewayUnderTest| {
        gateway
            .client()
            .get(format!("{}/", gateway.origin()))
            .header("x-request-id", "proxy-chosen-1")
            .send()
    };
    let echo = echoed(send(&untrusted).await.unwrap()).await;
    assert_ne!(
        upstream_header(&echo, "x-request-id"),
        vec!["proxy-chosen-1"]
    );

    let network = "[network]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[limits]";
    let trusted = GatewayUnderTest::start_with(&BASE_POLICY.replace("[limits]", network), "").await;
    let response = send(&trusted).await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "proxy-chosen-1");
    let echo = echoed(response).await;
    assert_eq!(
        upstream_header(&echo, "x-request-id"),
        vec!["proxy-chosen-1"]
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let template = BASE_POLICY.replace(
        "shutdown_grace = \"5s\"",
        "shutdown_grace = \"5s\"\nclient_read_timeout = \"1s\"",
    );
    let gateway = GatewayUnderTest::start_with(&template, "").await;
    let config = gateway.pki.client_config(&[b"http/1.1"]);
    let mut stream = gateway.tls_connect(config, "localhost").await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // read_until_quiet gives up after 1.5 s of silence; the gateway must
    // have closed the idle connection by then.
    let response = read_until_quiet(&mut stream).await;
    assert_eq!(response.status(), 200, "{}", response.text);
    assert!(response.closed, "idle keep-alive connection left open");
}
