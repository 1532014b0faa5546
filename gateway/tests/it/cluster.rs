//! Two gateway replicas behind a real HAProxy (TCP mode, `send-proxy-v2`),
//! sharing one real Redis, with a real OIDC provider: what one replica
//! learns (a lockout, a logout, a user logged out everywhere, a login flow
//! used) holds on the other, and both see the client's own address.
//!
//! Lockouts and logouts reach the other replica by pub/sub, not by a
//! lookup per request, so the checks below wait for them (a bounded poll)
//! and print how long they took.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::header::SET_COOKIE;
use serde_json::json;
use sha2::{Digest, Sha256};

use gatehouse_tests::gateway::BASE_POLICY;
use gatehouse_tests::haproxy::Balancer;
use gatehouse_tests::idp::{location, oidc_policy, walk_provider};
use gatehouse_tests::redis::Redis;
use gatehouse_tests::upstream::{echoed, upstream_header};
use gatehouse_tests::{free_port, GatewayUnderTest, Idp};

const API_KEY: &str = "gh_cluster-test-key-0123456789abcdef";
const SESSION_KEY: &str = "a-session-key-for-tests-that-is-long-enough-0123456789";
/// The balancer's source address, the only one the replicas trust for
/// PROXY headers.
const BALANCER: [u8; 4] = [127, 0, 0, 9];
/// How long news may take to reach the other replica before a check fails.
const PROPAGATION: Duration = Duration::from_secs(3);

struct Cluster {
    redis: Redis,
    idp: Idp,
    a: GatewayUnderTest,
    b: GatewayUnderTest,
    balancer: Balancer,
}

impl Cluster {
    async fn start() -> Cluster {
        Self::start_with_identity_rate("100000/s").await
    }

