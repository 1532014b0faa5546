//! The assertion as an attacker on the gateway → scheduler hop sees it: a
//! relay in the middle records what the gateway sends, and the captured
//! `X-Gatehouse-Assertion` is played again straight at the scheduler.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use gatehouse_tests::metrics::metric_value;
use gatehouse_tests::postgres::Postgres;
use gatehouse_tests::scheduler::job;
use gatehouse_tests::SchedulerUnderTest;

/// A TCP relay that forwards to a target set after it starts, keeping a
/// copy of every byte sent towards the target.
struct Relay {
    port: u16,
    target: Arc<OnceLock<SocketAddr>>,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    async fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        let target = Arc::new(OnceLock::<SocketAddr>::new());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (t, s) = (target.clone(), sent.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Some(&to) = t.get() else { continue };
                tokio::spawn(relay(client, to, s.clone()));
            }
        });
        Relay { port, target, sent }
    }

    fn forward_to(&self, target: SocketAddr) {
        self.target.set(target).expect("target set once");
    }

    /// The `X-Gatehouse-Assertion` of the recorded request whose request
    /// line starts with `request_line`.
    fn assertion_of(&self, request_line: &str) -> Option<String> {
        let sent = self.sent.lock().expect("recording");
        let text = String::from_utf8_lossy(&sent);
        let start = text.find(request_line)?;
        let head = text[start..].split("\r\n\r\n").next()?;
        head.split("\r\n").find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("x-gatehouse-assertion")
                .then(|| value.trim().to_owned())
        })
    }
}

