//! The scheduler's keys follow the gateway's: a restarted gateway with a
//! new signing key is accepted at once, a flood of made-up key ids costs
//! the gateway a fetch every few seconds, `/readyz` says when the keys are
//! stale, and the JWKS may be fetched over HTTPS from a private CA.
//!
//! The scheduler fetches the gateway's JWKS through [`JwksRelay`], a real
//! HTTP server that forwards to the gateway's admin listener and counts
//! the fetches (or answers 503 when told to).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_tests::wait_for_port;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use gatehouse_tests::scheduler::{shared_docker, OPERATOR_KEY};
use gatehouse_tests::SchedulerUnderTest;

/// Forwards `GET /<port>/jwks.json` to `http://127.0.0.1:<port>/jwks.json`
/// (the policy names the gateway's admin port as `{gw_admin}`).
struct JwksRelay {
    addr: SocketAddr,
    fetches: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
}

impl JwksRelay {
    async fn start() -> JwksRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let fetches = Arc::new(AtomicU64::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let (count, fail) = (fetches.clone(), failing.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (count, fail) = (count.clone(), fail.clone());
                tokio::spawn(relay_one(stream, count, fail));
            }
        });
        JwksRelay {
            addr,
            fetches,
            failing,
        }
    }

    /// The `[scheduler]` line that fetches through this relay.
    fn policy_line(&self) -> String {
        format!(
            "gateway_jwks = \"http://{}/{{gw_admin}}/jwks.json\"\n",
            self.addr
        )
    }

    fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn relay_one(
    mut stream: tokio::net::TcpStream,
    count: Arc<AtomicU64>,
    fail: Arc<AtomicBool>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    count.fetch_add(1, Ordering::SeqCst);
    let head = String::from_utf8_lossy(&head);
    let port = head
        .strip_prefix("GET /")
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse::<u16>().ok());
    let body = match (port, fail.load(Ordering::SeqCst)) {
        (Some(port), false) => reqwest::get(format!("http://127.0.0.1:{port}/jwks.json"))
            .await
            .ok()
            .filter(|r| r.status() == 200),
        _ => None,
    };
    let response = match body {
        Some(r) => {
            let text = r.text().await.unwrap_or_default();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            )
        }
        None => {
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .to_owned()
        }
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn gateway_jwks(stack: &SchedulerUnderTest) -> String {
    reqwest::get(format!("http://{}/jwks.json", stack.gw_admin))
        .await
        .expect("gateway JWKS")
        .text()
        .await
        .expect("text")
}

async fn readyz(stack: &SchedulerUnderTest) -> (u16, String) {
    let r = reqwest::get(format!("http://{}/readyz", stack.sched_admin))
        .await
        .expect("readyz");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restarted_with_a_new_key_is_followed_at_once() {
    let relay = JwksRelay::start().await;
    let mut stack =
        SchedulerUnderTest::start_on(&shared_docker().host(), &relay.policy_line(), "").await;
    assert_eq!(stack.get(OPERATOR_KEY, "/api/jobs").await.0, 200);
    let old_key = gateway_jwks(&stack).await;
    let fetched_before = relay.fetches();

    let restarted = Instant::now();
    stack.restart_gateway();
    for addr in [stack.https, stack.gw_admin] {
        wait_for_port(addr, Duration::from_secs(15)).expect("the gateway listens again");
    }
    let listening = restarted.elapsed();
    // The first requests through the new gateway, all at once.
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (stack.client(), stack.url("/api/jobs"));
            tokio::spawn(async move {
                let r = client
                    .get(url)
                    .header("x-api-key", OPERATOR_KEY)
                    .send()
                    .await
                    .expect("GET through the new gateway");
                (r.status().as_u16(), restarted.elapsed())
            })
        })
        .collect();
    let mut first_ok = Duration::MAX;
    for call in calls {
        let (status, at) = call.await.expect("task");
        assert_eq!(
            status,
            200,
            "refused after the gateway restart:\n{}",
            stack.scheduler_log()
        );
        first_ok = first_ok.min(at);
    }
    assert_ne!(
        gateway_jwks(&stack).await,
        old_key,
        "the gateway kept its key"
    );
    // One fetch, shared by the concurrent requests with the new key id.
    assert_eq!(relay.fetches() - fetched_before, 1);
    eprintln!(
        "gateway restart: listening after {listening:?}, first 200 through it after {first_ok:?}"
    );
}

