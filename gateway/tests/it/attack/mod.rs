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
//! guessing, a full rate-limit key store).

mod client;
mod h2wire;
mod login;

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
mod smuggling;
mod spoofing;

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_tests::{RecordedRequest, RecordingUpstream, TestPki};

use crate::support::Gateway;
pub use client::{req, H1Response};

/// How long after the client's answer anything the gateway still sends
/// upstream (a smuggled second request) must have arrived.
pub const SETTLE: Duration = Duration::from_millis(150);

/// Listener, certificate and audit log of every attack gateway; a topic
/// appends its own sections and routes. `{upstream}` is the recording
/// upstream.
pub const LISTEN: &str = r#"
[listen]
https = "127.0.0.1:{https}"
http_redirect = "127.0.0.1:{http}"
admin = "127.0.0.1:{admin}"
public_origin = "https://localhost:{https}"

[[tls.cert]]
hosts = ["localhost", "127.0.0.1"]
cert = "{cert}"
key = "{key}"

[audit]
path = "{dir}/audit.jsonl"
"#;

/// Rate limits out of the way, for topics that are not about them.
pub const NO_RATE_LIMITS: &str = r#"
[rate_limit]
client = "100000/s"
identity = "100000/s"
login = "100000/s"
"#;

/// A gateway under attack and the upstream that records what reached it.
pub struct Target {
    pub gateway: Gateway,
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
        let mut gateway = Gateway::prepare_with(&policy, "", setup).await;
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
async fn wait_up(gateway: &mut Gateway) -> Result<(), String> {
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

fn verdict(problems: Vec<String>, context: &str) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{} [got: {context}]", problems.join("; ")))
    }
}

/// One raw HTTP/1.1 attack and what must happen.
pub struct Vector {
    pub name: String,
    pub request: Vec<u8>,
    pub from: Option<IpAddr>,
    pub sni: String,
    pub expect: Expect,
}

/// Starts a vector; the defaults expect nothing in particular, so every
/// vector names its status and its upstream outcome.
pub fn vector(name: impl Into<String>, request: impl Into<Vec<u8>>) -> Vector {
    Vector {
        name: name.into(),
        request: request.into(),
        from: None,
        sni: "localhost".to_owned(),
        expect: Expect::default(),
    }
}

impl Vector {
    pub fn from(mut self, source: IpAddr) -> Self {
        self.from = Some(source);
        self
    }

    pub fn sni(mut self, name: &str) -> Self {
        self.sni = name.to_owned();
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.expect.status = vec![status];
        self
    }

    /// Any of these statuses is acceptable (all equally safe).
    pub fn status_in(mut self, statuses: &[u16]) -> Self {
        self.expect.status = statuses.to_vec();
        self
    }

    /// The response must carry `name` with exactly `value`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.expect
            .headers
            .push((name.to_owned(), Some(value.to_owned())));
        self
    }

    /// The response must not carry `name`.
    pub fn no_header(mut self, name: &str) -> Self {
        self.expect.headers.push((name.to_owned(), None));
        self
    }

    /// The gateway must close the connection after answering.
    pub fn closes(mut self) -> Self {
        self.expect.closes = true;
        self
    }

    /// No byte reaches the upstream.
    pub fn nothing(mut self) -> Self {
        self.expect.upstream = Upstream::Nothing;
        self
    }

    /// Exactly one request reaches the upstream, and it matches `seen`.
    pub fn reaches(mut self, seen: Seen) -> Self {
        self.expect.upstream = Upstream::Exactly(seen);
        self
    }

    /// Nothing reaches the upstream, or one request matching `seen`.
    pub fn at_most(mut self, seen: Seen) -> Self {
        self.expect.upstream = Upstream::NothingOr(seen);
        self
    }
}

#[derive(Default)]
pub struct Expect {
    pub status: Vec<u16>,
    pub headers: Vec<(String, Option<String>)>,
    pub closes: bool,
    pub upstream: Upstream,
}

impl Expect {
    fn check_response(&self, response: &H1Response) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.status.contains(&response.status) {
            problems.push(format!(
                "status {} (want {:?})",
                response.status, self.status
            ));
        }
        for (name, want) in &self.headers {
            let got = response.header(name);
            match (want, &got) {
                (Some(w), Some(g)) if w == g => {}
                (None, None) => {}
                _ => problems.push(format!("response {name}: {got:?} (want {want:?})")),
            }
        }
        if self.closes && !response.closed {
            problems.push("connection left open".to_owned());
        }
        problems
    }
}

