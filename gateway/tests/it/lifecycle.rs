//! Reload, startup failures, the `check` and `certs dev` commands, and
//! graceful shutdown.

use std::process::Command;
use std::time::{Duration, Instant};

use gatehouse_tests::binaries;
use gatehouse_tests::gateway::BASE_POLICY;
use gatehouse_tests::GatewayUnderTest;

const ACCEPTED: &str = "gatehouse_policy_reloads_total{outcome=\"accepted\"}";
const REJECTED: &str = "gatehouse_policy_reloads_total{outcome=\"rejected\"}";

#[tokio::test]
async fn good_reload_on_sighup_applies_the_new_policy() {
    let gateway = GatewayUnderTest::start("").await;
    assert_eq!(gateway.get("/").await.headers()["x-frame-options"], "DENY");
    gateway.rewrite_policy(
        BASE_POLICY,
        "[route.headers]\nx_frame_options = \"SAMEORIGIN\"\n",
    );
    gateway.process.signal("HUP").unwrap();
    gateway.metric_reaches(ACCEPTED, 1.0).await;
    assert_eq!(
        gateway.get("/").await.headers()["x-frame-options"],
        "SAMEORIGIN"
    );
}

#[tokio::test]
async fn policy_file_change_triggers_reload() {
    let gateway = GatewayUnderTest::start("").await;
    gateway.rewrite_policy(
        &BASE_POLICY.replace("path = \"/\"", "path = \"/moved\""),
        "",
    );
    gateway.metric_reaches(ACCEPTED, 1.0).await;
    assert_eq!(gateway.get("/").await.status(), 404);
    assert_eq!(gateway.get("/moved").await.status(), 200);
}

#[tokio::test]
async fn bad_reload_keeps_old_policy() {
    let gateway = GatewayUnderTest::start("").await;
    gateway.rewrite_policy(BASE_POLICY, "bogus_key = true\n");
    gateway.process.signal("HUP").unwrap();
    gateway.metric_reaches(REJECTED, 1.0).await;
    assert_eq!(gateway.get("/").await.status(), 200);
    let log = gateway
        .process
        .log_once_it_has("bogus_key", Duration::from_secs(5))
        .await;
    assert!(
        log.contains("policy.toml:"),
        "the log names file:line:col\n{log}"
    );
    assert!(log.contains("bogus_key"), "{log}");
}

#[tokio::test]
async fn reload_that_needs_a_restart_is_rejected() {
    let gateway = GatewayUnderTest::start("").await;
    let template = BASE_POLICY.replace(
        "[[tls.cert]]",
        "[tls]\nmin_version = \"1.3\"\n\n[[tls.cert]]",
    );
    gateway.rewrite_policy(&template, "");
    gateway.process.signal("HUP").unwrap();
    gateway.metric_reaches(REJECTED, 1.0).await;
    let log = gateway
        .process
        .log_once_it_has("tls.min_version cannot change", Duration::from_secs(5))
        .await;
    assert!(log.contains("tls.min_version cannot change"), "{log}");
}

fn exit_within(gateway: &mut GatewayUnderTest, timeout: Duration) -> (i32, String) {
    let status = gateway
        .process
        .wait_exit(timeout)
        .unwrap_or_else(|| panic!("still running\n{}", gateway.process.log_text()));
    (status.code().unwrap_or(-1), gateway.process.log_text())
}

#[tokio::test]
async fn startup_fails_fast_when_a_port_is_taken() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let template = BASE_POLICY.replace(
        "admin = \"127.0.0.1:{admin}\"",
        &format!("admin = \"127.0.0.1:{port}\""),
    );
    let mut gateway = GatewayUnderTest::prepare(&template, "").await;
    let (code, log) = exit_within(&mut gateway, Duration::from_secs(10));
    assert_ne!(code, 0);
    assert!(
        log.contains(&format!("cannot listen on 127.0.0.1:{port} (listen.admin)")),
        "{log}"
    );
}