    /// With the `identity` tier at `rate` (one quota for the cluster).
    async fn start_with_identity_rate(rate: &str) -> Cluster {
        let redis = Redis::start();
        let idp_port = free_port();
        let issuer = format!("http://127.0.0.1:{idp_port}");
        // Both replicas answer for the balancer's first entry.
        let (entry_a, entry_b) = (free_port(), free_port());
        let template = BASE_POLICY
            .replace(
                "public_origin = \"https://localhost:{https}\"",
                &format!("public_origin = \"https://localhost:{entry_a}\""),
            )
            .replace("public = true", "roles = [\"viewer\"]")
            .replace("login = \"100000/s\"", "login = \"3/h\"")
            .replace("identity = \"100000/s\"", &format!("identity = \"{rate}\""))
            .replace(
                "[limits]",
                "[network]\nproxy_protocol_from = [\"127.0.0.9/32\"]\n\n[limits]",
            );
        let extra = format!(
            r#"
[roles]
viewer = ["site:view"]

[[api_key]]
name = "ci"
sha256 = "{key}"
roles = ["viewer"]

[session]
keys = ["{SESSION_KEY}"]
idle_timeout = "10m"
lifetime = "1h"

[shared_state]
redis = "{redis}"
{oidc}"#,
            key = hex::encode(Sha256::digest(API_KEY.as_bytes())),
            redis = redis.url(),
            oidc = oidc_policy(&issuer, "", r#"default_roles = ["viewer"]"#),
        );
        let a = GatewayUnderTest::start_with(&template, &extra).await;
        let b = GatewayUnderTest::start_with(&template, &extra).await;
        let balancer = Balancer::start_on(
            a.pki.dir.path(),
            &[(entry_a, a.https), (entry_b, b.https)],
            IpAddr::from(BALANCER),
        );
        let idp = Idp::start_for_gateway(
            idp_port,
            &format!("https://localhost:{entry_a}"),
            json!({"alice": {"email": "alice@example.com", "email_verified": true}}),
        )
        .expect("the test IdP");
        Cluster {
            redis,
            idp,
            a,
            b,
            balancer,
        }
    }

    /// The public origin, which is replica A's entry.
    fn origin(&self) -> String {
        format!("https://localhost:{}", self.balancer.ports[0])
    }

    /// A client of one replica through the balancer, connecting from
    /// `source`; with a cookie jar for the login walk when `cookies`.
    fn client(
        &self,
        replica: Replica,
        source: [u8; 4],
        cookies: bool,
    ) -> (reqwest::Client, String) {
        let (gateway, port) = match replica {
            Replica::A => (&self.a, self.balancer.ports[0]),
            Replica::B => (&self.b, self.balancer.ports[1]),
        };
        let mut builder = gateway
            .pki
            .https_client(SocketAddr::from(([127, 0, 0, 1], port)))
            .local_address(IpAddr::from(source))
            .timeout(Duration::from_secs(15));
        if cookies {
            builder = builder.cookie_store(true);
        }
        (
            builder.build().expect("client"),
            format!("https://localhost:{port}"),
        )
    }

    /// Logs in as alice through replica A; returns the session cookie and
    /// the jar client that holds it.
    async fn login(&self, source: [u8; 4]) -> (String, reqwest::Client) {
        let (client, origin) = self.client(Replica::A, source, true);
        let start = client
            .get(format!("{origin}/.gatehouse/login?rd=%2F"))
            .send()
            .await
            .expect("login starts");
        assert_eq!(start.status(), 302);
        let callback = walk_provider(
            &client,
            &self.idp.issuer,
            &self.origin(),
            &location(start.headers()),
            "alice",
        )
        .await;
        let done = client.get(callback).send().await.expect("callback");
        assert_eq!(done.status(), 302, "{:?}", done.text().await);
        (session_cookie(&done), client)
    }
}

#[derive(Clone, Copy)]
enum Replica {
    A,
    B,
}

fn session_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-gatehouse="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

async fn status(client: &reqwest::Client, origin: &str, header: (&str, &str)) -> u16 {
    client
        .get(format!("{origin}/app"))
        .header(header.0, header.1)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Polls until `check` answers `want`, for at most [`PROPAGATION`];
/// returns how long that took.
async fn within<F, Fut>(what: &str, want: u16, check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    within_for(PROPAGATION, what, want, check).await
}

async fn within_for<F, Fut>(bound: Duration, what: &str, want: u16, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let started = Instant::now();
    loop {
        let got = check().await;
        if got == want {
            let took = started.elapsed();
            eprintln!("{what}: {took:?}");
            return took;
        }
        assert!(
            started.elapsed() < bound,
            "{what}: still {got} after {bound:?}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_sees_the_clients_own_address_through_either_replica() {
    let cluster = Cluster::start().await;
    for replica in [Replica::A, Replica::B] {
        let (client, origin) = cluster.client(replica, [127, 0, 0, 51], false);
        let response = client
            .get(format!("{origin}/app"))
            .header("x-api-key", API_KEY)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        let echo = echoed(response).await;
        assert_eq!(
            upstream_header(&echo, "x-forwarded-for"),
            vec!["127.0.0.51"]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_quota_holds_across_both_replicas_behind_the_balancer() {
    let cluster = Cluster::start_with_identity_rate("5/h").await;
    let mut seen = Vec::new();
    // Three through A, then three through B: five in all for this key.
    for replica in [
        Replica::A,
        Replica::A,
        Replica::A,
        Replica::B,
        Replica::B,
        Replica::B,
    ] {
        let (client, origin) = cluster.client(replica, [127, 0, 0, 52], false);
        seen.push(status(&client, &origin, ("x-api-key", API_KEY)).await);
    }
    assert_eq!(seen, [200, 200, 200, 200, 200, 429]);
    let (client, origin) = cluster.client(Replica::A, [127, 0, 0, 52], false);
    assert_eq!(
        status(&client, &origin, ("x-api-key", API_KEY)).await,
        429,
        "A counts what B let through"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_count_across_replicas_and_the_lockout_holds_on_both() {
    let cluster = Cluster::start().await;
    let guesser = [127, 0, 0, 52];
    let (a, origin_a) = cluster.client(Replica::A, guesser, false);
    let (b, origin_b) = cluster.client(Replica::B, guesser, false);
    let wrong = ("x-api-key", "gh_wrong-key-0000000000000000000000");
    // Three failures allowed an hour, two of them on A, one on B: neither
    // replica alone has seen three.
    assert_eq!(status(&a, &origin_a, wrong).await, 401);
    assert_eq!(status(&a, &origin_a, wrong).await, 401);
    assert_eq!(status(&b, &origin_b, wrong).await, 401);

    // The right key from that address is refused on both, A included,
    // which counted only two failures itself.
    let right = ("x-api-key", API_KEY);
    within("lockout reached A", 429, || status(&a, &origin_a, right)).await;
    assert_eq!(status(&b, &origin_b, right).await, 429);
    // Another address is not locked out.
    let (other, _) = cluster.client(Replica::A, [127, 0, 0, 53], false);
    assert_eq!(status(&other, &origin_a, right).await, 200);

    let started = cluster.b.audit_events("rate_limit.start", 1).await;
    assert_eq!(started[0]["details"]["cause"], "cluster-login-failures");
    assert_eq!(started[0]["details"]["key"], "127.0.0.52", "{started:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_on_one_replica_ends_the_session_on_the_other() {
    let cluster = Cluster::start().await;
    let browser = [127, 0, 0, 54];
    let (cookie, jar_client) = cluster.login(browser).await;
    let (b, origin_b) = cluster.client(Replica::B, browser, false);
    let session = ("cookie", cookie.as_str());
    assert_eq!(
        status(&b, &origin_b, session).await,
        200,
        "B accepts A's session"
    );

    let out = jar_client
        .get(format!("{}/.gatehouse/logout", cluster.origin()))
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 302);
    within("logout reached B", 401, || status(&b, &origin_b, session)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_while_redis_is_down_reaches_the_other_replica_when_it_returns() {
    let mut cluster = Cluster::start().await;
    let browser = [127, 0, 0, 57];
    let (cookie, jar_client) = cluster.login(browser).await;
    let (a, origin_a) = cluster.client(Replica::A, browser, false);
    let (b, origin_b) = cluster.client(Replica::B, browser, false);
    let session = ("cookie", cookie.as_str());
    assert_eq!(status(&b, &origin_b, session).await, 200);

    cluster.redis.stop();
    let out = jar_client
        .get(format!("{}/.gatehouse/logout", cluster.origin()))
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 302, "logout works without Redis");
    assert_eq!(
        status(&a, &origin_a, session).await,
        401,
        "A ended it at once"
    );

    // Back, empty (as after a crash): A writes what waited, B hears it.
    cluster.redis.restart();
    within_for(
        Duration::from_secs(10),
        "the waiting logout reached B",
        401,
        || status(&b, &origin_b, session),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_user_ends_every_session_on_every_replica_and_is_audited_by_each() {
    let cluster = Cluster::start().await;
    let browser = [127, 0, 0, 55];
    let (first, _) = cluster.login(browser).await;
    let (second, _) = cluster.login(browser).await;
    let (a, origin_a) = cluster.client(Replica::A, browser, false);
    let (b, origin_b) = cluster.client(Replica::B, browser, false);
    for cookie in [&first, &second] {
        assert_eq!(status(&b, &origin_b, ("cookie", cookie)).await, 200);
    }

    let output = Command::new(gatehouse_tests::binaries::gateway())
        .arg("logout-user")
        .arg("--policy")
        .arg(&cluster.a.policy_path)
        .args(["oidc:test-idp:alice", "--by", "test-operator"])
        .output()
        .expect("logout-user runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("2 gateway replica(s) heard it"), "{stdout}");

    for cookie in [&first, &second] {
        within("logout-user reached A", 401, || {
            status(&a, &origin_a, ("cookie", cookie))
        })
        .await;
        within("logout-user reached B", 401, || {
            status(&b, &origin_b, ("cookie", cookie))
        })
        .await;
    }
    for replica in [&cluster.a, &cluster.b] {
        let records = replica.audit_events("sessions.revoked", 1).await;
        assert_eq!(records[0]["actor"]["subject"], "test-operator");
        assert_eq!(records[0]["actor"]["method"], "cli");
        assert_eq!(records[0]["details"]["user"], "oidc:test-idp:alice");
    }

    // Sessions issued after that second are not affected.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (later, _) = cluster.login(browser).await;
    assert_eq!(status(&b, &origin_b, ("cookie", &later)).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_callback_completes_once_whichever_replica_it_reaches() {
    let cluster = Cluster::start().await;
    let browser = [127, 0, 0, 56];
    let (client, origin) = cluster.client(Replica::A, browser, true);
    let start = client
        .get(format!("{origin}/.gatehouse/login?rd=%2F"))
        .send()
        .await
        .expect("login starts");
    let flow = start
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-gatehouse-flow="))
        .and_then(|c| c.split(';').next())
        .expect("a flow cookie")
        .to_owned();
    let callback = walk_provider(
        &client,
        &cluster.idp.issuer,
        &cluster.origin(),
        &location(start.headers()),
        "alice",
    )
    .await;
    assert_eq!(client.get(&callback).send().await.unwrap().status(), 302);

    // The same callback with a copy of the flow cookie, at B.
    let (b, origin_b) = cluster.client(Replica::B, browser, false);
    let replay = callback.replace(&cluster.origin(), &origin_b);
    let response = b
        .get(&replay)
        .header("cookie", &flow)
        .send()
        .await
        .expect("replay");
    assert_eq!(response.status(), 400);
    let failures = cluster.b.audit_events("login.failure", 1).await;
    assert_eq!(failures[0]["details"]["reason"], "login-flow-reused");
}