/// What the upstream must have received for one vector.
#[derive(Default)]
pub enum Upstream {
    /// Not one byte.
    #[default]
    Nothing,
    /// Exactly one complete request, matching.
    Exactly(Seen),
    /// Nothing, or exactly one matching request (either is safe).
    NothingOr(Seen),
    /// No complete request: a head whose body was cut short is never
    /// processed by the upstream, so it is harmless.
    NoComplete,
}

impl Upstream {
    pub fn check(&self, received: &[RecordedRequest]) -> Result<(), String> {
        match self {
            Upstream::Nothing if received.is_empty() => Ok(()),
            Upstream::Nothing => Err(format!("upstream received {}", describe(received))),
            Upstream::NothingOr(_) if received.is_empty() => Ok(()),
            Upstream::NoComplete if received.iter().all(|r| !r.complete) => Ok(()),
            Upstream::NoComplete => Err(format!("upstream received {}", describe(received))),
            Upstream::Exactly(seen) | Upstream::NothingOr(seen) => match received {
                [one] if one.complete => seen.verify(one),
                _ => Err(format!(
                    "upstream should receive one {} {}, received {}",
                    seen.method,
                    seen.target,
                    describe(received)
                )),
            },
        }
    }
}

/// Requests as one line each, for failure messages.
pub fn describe(received: &[RecordedRequest]) -> String {
    if received.is_empty() {
        return "nothing".to_owned();
    }
    let lines: Vec<String> = received
        .iter()
        .map(|r| {
            let head = r.head_text().replace("\r\n", "\\r\\n");
            let head: String = head.chars().take(300).collect();
            format!("[{}{head}]", if r.complete { "" } else { "partial: " })
        })
        .collect();
    format!("{} request(s): {}", received.len(), lines.join(" "))
}

type Check = Arc<dyn Fn(&RecordedRequest) -> Result<(), String> + Send + Sync>;

/// A request the upstream must have received: method, target, and header
/// rules. Names compare ignoring ASCII case; `absent` names also match any
/// spelling with `_` for `-`, since CGI-style servers read them as one.
#[derive(Clone)]
pub struct Seen {
    method: String,
    target: String,
    exact: Vec<(String, String)>,
    absent: Vec<String>,
    checks: Vec<Check>,
}

pub fn seen(method: &str, target: &str) -> Seen {
    Seen {
        method: method.to_owned(),
        target: target.to_owned(),
        exact: Vec::new(),
        absent: Vec::new(),
        checks: Vec::new(),
    }
}

impl Seen {
    /// `name` arrived exactly once, with exactly `value`.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.exact.push((name.to_owned(), value.to_owned()));
        self
    }

    /// No header named `name` (in any case, `_` or `-`) arrived.
    pub fn without(mut self, names: &[&str]) -> Self {
        self.absent.extend(names.iter().map(|n| (*n).to_owned()));
        self
    }

    /// Any further rule.
    pub fn rule(
        mut self,
        rule: impl Fn(&RecordedRequest) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.checks.push(Arc::new(rule));
        self
    }

    pub fn verify(&self, r: &RecordedRequest) -> Result<(), String> {
        let mut problems = Vec::new();
        if r.method != self.method || r.target != self.target {
            problems.push(format!(
                "upstream got {} {} (want {} {})",
                r.method, r.target, self.method, self.target
            ));
        }
        for (name, value) in &self.exact {
            let values = r.header_values(name);
            if values != [value.clone()] {
                problems.push(format!("upstream {name}: {values:?} (want [{value:?}])"));
            }
        }
        let fold = |n: &str| n.to_ascii_lowercase().replace('_', "-");
        for name in &self.absent {
            if let Some((got, value)) = r.headers.iter().find(|(n, _)| fold(n) == fold(name)) {
                problems.push(format!(
                    "upstream received {got}: {}",
                    String::from_utf8_lossy(value)
                ));
            }
        }
        for rule in &self.checks {
            if let Err(e) = rule(r) {
                problems.push(e);
            }
        }
        verdict(problems, &describe(std::slice::from_ref(r)))
    }
}

/// The outcomes of one topic's vectors.
pub struct Report {
    topic: &'static str,
    outcomes: Vec<(String, Result<(), String>)>,
    started: Instant,
}

impl Report {
    pub fn new(topic: &'static str) -> Report {
        Report {
            topic,
            outcomes: Vec::new(),
            started: Instant::now(),
        }
    }

    pub fn record(&mut self, name: impl Into<String>, outcome: Result<(), String>) {
        self.outcomes.push((name.into(), outcome));
    }

