//! Slow clients and floods.
//!
//! - Password guessing: 200 concurrent wrong basic-auth passwords from one
//!   address. At most the login allowance is verified (401), the rest get
//!   429, the gateway's memory (VmHWM over the VmRSS before) grows by less
//!   than 64 MiB (argon2id takes ~19 MiB per verification), nothing reaches
//!   the upstream, and a correct password from another address works
//!   meanwhile.
//! - A full rate-limit key store (`max_tracked_keys = 100`, the minimum, and
//!   one failed login allowed per address: wrong keys from 150 addresses
//!   fill the lockout table, and the rest share the overflow key): the
//!   overflow key is never locked out, so a valid API key or password from a
//!   fresh address still works.
//! - Slow heads (`request_head_timeout = "2s"`): a head trickled a line at a
//!   time is cut off, on a new connection and on a kept-alive one.
//! - The per-address connection cap (`max_connections_per_address = 8`):
//!   the ninth connection from one address is closed at once, other
//!   addresses and the trusted proxy are not affected.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const GUESSES: usize = 200;
const ALLOWANCE: usize = 5;
const MAX_GROWTH_KIB: u64 = 64 * 1024;
const API_KEY: &str = "gh_floods-topic-api-key-0123456789abcdef0123";

fn limits(login: &str, extra: &str) -> String {
    format!("\n[rate_limit]\nclient = \"100000/s\"\nidentity = \"100000/s\"\nlogin = \"{login}\"\n{extra}\n")
}

fn guessing_policy() -> String {
    format!(
        "{}\n[roles]\nadmin = [\"*\"]\n{}{}{}{}",
        limits(&format!("{ALLOWANCE}/h"), ""),
        basic_user_owasp("alice", &["admin"]),
        basic_user_owasp("bob", &["admin"]),
        basic_user_owasp("carol", &["admin"]),
        route("app", "/", "roles = [\"admin\"]"),
    )
}

/// (VmRSS, VmHWM) of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn as_user(user: &str, password: &str) -> Vec<u8> {
    req("GET", "/")
        .h("Authorization", &basic(user, password))
        .bytes()
}

const GUESSING: [&str; 4] = [
    "200 concurrent wrong passwords: at most the allowance verified, the rest 429",
    "200 concurrent wrong passwords: memory grows by less than 64 MiB",
    "200 concurrent wrong passwords: a correct password from another address works meanwhile",
    "200 concurrent wrong passwords: only that correct request reaches the upstream",
];

async fn password_guessing() -> Report {
    let mut report = Report::new("floods");
    let target = match Target::start(&guessing_policy()).await {
        Ok(t) => t,
        Err(e) => {
            report.fail_all(&GUESSING, &e);
            return report;
        }
    };
    let sender = target.sender();
    let warm = sender
        .send(&as_user("carol", CORRECT_HORSE), Some(lo(0, 0, 3)))
        .await;
    if warm.as_ref().map(|r| r.status) != Ok(200) {
        report.fail_all(&GUESSING, &format!("warm-up login failed: {warm:?}"));
        return report;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (baseline, _) = memory(target.pid());
    target.upstream.take();
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..GUESSES {
        let sender = sender.clone();
        guesses.spawn(async move {
            let request = as_user("alice", &format!("guess-{i}"));
            sender
                .send(&request, Some(lo(0, 0, 1)))
                .await
                .map(|r| r.status)
        });
    }
    let legit = {
        let sender = sender.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            sender
                .send(&as_user("bob", CORRECT_HORSE), Some(lo(0, 0, 2)))
                .await
        })
    };
    let statuses = guesses.join_all().await;
    let legit = legit.await.expect("legit request");
    let (_, peak) = memory(target.pid());
    judge_guessing(
        &mut report,
        &statuses,
        peak.saturating_sub(baseline),
        baseline,
        &legit,
    );
    let received = target.upstream.settle(SETTLE).await;
    report.record(
        GUESSING[3],
        Upstream::Exactly(seen("GET", "/")).check(&received),
    );
    report
}

