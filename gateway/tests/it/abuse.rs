//! Rate limits and brute-force protection, against the real gateway, from
//! many real source addresses (all of 127.0.0.0/8 is loopback on Linux).

use std::net::IpAddr;

use base64::Engine;

use gatehouse_tests::gateway::{hash_password, BASE_POLICY};
use gatehouse_tests::metrics::metric_value;
use gatehouse_tests::GatewayUnderTest;

const RIGHT_PASSWORD: &str = "correct horse battery staple";
const WRONG_PASSWORD: &str = "Tr0ub4dor&3-wrong";
const WRONG_API_KEY: &str = "gh_definitelyNotAValidKeyButLongEnough0123456789";

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The base policy with the given `[rate_limit]` keys instead of the
/// generous ones.
fn with_rate_limits(keys: &str) -> String {
    BASE_POLICY.replace(
        "client = \"100000/s\"\nidentity = \"100000/s\"\nlogin = \"100000/s\"",
        keys,
    )
}

fn assert_security_headers(response: &reqwest::Response) {
    for name in [
        "strict-transport-security",
        "content-security-policy",
        "x-content-type-options",
    ] {
        assert!(response.headers().contains_key(name), "{name} missing");
    }
}

#[tokio::test]
async fn wrong_passwords_lock_out_one_address_and_the_audit_log_shows_it() {
    // Per hour, not per minute: on a loaded machine the attempts below can
    // outlast a per-minute refill step and let an extra attempt through.
    let template =
        with_rate_limits("login = \"5/h\"").replace("public = true", "roles = [\"admin\"]");
    let extra = format!(
        "[roles]\nadmin = [\"*\"]\n[[basic_user]]\nname = \"alice\"\npassword_hash = \"{}\"\nroles = [\"admin\"]\n",
        hash_password(RIGHT_PASSWORD)
    );
    let g = GatewayUnderTest::start_with(&template, &extra).await;
    let attacker = g.client_from(ip("127.0.0.1"));
    let url = format!("{}/private", g.origin());
    let attempt = |client: &reqwest::Client, password: &str| {
        client
            .get(&url)
            .header("authorization", basic("alice", password))
            .send()
    };

    for n in 1..=5 {
        let response = attempt(&attacker, WRONG_PASSWORD).await.unwrap();
        assert_eq!(response.status(), 401, "attempt {n}");
    }
    let locked = attempt(&attacker, WRONG_PASSWORD).await.unwrap();
    assert_eq!(locked.status(), 429);
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&retry), "Retry-After {retry}");
    assert_eq!(locked.headers()["ratelimit-policy"], "\"login\";q=5;w=3600");
    assert!(locked.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"login\";r=0;t="));
    assert_security_headers(&locked);
    // Locked out means the right password does not help from there either,
    // and an API key guess is refused without being checked.
    assert_eq!(
        attempt(&attacker, RIGHT_PASSWORD).await.unwrap().status(),
        429
    );
    let key_guess = attacker
        .get(&url)
        .header("x-api-key", WRONG_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(key_guess.status(), 429);

    // Someone else, from another address, logs in.
    let other = g.client_from(ip("127.0.0.2"));
    assert_eq!(attempt(&other, RIGHT_PASSWORD).await.unwrap().status(), 200);

    audit_and_metrics_count_the_checked_attempts(&g).await;
    nothing_secret_reaches_the_audit_log(&g);
}

/// Five failures (the checked attempts), one rate-limit start record, and
/// the metrics to match.
async fn audit_and_metrics_count_the_checked_attempts(g: &GatewayUnderTest) {
    let failures = g.audit_events("login.failure", 5).await;
    assert_eq!(failures.len(), 5, "only checked attempts are failures");
    for failure in &failures {
        assert_eq!(failure["outcome"], "failure");
        assert_eq!(failure["client_ip"], "127.0.0.1");
        assert_eq!(failure["actor"]["method"], "basic");
        assert_eq!(failure["route"], "app");
        assert!(failure["details"]["reason"].is_string());
        assert!(failure["request_id"].is_string());
    }
    let starts = g.audit_events("rate_limit.start", 1).await;
    assert_eq!(starts.len(), 1, "one start record, not one per refusal");
    assert_eq!(starts[0]["details"]["tier"], "login");
    assert_eq!(starts[0]["client_ip"], "127.0.0.1");
    g.metric_reaches(
        "gatehouse_rate_limited_total{route=\"app\",tier=\"login\"}",
        3.0,
    )
    .await;
    // Exactly the five checked attempts count as failed logins.
    g.metric_reaches("gatehouse_login_failures_total{method=\"basic\"}", 5.0)
        .await;
    assert_eq!(
        metric_value(
            &g.metrics().await,
            "gatehouse_login_failures_total{method=\"basic\"}"
        ),
        Some(5.0)
    );
}