#[tokio::test]
async fn startup_fails_on_an_unreadable_certificate() {
    let template = BASE_POLICY.replace("cert = \"{cert}\"", "cert = \"{dir}/missing.pem\"");
    let mut gateway = GatewayUnderTest::prepare(&template, "").await;
    let (code, log) = exit_within(&mut gateway, Duration::from_secs(10));
    assert_ne!(code, 0);
    assert!(log.contains("missing.pem"), "{log}");
}

#[tokio::test]
async fn startup_fails_on_an_invalid_policy_with_line_and_column() {
    let mut gateway = GatewayUnderTest::prepare(BASE_POLICY, "max_bdy = \"1MiB\"\n").await;
    let (code, log) = exit_within(&mut gateway, Duration::from_secs(10));
    assert_ne!(code, 0);
    let text = std::fs::read_to_string(&gateway.policy_path).unwrap();
    let line = text.lines().position(|l| l.starts_with("max_bdy")).unwrap() + 1;
    assert!(log.contains(&format!("policy.toml:{line}:1")), "{log}");
}

#[tokio::test]
async fn check_command_accepts_good_and_rejects_bad_policies() {
    let dir = tempfile::tempdir().unwrap();
    let made = Command::new(binaries::gateway())
        .args(["certs", "dev", "--out"])
        .arg(dir.path().join("certs"))
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../policies/quickstart.toml"
        ))
        .unwrap()
        .replace("../certs/dev/", "certs/"),
    )
    .unwrap();
    let ok = Command::new(binaries::gateway())
        .args(["check", "--policy"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[listen]\nhttps = \"nope\"\n").unwrap();
    let rejected = Command::new(binaries::gateway())
        .args(["check", "--policy"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!rejected.status.success());
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_then_exits() {
    let mut gateway = GatewayUnderTest::start("").await;
    let client = gateway.client();
    let url = format!("{}/sleep/1500", gateway.origin());
    let in_flight = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    // Signal only once the request's connection is open at the gateway.
    gateway
        .metric_reaches("gatehouse_downstream_connections", 1.0)
        .await;
    let signalled = Instant::now();
    gateway.process.signal("TERM").unwrap();
    let status = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(status, 200);
    let exited = gateway
        .process
        .wait_exit(Duration::from_secs(10))
        .expect("exits");
    assert!(exited.success(), "{exited:?}");
    // Grace is 5s in the test policy; draining should not wait all of it.
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "{:?}",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn reload_leaves_in_flight_requests_alone() {
    let gateway = GatewayUnderTest::start("").await;
    let client = gateway.client();
    let url = format!("{}/sleep/1000", gateway.origin());
    let in_flight = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    // The request has loaded its snapshot once it counts as in flight.
    gateway
        .metric_reaches("gatehouse_requests_in_flight", 1.0)
        .await;
    gateway.rewrite_policy(
        &BASE_POLICY.replace("path = \"/\"", "path = \"/moved\""),
        "",
    );
    gateway.process.signal("HUP").unwrap();
    gateway.metric_reaches(ACCEPTED, 1.0).await;
    assert_eq!(in_flight.await.unwrap().expect("completes"), 200);
    assert_eq!(gateway.get("/sleep/0").await.status(), 404);
}

#[tokio::test]
async fn every_request_gets_one_json_access_log_line() {
    let gateway = GatewayUnderTest::start("").await;
    let response = gateway.get("/hello").await;
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let denied = gateway
        .raw_request(b"GET /a/../.. HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(denied.status(), 400);
    let access = gateway.access_log(2).await;
    assert_eq!(access.len(), 2, "{access:?}");
    // Each worker thread writes its own buffer, so lines of requests on
    // different threads may reach the file in either order.
    let line = |status: u16| {
        access
            .iter()
            .find(|line| line["status"] == status)
            .unwrap_or_else(|| panic!("no {status} line: {access:?}"))
    };
    assert_eq!(line(200)["request_id"], request_id.as_str());
    assert_eq!(line(200)["route"], "app");
    assert_eq!(line(400)["denial"], "path-escapes-root");
}