fn judge_guessing(
    report: &mut Report,
    statuses: &[Result<u16, String>],
    growth: u64,
    baseline: u64,
    legit: &Result<H1Response, String>,
) {
    let verified = statuses.iter().filter(|s| **s == Ok(401)).count();
    let limited = statuses.iter().filter(|s| **s == Ok(429)).count();
    // The figures the issue asks for, printed whether or not they hold.
    eprintln!(
        "attack/floods guessing: {verified} verified (401), {limited} refused (429), \
         memory grew {} KiB over {} KiB",
        growth, baseline
    );
    report.record(
        GUESSING[0],
        if verified <= ALLOWANCE && verified + limited == GUESSES {
            Ok(())
        } else {
            let others: Vec<_> = statuses
                .iter()
                .filter(|s| !matches!(s, Ok(401) | Ok(429)))
                .take(3)
                .collect();
            Err(format!(
                "{verified} got 401, {limited} got 429, others e.g. {others:?}"
            ))
        },
    );
    report.record(
        GUESSING[1],
        if growth < MAX_GROWTH_KIB {
            Ok(())
        } else {
            Err(format!(
                "VmHWM {} MiB over a VmRSS of {} MiB before",
                growth / 1024,
                baseline / 1024
            ))
        },
    );
    report.record(
        GUESSING[2],
        match legit {
            Ok(r) if r.status == 200 => Ok(()),
            other => Err(format!("{:?}", other.as_ref().map(H1Response::summary))),
        },
    );
}

fn store_policy() -> String {
    format!(
        "{}\n[roles]\nviewer = [\"site:view\"]\n{}{}{}",
        limits("1/h", "max_tracked_keys = 100"),
        api_key("ci", API_KEY, &["viewer"]),
        basic_user("dave", &["viewer"]),
        route("app", "/", "roles = [\"viewer\"]"),
    )
}

const STORE: [&str; 3] = [
    "store flood: wrong keys from 150 addresses get 401 or 429",
    "store flood: a valid API key from a fresh address works",
    "store flood: a correct password from a fresh address works",
];

async fn store_flood() -> Report {
    let mut report = Report::new("floods");
    let target = match Target::start(&store_policy()).await {
        Ok(t) => t,
        Err(e) => {
            report.fail_all(&STORE, &e);
            return report;
        }
    };
    let sender = target.sender();
    let mut statuses = Vec::new();
    for chunk in (1..=150u8).collect::<Vec<_>>().chunks(30) {
        let mut flood = tokio::task::JoinSet::new();
        for n in chunk {
            let sender = sender.clone();
            let from = lo(3, 0, *n);
            flood.spawn(async move {
                let request = req("GET", "/")
                    .h("X-API-Key", "gh_not-a-key-0123456789abcdef0123456789ab")
                    .bytes();
                sender.send(&request, Some(from)).await.map(|r| r.status)
            });
        }
        statuses.extend(flood.join_all().await);
    }
    let odd: Vec<_> = statuses
        .iter()
        .filter(|s| !matches!(s, Ok(401) | Ok(429)))
        .collect();
    report.record(
        STORE[0],
        if odd.is_empty() {
            Ok(())
        } else {
            Err(format!("{odd:?}"))
        },
    );
    target.upstream.take();
    let fresh = [
        (
            STORE[1],
            req("GET", "/").h("X-API-Key", API_KEY).bytes(),
            lo(4, 0, 1),
        ),
        (STORE[2], as_user("dave", CORRECT_HORSE), lo(4, 0, 2)),
    ];
    for (name, request, from) in fresh {
        let v = vector(name, request)
            .from(from)
            .status(200)
            .reaches(seen("GET", "/"));
        let outcome = match sender.send(&v.request, v.from).await {
            Ok(response) => target.judge(&v.expect, &response).await,
            Err(e) => Err(e),
        };
        report.record(name, outcome);
    }
    report
}

fn slow_policy() -> String {
    format!(
        "{NO_RATE_LIMITS}\n[network]\ntrusted_proxies = [\"127.0.0.7/32\"]\n\n[limits]\nrequest_head_timeout = \"2s\"\nmax_connections_per_address = 8\n{}",
        route("site", "/", "public = true"),
    )
}

/// Trickles header lines (one every 400 ms, for up to 8 s) after
/// `first`. Returns when the gateway closed, measured from the moment the
/// trickle started, and what it sent meanwhile.
async fn trickle<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    first: &[u8],
) -> (Option<Duration>, Vec<u8>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let _ = stream.write_all(first).await;
    let mut buf = [0u8; 4096];
    for line in 0..20 {
        let tick = tokio::time::sleep(Duration::from_millis(400));
        tokio::pin!(tick);
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return (Some(started.elapsed()), received),
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                },
                _ = &mut tick => break,
            }
        }
        if stream
            .write_all(format!("X-Slow-{line}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            return (Some(started.elapsed()), received);
        }
    }
    (None, received)
}