/// No password, API key or Authorization header reaches the audit log.
fn nothing_secret_reaches_the_audit_log(g: &GatewayUnderTest) {
    let text = std::fs::read_to_string(g.audit_path()).unwrap();
    let right_header = basic("alice", RIGHT_PASSWORD);
    for secret in [
        RIGHT_PASSWORD,
        WRONG_PASSWORD,
        WRONG_API_KEY,
        right_header.as_str(),
    ] {
        assert!(!text.contains(secret), "audit log contains {secret}");
    }
    let encoded = right_header.trim_start_matches("Basic ");
    assert!(!text.contains(encoded));
}

#[tokio::test]
async fn requests_over_the_quota_get_429_with_retry_after_and_ratelimit_headers() {
    let template = with_rate_limits("client = \"3/min\"");
    let g = GatewayUnderTest::start_with(&template, "").await;
    let client = g.client();
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = client.get(format!("{}/", g.origin())).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"client\";q=3;w=60"
        );
        remaining.push(response.headers()["ratelimit"].to_str().unwrap().to_owned());
    }
    assert!(remaining[0].starts_with("\"client\";r=2;"), "{remaining:?}");
    assert!(remaining[2].starts_with("\"client\";r=0;"), "{remaining:?}");
    let limited = client.get(format!("{}/", g.origin())).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    assert_security_headers(&limited);
    assert!(limited.headers().contains_key("x-request-id"));
    // Another address is unaffected.
    let other = g.client_from(ip("127.0.0.9"));
    assert_eq!(
        other
            .get(format!("{}/", g.origin()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    g.metric_reaches(
        "gatehouse_rate_limited_total{route=\"app\",tier=\"client\"}",
        1.0,
    )
    .await;
    let start = g.audit_events("rate_limit.start", 1).await;
    assert_eq!(start[0]["details"]["tier"], "client");
}

#[tokio::test]
async fn a_flood_from_thousands_of_addresses_keeps_tracked_keys_under_the_cap() {
    const CAP: usize = 100;
    const ADDRESSES: u32 = 2000;
    // Per hour: a per-minute refill during a slow flood would let extra
    // requests through and blur the count below.
    let template = with_rate_limits(&format!("client = \"2/h\"\nmax_tracked_keys = {CAP}"));
    let g = GatewayUnderTest::start_with(&template, "").await;
    let url = format!("{}/", g.origin());
    let mut statuses = Vec::new();
    for chunk in (0..ADDRESSES).collect::<Vec<_>>().chunks(100) {
        let mut requests = tokio::task::JoinSet::new();
        for n in chunk {
            let source = IpAddr::from([127, 2, (n >> 8) as u8, *n as u8]);
            let client = g.client_from(source);
            let url = url.clone();
            requests.spawn(async move { client.get(&url).send().await.unwrap().status().as_u16() });
        }
        statuses.extend(requests.join_all().await);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        ok + limited,
        ADDRESSES as usize,
        "only 200 or 429: {statuses:?}"
    );
    // The first CAP addresses were tracked; the rest shared one bucket.
    assert!(ok <= CAP + 2, "{ok} addresses got through");
    assert!(ok >= CAP, "{ok} addresses got through");
    let metrics = g.metrics().await;
    let tracked = metric_value(
        &metrics,
        "gatehouse_rate_limit_tracked_keys{tier=\"client\"}",
    )
    .expect("tracked keys exported");
    assert!(tracked <= (CAP + 1) as f64, "tracking {tracked} keys");
    assert!(tracked >= CAP as f64, "tracking {tracked} keys");
}