/// A token naming key id `kid`; the scheduler looks the kid up before it
/// checks any signature, so this one's (a fixed test key) never matters.
fn made_up_token(kid: &str) -> String {
    // RFC 8032 test vector 1 as PKCS#8.
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c,
        0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae,
        0x7f, 0x60,
    ]);
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    let claims = serde_json::json!({"sub": "mallory", "method": "GET", "path": "/api/jobs"});
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&der)).expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_key_ids_costs_the_gateway_a_fetch_every_few_seconds() {
    let relay = JwksRelay::start().await;
    let stack =
        SchedulerUnderTest::start_on(&shared_docker().host(), &relay.policy_line(), "").await;
    let fetched_before = relay.fetches();
    let started = Instant::now();
    let flood = Duration::from_secs(7);
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let url = format!("http://{}/api/jobs", stack.sched);
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut sent = 0u32;
                while started.elapsed() < flood {
                    let r = client
                        .get(&url)
                        .header(
                            "x-gatehouse-assertion",
                            made_up_token(&format!("kid-{w}-{sent}")),
                        )
                        .send()
                        .await
                        .expect("GET the scheduler");
                    assert_eq!(r.status(), 401);
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let mut sent = 0;
    for w in workers {
        sent += w.await.expect("worker");
    }
    let fetches = relay.fetches() - fetched_before;
    let allowed = 1 + started.elapsed().as_secs() / 5;
    eprintln!("{sent} requests with made-up key ids in {flood:?}: {fetches} JWKS fetches");
    assert!(sent > 100, "only {sent} requests sent");
    assert!(
        (1..=allowed).contains(&fetches),
        "{fetches} fetches for {sent} made-up key ids (at most {allowed})"
    );
    // The gateway's own requests are unharmed.
    assert_eq!(stack.get(OPERATOR_KEY, "/api/jobs").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_the_keys_are_stale_and_recovers() {
    let relay = JwksRelay::start().await;
    let extra = format!("{}gateway_jwks_refresh = \"1s\"\n", relay.policy_line());
    let stack = SchedulerUnderTest::start_on(&shared_docker().host(), &extra, "").await;
    assert_eq!(readyz(&stack).await.0, 200);

    relay.failing.store(true, Ordering::SeqCst);
    let failing_since = Instant::now();
    let (status, body) = loop {
        let (status, body) = readyz(&stack).await;
        if status != 200 || failing_since.elapsed() > Duration::from_secs(15) {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("gateway_keys: the gateway's keys are stale")
            && body.contains("answered 503"),
        "{body}"
    );
    // Three refresh intervals of failures, not the first one.
    assert!(failing_since.elapsed() >= Duration::from_secs(2), "{body}");

    relay.failing.store(false, Ordering::SeqCst);
    let recovering = Instant::now();
    while readyz(&stack).await.0 != 200 {
        assert!(
            recovering.elapsed() < Duration::from_secs(10),
            "still not ready: {}",
            readyz(&stack).await.1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_is_fetched_over_https_trusting_only_the_configured_ca() {
    let extra = "gateway_jwks = \"https://localhost:{https}/.well-known/gatehouse/jwks.json\"\n\
                 gateway_jwks_ca = \"{dir}/ca.pem\"\n";
    let stack = SchedulerUnderTest::start_on(&shared_docker().host(), extra, "").await;
    // Ready means the keys came over HTTPS; requests verify with them.
    assert_eq!(stack.get(OPERATOR_KEY, "/api/jobs").await.0, 200);

    // The same URL is refused by a client with the system roots only.
    let url = url::Url::parse(&stack.url("/.well-known/gatehouse/jwks.json")).expect("url");
    let system_roots = gatehouse_scheduler::auth::jwks_client(None).expect("client");
    let refused = gatehouse_scheduler::auth::fetch_keys(&system_roots, &url).await;
    assert!(
        refused.is_err(),
        "a private CA was trusted without gateway_jwks_ca"
    );
    let ca = std::fs::read(stack.dir().join("ca.pem")).expect("CA");
    let pinned = gatehouse_scheduler::auth::jwks_client(Some(&ca)).expect("client");
    assert!(gatehouse_scheduler::auth::fetch_keys(&pinned, &url)
        .await
        .is_ok());
}
