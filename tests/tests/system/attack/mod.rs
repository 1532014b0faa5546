//! The attack suite: raw bytes over real TLS (HTTP/1.1 and HTTP/2) to the
//! real gateway in front of a [`RecordingUpstream`], one file per topic.
//!
//! Every vector asserts both sides: what the client got (status, and a
//! header where it matters) and what the upstream received (nothing, or the
//! exact method, target and headers). Topics are table-driven: each
//! evaluates all its vectors, prints `attack/<topic>: N vectors, M hold` to
//! stderr (outside the test harness's capture, so a passing run shows it
//! too), then fails listing every vector that did not hold.
//!
//! The behaviour asserted is the gateway's after issue 11 (the design note
//! `issue11-design.md`): vectors that need new policy keys run on a second
//! gateway of their topic, so that the others still measure something on a
//! gateway that does not know those keys yet.
//!
//! Topics: `path` (confusion), `smuggling` (HTTP/1.1 framing), `h2`
//! (malformed HTTP/2), `spoofing` (identity and forwarded headers, hop-by-hop
//! tricks), `methods`, `jwt`, `cookies` (tampering and replay), `csrf` (CSRF,
//! CORS, open redirects), `client_ip` (with and without trusted proxies,
//! behind a real nginx), `host`, `endpoints` (the gateway's own paths under
//! the network rules), `floods` (slow heads, connection caps, password
//! guessing, a full rate-limit key store), `proxy_protocol` (forged PROXY
//! headers, behind and around a trusted balancer), `replicas` (attacks
//! spread over two replicas sharing Redis, or carried from one to the
//! other).

mod client;
mod h2wire;
mod login;
mod policy;
mod report;
mod vector;

mod client_ip;
mod cookies;
mod csrf;
mod endpoints;
mod floods;
mod h2;
mod host;
mod jwt;
mod methods;
mod path;
mod proxy_protocol;
mod replicas;
mod smuggling;
mod spoofing;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_tests::{RecordingUpstream, TestPki};

pub use client::{req, H1Response};
use gatehouse_tests::GatewayUnderTest;
pub use policy::*;
pub use report::*;
pub use vector::*;

/// How long after the client's answer anything the gateway still sends
/// upstream (a smuggled second request) must have arrived.
pub const SETTLE: Duration = Duration::from_millis(150);

/// Listener, certificate and audit log of every attack gateway; a topic
/// appends its own sections and routes. `{upstream}` is the recording
/// upstream.
pub const LISTEN: &str = concat!(
    gatehouse_tests::listen_and_tls!(),
    r#"
[audit]
path = "{dir}/audit.jsonl"
"#
);

/// Rate limits out of the way, for topics that are not about them.
pub const NO_RATE_LIMITS: &str = gatehouse_tests::no_rate_limits!();

/// A gateway under attack and the upstream that records what reached it.
pub struct Target {
    pub gateway: GatewayUnderTest,
    pub upstream: RecordingUpstream,
    tls_h1: Arc<rustls::ClientConfig>,
    tls_h2: Arc<rustls::ClientConfig>,
}

impl Target {
    /// Starts a gateway on `LISTEN` + `sections`. `Err` carries why the
    /// gateway did not come up (a policy it refuses, typically).
    pub async fn start(sections: &str) -> Result<Target, String> {
        Self::start_with(sections, |_| {}).await
    }

    /// Like [`Self::start`], running `setup` on the PKI first (extra
    /// certificates for `{dir}`).
    pub async fn start_with(
        sections: &str,
        setup: impl FnOnce(&TestPki),
    ) -> Result<Target, String> {
        let upstream = RecordingUpstream::start()
            .await
            .expect("recording upstream");
        let policy = format!("{LISTEN}{sections}").replace("{upstream}", &upstream.url());
        let mut gateway = GatewayUnderTest::prepare_with(&policy, "", setup).await;
        wait_up(&mut gateway).await?;
        let tls_h1 = Arc::new(gateway.pki.client_config(&[b"http/1.1"]));
        let tls_h2 = Arc::new(gateway.pki.client_config(&[b"h2"]));
        Ok(Target {
            gateway,
            upstream,
            tls_h1,
            tls_h2,
        })
    }

    /// Runs raw HTTP/1.1 vectors one after another (they share the
    /// upstream's record) and reports each.
    pub async fn run(&self, report: &mut Report, vectors: Vec<Vector>) {
        for vector in vectors {
            let outcome = self.check(&vector).await;
            report.record(vector.name, outcome);
        }
    }

    async fn check(&self, vector: &Vector) -> Result<(), String> {
        self.upstream.take();
        let stream = client::connect(
            self.gateway.https,
            vector.from,
            &vector.sni,
            self.tls_h1.clone(),
        )
        .await?;
        let response = client::exchange(stream, &vector.request, vector.expect.closes).await?;
        self.judge(&vector.expect, &response).await
    }

