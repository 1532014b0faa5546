//! Gateway replicas sharing one Redis ([shared_state]): one quota across
//! them, what each does while Redis is down, and the way back. Real
//! redis-server, two real gateway processes.

use std::net::IpAddr;
use std::time::Duration;

use gatehouse_tests::gateway::BASE_POLICY;
use gatehouse_tests::metrics::metric_value;
use gatehouse_tests::redis::Redis;
use gatehouse_tests::GatewayUnderTest;

/// Five requests an hour per client address, across the cluster.
fn policy() -> String {
    BASE_POLICY.replace("client = \"100000/s\"", "client = \"5/h\"")
}

fn shared(redis: &Redis, extra: &str) -> String {
    format!("\n[shared_state]\nredis = \"{}\"\n{extra}", redis.url())
}

async fn get_from(gateway: &GatewayUnderTest, source: [u8; 4]) -> reqwest::Response {
    gateway
        .client_from(IpAddr::from(source))
        .get(format!("{}/", gateway.origin()))
        .send()
        .await
        .expect("request")
}

async fn status_from(gateway: &GatewayUnderTest, source: [u8; 4]) -> u16 {
    get_from(gateway, source).await.status().as_u16()
}

async fn statuses(gateway: &GatewayUnderTest, source: [u8; 4], n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(status_from(gateway, source).await);
    }
    out
}

async fn metric(gateway: &GatewayUnderTest, series: &str) -> Option<f64> {
    metric_value(&gateway.metrics().await, series)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_one_quota_and_fall_back_while_redis_is_down() {
    let mut redis = Redis::start();
    let a = GatewayUnderTest::start_with(&policy(), &shared(&redis, "")).await;
    let b = GatewayUnderTest::start_with(&policy(), &shared(&redis, "")).await;

    // Five an hour in all: three through A, then B has two left.
    let client = [127, 0, 0, 21];
    assert_eq!(statuses(&a, client, 3).await, [200, 200, 200]);
    assert_eq!(statuses(&b, client, 3).await, [200, 200, 429]);
    let refused = get_from(&b, client).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        status_from(&a, client).await,
        429,
        "A counts B's requests too"
    );
    assert_eq!(metric(&a, "gatehouse_shared_state_up").await, Some(1.0));

    // Redis down: each replica limits on its own (the default), and says so.
    redis.stop();
    let client = [127, 0, 0, 22];
    assert_eq!(
        statuses(&a, client, 6).await,
        [200, 200, 200, 200, 200, 429]
    );
    assert_eq!(
        statuses(&b, client, 5).await,
        [200; 5],
        "B's own quota is whole"
    );
    assert_eq!(metric(&a, "gatehouse_shared_state_up").await, Some(0.0));
    assert!(metric(&a, "gatehouse_shared_state_unavailable_total")
        .await
        .is_some_and(|n| n >= 1.0));
    let down = a.audit_events("shared_state.down", 1).await;
    assert_eq!(down[0]["outcome"], "failure", "{down:?}");
    assert!(down[0]["details"]["meanwhile"]
        .as_str()
        .is_some_and(|m| m.contains("own limits")));

    // Back (empty, as after a crash): within a probe interval the cluster's
    // quota holds again, without a restart.
    redis.restart();
    let client = [127, 0, 0, 23];
    let mut recovered = false;
    // Each probe from a new address: this replica's own limit (checked
    // first) must not stop the request before it reaches Redis.
    for probe in 0..50u8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status_from(&a, [127, 0, 1, probe]).await;
        if metric(&a, "gatehouse_shared_state_up").await == Some(1.0) {
            recovered = true;
            break;
        }
    }
    assert!(
        recovered,
        "A never saw Redis again:\n{}",
        a.process.log_text()
    );
    // B probes on its own next request; give it one that may be local.
    for probe in 0..50u8 {
        status_from(&b, [127, 0, 2, probe]).await;
        if metric(&b, "gatehouse_shared_state_up").await == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(statuses(&a, client, 3).await, [200, 200, 200]);
    assert_eq!(statuses(&b, client, 3).await, [200, 200, 429]);
    let up = a.audit_events("shared_state.up", 1).await;
    assert_eq!(up[0]["outcome"], "info", "{up:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refuse_mode_answers_503_while_redis_is_down() {
    let mut redis = Redis::start();
    let gateway = GatewayUnderTest::start_with(
        &policy(),
        &shared(
            &redis,
            "when_unavailable = \"refuse\"\ntimeout = \"200ms\"\n",
        ),
    )
    .await;
    let client = [127, 0, 0, 31];
    assert_eq!(status_from(&gateway, client).await, 200);
    redis.stop();
    let response = get_from(&gateway, client).await;
    assert_eq!(response.status(), 503);
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "gatehouse_denials_total{reason=\"shared-state-unavailable\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}