fn cut_off(closed: Option<Duration>, received: &[u8]) -> Result<(), String> {
    let answered = String::from_utf8_lossy(received).contains(" 200 ");
    match closed {
        Some(after)
            if after >= Duration::from_millis(1500)
                && after <= Duration::from_secs(4)
                && !answered =>
        {
            Ok(())
        }
        Some(after) => Err(format!("closed after {after:?}, answered: {answered}")),
        None => Err("still open after 8 s of trickling".to_owned()),
    }
}

async fn slow_new_connection(target: &Target) -> Result<(), String> {
    let mut stream = target.sender().connect(None).await?;
    let (closed, received) =
        trickle(&mut stream, b"GET /slow HTTP/1.1\r\nHost: localhost\r\n").await;
    cut_off(closed, &received)
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A connection from `from` that has completed one request and is kept
/// alive (so the head deadline no longer runs on it).
async fn kept_alive(target: &Target, from: std::net::IpAddr, path: &str) -> Result<Tls, String> {
    let mut stream = target.sender().connect(Some(from)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.ends_with(b"recorded\n") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => response.extend_from_slice(&buf[..n]),
            other => return Err(format!("response on a kept-alive connection: {other:?}")),
        }
    }
    Ok(stream)
}

async fn slow_second_head(target: &Target) -> Result<(), String> {
    let mut stream = kept_alive(target, lo(0, 0, 4), "/first").await?;
    let (closed, received) =
        trickle(&mut stream, b"GET /second HTTP/1.1\r\nHost: localhost\r\n").await;
    cut_off(closed, &received)
}

/// Whether a new connection from `from` is refused (closed at once).
async fn refused_from(target: &Target, from: std::net::IpAddr) -> bool {
    match target.sender().connect(Some(from)).await {
        Err(_) => true,
        Ok(mut stream) => {
            let _ = stream
                .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await;
            let mut buf = [0u8; 64];
            matches!(
                tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await,
                Ok(Ok(0)) | Ok(Err(_))
            )
        }
    }
}

async fn connection_cap(target: &Target) -> Result<(), String> {
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(kept_alive(target, lo(0, 0, 5), "/held").await?);
    }
    let refused = refused_from(target, lo(0, 0, 5)).await;
    let other = kept_alive(target, lo(0, 0, 6), "/other").await.map(|_| ());
    drop(held);
    match (refused, other) {
        (true, Ok(())) => Ok(()),
        (refused, other) => Err(format!(
            "ninth refused: {refused}; another address: {other:?}"
        )),
    }
}

async fn trusted_proxy_exempt(target: &Target) -> Result<(), String> {
    let mut held = Vec::new();
    for i in 0..12 {
        let stream = kept_alive(target, lo(0, 0, 7), "/proxied")
            .await
            .map_err(|e| format!("connection {i}: {e}"))?;
        held.push(stream);
    }
    Ok(())
}

const SLOW: [&str; 5] = [
    "a head trickled a line at a time is cut off by request_head_timeout",
    "a second head trickled on a kept-alive connection is cut off",
    "the ninth connection from one address is closed, another address connects",
    "a trusted proxy is exempt from the per-address cap",
    "slow heads never reach the upstream",
];

async fn slow_clients() -> Report {
    let mut report = Report::new("floods");
    let target = match Target::start(&slow_policy()).await {
        Ok(t) => t,
        Err(e) => {
            report.fail_all(&SLOW, &e);
            return report;
        }
    };
    let (a, b) = tokio::join!(slow_new_connection(&target), slow_second_head(&target));
    report.record(SLOW[0], a);
    report.record(SLOW[1], b);
    report.record(SLOW[2], connection_cap(&target).await);
    report.record(SLOW[3], trusted_proxy_exempt(&target).await);
    let received = target.upstream.take();
    report.record(
        SLOW[4],
        match received
            .iter()
            .find(|r| r.target.starts_with("/slow") || r.target.starts_with("/second"))
        {
            None => Ok(()),
            Some(r) => Err(format!("upstream received {}", r.head_text())),
        },
    );
    report
}

#[tokio::test]
async fn slow_clients_and_floods() {
    let mut report = Report::new("floods");
    // Password guessing is the heaviest vector (before issue 11, 200
    // argon2id verifications at once): no other topic runs beside it.
    let guessing = {
        let _alone = exclusive().await;
        password_guessing().await
    };
    let _shared = shared().await;
    let (store, slow) = tokio::join!(store_flood(), slow_clients());
    report.absorb(guessing);
    report.absorb(store);
    report.absorb(slow);
    report.finish();
}