async fn relay(client: TcpStream, to: SocketAddr, sent: Arc<Mutex<Vec<u8>>>) {
    let Ok(server) = TcpStream::connect(to).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = client_read.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sent.lock().expect("recording").extend_from_slice(&buf[..n]);
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

/// The stack with the relay between the gateway and the scheduler, and a
/// job that may run any number of times at once (so an unprotected
/// scheduler would start a second run for a replay).
async fn relayed_stack() -> (Relay, SchedulerUnderTest) {
    relayed_stack_on(None, "").await
}

/// `jobs_route` adds keys to the `jobs` route.
async fn relayed_stack_on(database: Option<&str>, jobs_route: &str) -> (Relay, SchedulerUnderTest) {
    let relay = Relay::start().await;
    let stack = SchedulerUnderTest::start_relayed(
        relay.port,
        jobs_route,
        "gateway_routes = [\"jobs\"]",
        &job("hello", "command = [\"true\"]\noverlap = \"allow\""),
        database,
    )
    .await;
    relay.forward_to(stack.sched);
    (relay, stack)
}

async fn replay_run_now(stack: &SchedulerUnderTest, assertion: &str) -> reqwest::Response {
    replay_run_now_at(stack.sched, assertion).await
}

async fn replay_run_now_at(scheduler: SocketAddr, assertion: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{scheduler}/api/jobs/hello/run"))
        .header("x-gatehouse-assertion", assertion)
        .send()
        .await
        .expect("replay")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_captured_assertion_replayed_at_the_scheduler_is_refused() {
    let (relay, stack) = relayed_stack().await;

    // The operator runs the job through the gateway, via the relay.
    let first = stack.run_now("hello").await;
    let assertion = relay
        .assertion_of("POST /api/jobs/hello/run ")
        .expect("the gateway's assertion passed the relay");

    // The same bytes again, within the assertion's lifetime, straight at
    // the scheduler: the method, path and signature all still fit.
    let r = replay_run_now(&stack, &assertion).await;
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthenticated");

    // Refused as a replay, and the job did not run a second time.
    let metrics = stack.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "gatehouse_scheduler_api_denials_total{reason=\"replayed\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    let runs = stack.runs_of("hello").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["id"], first);
    assert!(
        stack.scheduler_log().contains("replayed gateway assertion"),
        "{}",
        stack.scheduler_log()
    );

    // The gateway signs every request afresh: the operator is unaffected.
    stack.wait_run(first, None, Duration::from_secs(30)).await;
    let second = stack.run_now("hello").await;
    assert_ne!(second, first);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_captured_assertion_replayed_after_a_scheduler_restart_is_refused() {
    let (relay, mut stack) = relayed_stack().await;
    let first = stack.run_now("hello").await;
    let assertion = relay
        .assertion_of("POST /api/jobs/hello/run ")
        .expect("the gateway's assertion passed the relay");
    stack.wait_run(first, None, Duration::from_secs(30)).await;

    // A new process has an empty replay cache; the assertion is still
    // within its 60 s lifetime, but older than the new process (and the
    // 5 s clock leeway).
    tokio::time::sleep(Duration::from_secs(6)).await;
    stack.kill_scheduler("TERM");
    stack.spawn_scheduler().await;
    let r = replay_run_now(&stack, &assertion).await;
    assert_eq!(r.status(), 401);
    assert!(
        stack
            .scheduler_log()
            .contains("issued before the scheduler started"),
        "{}",
        stack.scheduler_log()
    );
    let runs = stack.runs_of("hello").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_captured_assertion_replayed_at_another_scheduler_sharing_the_database_is_refused() {
    let pg = Postgres::start();
    let (relay, stack) = relayed_stack_on(Some(&pg.url()), "").await;
    let (replica, replica_api) = stack.spawn_replica().await;

    let first = stack.run_now("hello").await;
    let assertion = relay
        .assertion_of("POST /api/jobs/hello/run ")
        .expect("the gateway's assertion passed the relay");

    // The replica trusts the same gateway and has never seen this
    // assertion itself: the database says it was accepted already.
    let r = replay_run_now_at(replica_api, &assertion).await;
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthenticated");
    assert!(
        replica.log_text().contains("replayed gateway assertion"),
        "{}",
        replica.log_text()
    );
    let runs = stack.runs_of("hello").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["id"], first);
    assert_eq!(
        pg.psql("SELECT count(*) FROM accepted_assertions"),
        "2",
        "the trigger and the list"
    );
}

/// The `jobs` route's own key, shared by the gateway and the scheduler
/// through the policy they both read.
const JOBS_ROUTE_KEY: &str = "jobs-route-key-0123456789abcdefghijklmnop";

/// A route with its own `assertion_key`: the gateway's assertions to it
/// are HS256 under that key, the scheduler accepts them once, and neither
/// a replay nor one made with any other key (or the gateway's EdDSA key,
/// which the scheduler no longer takes for this route) gets through.
#[tokio::test(flavor = "multi_thread")]
async fn a_keyed_route_carries_hs256_assertions_that_are_single_use_too() {
    let (relay, stack) =
        relayed_stack_on(None, &format!("assertion_key = \"{JOBS_ROUTE_KEY}\"")).await;
    let first = stack.run_now("hello").await;
    let assertion = relay
        .assertion_of("POST /api/jobs/hello/run ")
        .expect("the gateway's assertion passed the relay");
    let header = jsonwebtoken::decode_header(&assertion).expect("a JWT");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
    assert_eq!(header.kid.as_deref(), Some("jobs"));
    // The gateway's JWKS is not needed for this route: the scheduler did
    // not fetch it.
    assert!(
        !stack
            .scheduler_log()
            .contains("loaded the gateway's assertion keys"),
        "{}",
        stack.scheduler_log()
    );

    let r = replay_run_now(&stack, &assertion).await;
    assert_eq!(r.status(), 401);
    assert!(stack.scheduler_log().contains("replayed gateway assertion"));

    // The captured claims with a fresh jti, MACed under another key.
    let mut read_only = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    read_only.insecure_disable_signature_validation();
    read_only.validate_aud = false;
    let mut forged_claims = jsonwebtoken::decode::<serde_json::Value>(
        &assertion,
        &jsonwebtoken::DecodingKey::from_secret(&[]),
        &read_only,
    )
    .expect("claims")
    .claims;
    forged_claims["jti"] = "a-fresh-jti-never-seen".into();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("jobs".into());
    let forged = jsonwebtoken::encode(
        &header,
        &forged_claims,
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-key-0123456789abcdefghijk"),
    )
    .expect("sign");
    assert_eq!(replay_run_now(&stack, &forged).await.status(), 401);
    // The same with the right key is accepted: the refusal above was the key's.
    let genuine = jsonwebtoken::encode(
        &header,
        &forged_claims,
        &jsonwebtoken::EncodingKey::from_secret(JOBS_ROUTE_KEY.as_bytes()),
    )
    .expect("sign");
    assert_eq!(replay_run_now(&stack, &genuine).await.status(), 202);

    let runs = stack.runs_of("hello").await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().any(|r| r["id"] == first));
}