    /// Takes over another report's outcomes (a part run concurrently).
    pub fn absorb(&mut self, other: Report) {
        self.outcomes.extend(other.outcomes);
    }

    /// Every vector in `names` fails for one reason (its gateway did not
    /// start, say): counted, never skipped.
    pub fn fail_all(&mut self, names: &[&str], why: &str) {
        for name in names {
            self.record(*name, Err(why.to_owned()));
        }
    }

    /// Prints the summary and every failure, then fails if any vector did
    /// not hold.
    pub fn finish(self) {
        let total = self.outcomes.len();
        let failures: Vec<String> = self
            .outcomes
            .iter()
            .filter_map(|(name, outcome)| outcome.as_ref().err().map(|e| format!("{name}: {e}")))
            .collect();
        let mut stderr = std::io::stderr().lock();
        for failure in &failures {
            let _ = writeln!(stderr, "attack/{} FAILED {failure}", self.topic);
        }
        let _ = writeln!(
            stderr,
            "attack/{}: {total} vectors, {} hold ({:.1} s)",
            self.topic,
            total - failures.len(),
            self.started.elapsed().as_secs_f64()
        );
        assert!(
            failures.is_empty(),
            "attack/{}: {} of {total} vectors did not hold:\n{}",
            self.topic,
            failures.len(),
            failures.join("\n")
        );
    }
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

/// Hex SHA-256, as `[[api_key]] sha256` wants it.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// An `[[api_key]]` entry.
pub fn api_key(name: &str, key: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "\n[[api_key]]\nname = \"{name}\"\nsha256 = \"{}\"\nroles = [{}]\n",
        sha256_hex(key),
        roles.join(", ")
    )
}

/// A `[[route]]` to the recording upstream, with `rest` (access and
/// other keys) appended.
pub fn route(name: &str, path: &str, rest: &str) -> String {
    format!(
        "\n[[route]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"{{upstream}}\"\n{rest}\n"
    )
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
                part.outcomes
            })
        })
        .collect();
    for handle in handles {
        report.outcomes.extend(handle.await.expect("vector group"));
    }
    report
}

/// Runs `gatehouse-gateway check` on `LISTEN` + `sections` and expects it
/// to refuse the policy with a message that names `must_mention`.
pub fn check_refuses(sections: &str, must_mention: &str) -> Result<(), String> {
    let pki = TestPki::new().expect("test CA");
    let leaf = pki
        .issue("server", &["localhost"], 30)
        .expect("certificate");
    let dir = pki.dir.path();
    let text = format!("{LISTEN}{sections}")
        .replace("{upstream}", "http://127.0.0.1:9")
        .replace("{https}", "8443")
        .replace("{http}", "8080")
        .replace("{admin}", "9090")
        .replace("{cert}", &leaf.cert.display().to_string())
        .replace("{key}", &leaf.key.display().to_string())
        .replace("{dir}", &dir.display().to_string());
    let path = dir.join("check.toml");
    std::fs::write(&path, text).expect("write policy");
    let out = std::process::Command::new(crate::support::BIN)
        .arg("check")
        .arg("--policy")
        .arg(&path)
        .output()
        .expect("run check");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Err("check accepted the policy".to_owned())
    } else if said.contains("unknown field") {
        Err(format!("refused as an unknown key: {}", last_lines(&said)))
    } else if !said.contains(must_mention) {
        Err(format!(
            "refused, but not naming {must_mention}: {}",
            last_lines(&said)
        ))
    } else {
        Ok(())
    }
}

/// argon2id of "correct horse" (`gatehouse-gateway hash-password`).
pub const CORRECT_HORSE: &str = "correct horse";
const CORRECT_HORSE_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$MC9NYUEdXllel7wdQnpKBw$pzZg16nxXQ3IBy3L6Xt2qUaV2YRndkIrKV3qK9m/N+E";

/// A `[[basic_user]]` whose password is [`CORRECT_HORSE`].
pub fn basic_user(name: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "\n[[basic_user]]\nname = \"{name}\"\npassword_hash = \"{CORRECT_HORSE_HASH}\"\nroles = [{}]\n",
        roles.join(", ")
    )
}

/// `Authorization: Basic` value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Topics hold this shared while they run; the password-guessing flood
/// holds it alone, so its CPU and memory load cannot make another topic's
/// vectors time out (the test harness runs topics on parallel threads).
static HEAVY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Taken once, at the start of a topic's test (never nested: a waiting
/// writer would block the second read).
pub async fn shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    HEAVY.read().await
}

pub async fn exclusive() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    HEAVY.write().await
}
