//! The admin listener: metrics that Prometheus' own checker accepts, and
//! health endpoints, never on the public port.

use gatehouse_tests::metrics::metric_value;
use gatehouse_tests::GatewayUnderTest;

#[tokio::test]
async fn metrics_pass_promtool_and_count_requests_and_denials() {
    let gateway = GatewayUnderTest::start("").await;
    assert_eq!(gateway.get("/").await.status(), 200);
    let bad = gateway
        .raw_request(b"GET /a%2Fb HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(bad.status(), 400);

    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "gatehouse_requests_total{route=\"app\",status=\"200\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "gatehouse_denials_total{reason=\"path-encoded-separator\"}"
        ),
        Some(1.0)
    );
    assert!(metrics.contains("gatehouse_request_duration_seconds_bucket"));

    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be installed (tests/run installs Debian's prometheus)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn health_endpoints_answer_on_admin_only() {
    let gateway = GatewayUnderTest::start("").await;
    for path in ["/healthz", "/readyz"] {
        let response = reqwest::get(format!("http://{}{path}", gateway.admin))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    // On the public port /metrics is just another path for the upstream.
    let public = gateway.get("/metrics").await.text().await.unwrap();
    assert!(!public.contains("gatehouse_requests_total"));
}