    /// Checks a response against `expect`, then what reached the upstream
    /// (after [`SETTLE`]); the caller emptied the record before sending.
    pub async fn judge(&self, expect: &Expect, response: &H1Response) -> Result<(), String> {
        let mut problems = expect.check_response(response);
        let received = self.upstream.settle(SETTLE).await;
        if let Err(e) = expect.upstream.check(&received) {
            problems.push(e);
        }
        if !problems.is_empty() {
            problems.push(self.why(response));
        }
        verdict(problems, &response.summary())
    }

    /// The gateway's own account of a response (its access-log line), for
    /// failure messages.
    fn why(&self, response: &H1Response) -> String {
        let Some(id) = response.header("x-request-id") else {
            return "no request id".to_owned();
        };
        self.gateway
            .log_records()
            .into_iter()
            .find(|r| r["request_id"] == id.as_str() && r["target"] == "gatehouse::access")
            .map(|r| {
                format!(
                    "gateway: route={} denial={} error={}",
                    r["route"], r["denial"], r["error"]
                )
            })
            .unwrap_or_else(|| format!("no access-log line for {id}"))
    }

    /// Sends raw bytes on a fresh TLS connection (from `from`, with SNI
    /// `sni`; an IP literal sends none) and reads one whole response.
    pub async fn send_h1(
        &self,
        request: &[u8],
        from: Option<IpAddr>,
        sni: &str,
    ) -> Result<H1Response, String> {
        let stream = client::connect(self.gateway.https, from, sni, self.tls_h1.clone()).await?;
        client::exchange(stream, request, false).await
    }

    /// A TLS connection that offered only `h2`.
    pub async fn connect_h2(
        &self,
        sni: &str,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        client::connect(self.gateway.https, None, sni, self.tls_h2.clone()).await
    }

    /// Sends requests from other tasks.
    pub fn sender(&self) -> Sender {
        Sender {
            addr: self.gateway.https,
            tls: self.tls_h1.clone(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.gateway.process.pid()
    }
}

/// A cheap handle that sends raw HTTP/1.1 to a target from any task.
#[derive(Clone)]
pub struct Sender {
    pub addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl Sender {
    pub async fn send(&self, request: &[u8], from: Option<IpAddr>) -> Result<H1Response, String> {
        let stream = client::connect(self.addr, from, "localhost", self.tls.clone()).await?;
        client::exchange(stream, request, false).await
    }

    /// A TLS connection from `from`, for tests that hold connections open.
    pub async fn connect(
        &self,
        from: Option<IpAddr>,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        client::connect(self.addr, from, "localhost", self.tls.clone()).await
    }
}

/// Waits for the three listeners, or for the process to exit (a refused
/// policy), whichever comes first.
async fn wait_up(gateway: &mut GatewayUnderTest) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    for addr in [gateway.https, gateway.http, gateway.admin] {
        loop {
            if let Some(status) = gateway.process.try_exit() {
                return Err(format!(
                    "gateway refused to start ({status}): {}",
                    last_lines(&gateway.process.log_text())
                ));
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("gateway not listening on {addr}"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    Ok(())
}

/// The end of a log, short enough for a one-line failure.
fn last_lines(log: &str) -> String {
    let text: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = text[text.len().saturating_sub(3)..].join(" | ");
    tail.chars().take(400).collect()
}

/// A source address in 127.0.0.0/8 (all loopback on Linux).
pub fn lo(a: u8, b: u8, c: u8) -> IpAddr {
    IpAddr::from([127, a, b, c])
}

/// Starts a gateway for `vectors` and runs them; when it does not start,
/// every one of them fails with the reason. Returns the target to reuse.
pub async fn run_on(report: &mut Report, sections: &str, vectors: Vec<Vector>) -> Option<Target> {
    match Target::start(sections).await {
        Ok(target) => {
            target.run(report, vectors).await;
            Some(target)
        }
        Err(e) => {
            for v in vectors {
                report.record(v.name, Err(e.clone()));
            }
            None
        }
    }
}

/// Runs groups of vectors concurrently, each group on its own gateway
/// (its policy's sections), into one report for `topic`.
pub async fn run_groups(topic: &'static str, groups: Vec<(String, Vec<Vector>)>) -> Report {
    let mut report = Report::new(topic);
    let handles: Vec<_> = groups
        .into_iter()
        .map(|(sections, vectors)| {
            tokio::spawn(async move {
                let mut part = Report::new(topic);
                run_on(&mut part, &sections, vectors).await;
                part
            })
        })
        .collect();
    for handle in handles {
        report.absorb(handle.await.expect("vector group"));
    }
    report
}
