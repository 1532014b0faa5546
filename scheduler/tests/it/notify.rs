//! Notifications end to end: real runs on the private dockerd, a real
//! webhook receiver (axum, on loopback) that checks the HMAC signature, a
//! real SMTP server with STARTTLS (aiosmtpd, tests/tools/smtp-sink), and
//! SSRF attempts that the guard must refuse. The receiver lives on
//! loopback, so it is reachable only when the policy opens loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use gatehouse_tests::{free_port, wait_for_port, ChildProcess, TestPki};
use serde_json::Value;

use gatehouse_tests::metrics::metric_value;
use gatehouse_tests::scheduler::{job, shared_docker, OPERATOR_KEY};
use gatehouse_tests::SchedulerUnderTest;

const HOOK_SECRET: &str = "whsec-test-0123456789";
const API_TOKEN: &str = "tok-9f8e7d6c5b4a-secret";
const LOOPBACK: &str = r#"insecure_allow_networks = ["127.0.0.0/8", "::1/128"]"#;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    /// Serves on 127.0.0.1: `/hook` and `/slack` record and answer 200;
    /// `/redirect` sends to the cloud metadata address, `/redirect-local`
    /// back to `/hook`.
    async fn start() -> (Receiver, SocketAddr) {
        let receiver = Receiver::default();
        let app = axum::Router::new()
            .route("/hook", post(record))
            .route("/slack", post(record))
            .route(
                "/redirect",
                post(|| async { redirect("http://169.254.169.254/latest/meta-data/") }),
            )
            .route("/redirect-local", post(|| async { redirect("/hook") }))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, addr)
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .expect("hits")
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }
}

async fn record(
    State(receiver): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    receiver.hits.lock().expect("hits").push(Hit {
        path: uri.path().to_owned(),
        headers,
        body,
    });
    StatusCode::OK
}

fn redirect(location: &'static str) -> Response {
    (StatusCode::FOUND, [("location", location)]).into_response()
}

/// What a receiver does: recompute the HMAC of `timestamp.body`.
fn signature_is_valid(hit: &Hit, secret: &str) -> bool {
    let header = |name: &str| {
        hit.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let timestamp = header("x-gatehouse-timestamp");
    let Some(signature) = header("x-gatehouse-signature")
        .strip_prefix("sha256=")
        .and_then(|hex| hex::decode(hex).ok())
    else {
        return false;
    };
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(&hit.body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, &message, &signature).is_ok()
}

/// A job that prints its sensitive token and fails unless MODE (read from
/// `mode_file` when each run starts) says `ok`.
fn flaky_job(name: &str, mode_file: &Path, notify: &str) -> String {
    job(
        name,
        &format!(
            r#"command = ["sh", "-c", 'echo "token=$API_TOKEN"; echo "mode=$MODE"; test "$MODE" = ok']
env = {{ API_TOKEN = {{ value = "{API_TOKEN}", sensitive = true }}, MODE = {{ file = "{}" }} }}
notify = {notify}"#,
            mode_file.display()
        ),
    )
}

async fn deliveries(stack: &SchedulerUnderTest, count: usize) -> Vec<Value> {
    stack.audit_events("notify.delivery", count).await
}

async fn run_to_end(stack: &SchedulerUnderTest, job: &str) -> Value {
    let id = stack.run_now(job).await;
    stack.wait_run(id, None, Duration::from_secs(60)).await
}

#[tokio::test]
async fn a_failed_run_is_delivered_signed_and_its_secret_masked_everywhere() {
    let (receiver, addr) = Receiver::start().await;
    let (scratch, mode) = failing_mode();
    let secret_file = scratch.path().join("hook-secret");
    std::fs::write(&secret_file, format!("{HOOK_SECRET}\n")).expect("secret");
    let slack_url = scratch.path().join("slack-url");
    std::fs::write(
        &slack_url,
        format!("http://localhost:{}/slack", addr.port()),
    )
    .expect("url");
    let notify = format!(
        r#"
[scheduler.notify]
allow_hosts = ["localhost"]
{LOOPBACK}
retries = 0

[[scheduler.notify.webhook]]
name = "hook"
url = "http://localhost:{port}/hook"
secret_file = "{secret}"

[[scheduler.notify.slack]]
name = "chat"
url_file = "{slack}"
"#,
        port = addr.port(),
        secret = secret_file.display(),
        slack = slack_url.display(),
    );
    let jobs = flaky_job(
        "flaky",
        &mode,
        r#"{ to = ["hook", "chat"], on = ["failed", "recovered"] }"#,
    );
    let stack = SchedulerUnderTest::start_on(
        &shared_docker().host(),
        &with_secret_dir(&scratch, &notify),
        &jobs,
    )
    .await;

    let run = run_to_end(&stack, "flaky").await;
    assert_eq!(run["status"], "failed", "{run}");
    let records = deliveries(&stack, 2).await;
    assert!(
        records
            .iter()
            .all(|r| r["details"]["outcome"] == "delivered"),
        "{records:#?}\n{}",
        stack.scheduler_log()
    );

    let hooks = receiver.hits("/hook");
    assert_eq!(hooks.len(), 1);
    assert!(signature_is_valid(&hooks[0], HOOK_SECRET));
    assert!(!signature_is_valid(&hooks[0], "another secret"));
    let body: Value = serde_json::from_slice(&hooks[0].body).expect("JSON");
    assert_eq!(body["event"], "failed");
    assert_eq!(body["job"], "flaky");
    assert_eq!(body["exit_code"], 1);
    let tail = body["log_tail"].as_str().expect("log_tail");
    assert!(tail.contains("token=***"), "{tail}");
    assert!(!tail.contains(API_TOKEN));

    let slack = receiver.hits("/slack");
    assert_eq!(slack.len(), 1);
    let text = serde_json::from_slice::<Value>(&slack[0].body).expect("JSON")["text"]
        .as_str()
        .expect("text")
        .to_owned();
    assert!(text.contains("job flaky failed"), "{text}");
    assert!(
        text.contains("token=***") && !text.contains(API_TOKEN),
        "{text}"
    );

    secret_is_nowhere_in_the_history(&stack, run["id"].as_i64().expect("id")).await;

    std::fs::write(&mode, "ok\n").expect("mode");
    recovery_is_announced_once(&stack, &receiver).await;
}

/// What the API and dashboard show comes from the stored bytes, and the
/// database (and its WAL) never held the value.
async fn secret_is_nowhere_in_the_history(stack: &SchedulerUnderTest, id: i64) {
    let logs = stack.logs(id).await;
    assert!(logs.contains("token=***"), "{logs}");
    assert!(!logs.contains(API_TOKEN), "{logs}");
    for file in ["scheduler.db", "scheduler.db-wal"] {
        let bytes = std::fs::read(stack.dir().join(file)).unwrap_or_default();
        assert!(
            !bytes
                .windows(API_TOKEN.len())
                .any(|w| w == API_TOKEN.as_bytes()),
            "{file} holds the secret"
        );
    }
}

/// The first success after a failure is a recovery; the next success is
/// not announced (`on` has no "succeeded"). Both channels delivered twice.
async fn recovery_is_announced_once(stack: &SchedulerUnderTest, receiver: &Receiver) {
    assert_eq!(run_to_end(stack, "flaky").await["status"], "succeeded");
    deliveries(stack, 4).await;
    let hooks = receiver.hits("/hook");
    assert_eq!(hooks.len(), 2);
    let body: Value = serde_json::from_slice(&hooks[1].body).expect("JSON");
    assert_eq!(body["event"], "recovered");
    assert!(signature_is_valid(&hooks[1], HOOK_SECRET));
    assert_eq!(run_to_end(stack, "flaky").await["status"], "succeeded");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.hits("/hook").len(), 2);

    let metrics = stack.metrics().await;
    let delivered = |channel: &str| {
        metric_value(
            &metrics,
            &format!(
                "gatehouse_scheduler_notifications_total{{channel=\"{channel}\",outcome=\"delivered\"}}"
            ),
        )
    };
    assert_eq!(delivered("hook"), Some(2.0), "{metrics}");
    assert_eq!(delivered("chat"), Some(2.0), "{metrics}");
}

#[tokio::test]
async fn ssrf_attempts_on_loopback_are_refused_without_an_allowance() {
    let (receiver, addr) = Receiver::start().await;
    let port = addr.port();
    let (scratch, mode) = failing_mode();
    // `localhost` resolves to loopback; 2130706433 is 127.0.0.1 in
    // decimal; ::ffff:127.0.0.1 is IPv4-mapped. All name the receiver.
    let notify = format!(
        r#"
[scheduler.notify]
allow_hosts = ["localhost", "127.0.0.1"]
retries = 2

[[scheduler.notify.webhook]]
name = "by-name"
url = "http://localhost:{port}/hook"
secret = "{HOOK_SECRET}"

[[scheduler.notify.webhook]]
name = "decimal"
url = "http://2130706433:{port}/hook"
secret = "{HOOK_SECRET}"

[[scheduler.notify.webhook]]
name = "mapped"
url = "http://[::ffff:127.0.0.1]:{port}/hook"
secret = "{HOOK_SECRET}"
"#
    );
    let jobs = flaky_job(
        "probe",
        &mode,
        r#"{ to = ["by-name", "decimal", "mapped"] }"#,
    );
    let stack = SchedulerUnderTest::start_on(
        &shared_docker().host(),
        &with_secret_dir(&scratch, &notify),
        &jobs,
    )
    .await;
    assert_eq!(run_to_end(&stack, "probe").await["status"], "failed");
    let records = deliveries(&stack, 3).await;
    for record in &records {
        assert_eq!(record["outcome"], "denied", "{record}");
        assert_eq!(record["details"]["outcome"], "refused", "{record}");
        // Refused at once: a refusal is never retried.
        assert_eq!(record["details"]["attempts"], 1, "{record}");
        let error = record["details"]["error"].as_str().expect("error");
        assert!(error.contains("loopback"), "{error}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.hits("/hook").is_empty());
    let metrics = stack.metrics().await;
    for channel in ["by-name", "decimal", "mapped"] {
        let series = format!(
            "gatehouse_scheduler_notifications_total{{channel=\"{channel}\",outcome=\"refused\"}}"
        );
        assert_eq!(metric_value(&metrics, &series), Some(1.0), "{metrics}");
    }
    // The run's outcome is the container's, whatever became of the
    // notifications.
    let (_, runs) = stack
        .get(OPERATOR_KEY, "/api/runs?job=probe&limit=10")
        .await;
    assert_eq!(runs["runs"][0]["status"], "failed");
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let (receiver, addr) = Receiver::start().await;
    let port = addr.port();
    let (scratch, mode) = failing_mode();
    let notify = format!(
        r#"
[scheduler.notify]
allow_hosts = ["localhost"]
{LOOPBACK}

[[scheduler.notify.webhook]]
name = "to-metadata"
url = "http://localhost:{port}/redirect"
secret = "{HOOK_SECRET}"

[[scheduler.notify.webhook]]
name = "to-self"
url = "http://localhost:{port}/redirect-local"
secret = "{HOOK_SECRET}"
"#
    );
    let jobs = flaky_job("hops", &mode, r#"{ to = ["to-metadata", "to-self"] }"#);
    let stack = SchedulerUnderTest::start_on(
        &shared_docker().host(),
        &with_secret_dir(&scratch, &notify),
        &jobs,
    )
    .await;
    assert_eq!(run_to_end(&stack, "hops").await["status"], "failed");
    for record in deliveries(&stack, 2).await {
        assert_eq!(record["details"]["outcome"], "failed", "{record}");
        assert_eq!(record["details"]["attempts"], 1, "{record}");
        let error = record["details"]["error"].as_str().expect("error");
        assert!(error.contains("redirect (302)"), "{error}");
    }
    // Even the redirect back to an allowed URL was not followed.
    assert!(receiver.hits("/hook").is_empty());
}

/// aiosmtpd with STARTTLS required, on 127.0.0.1, under a certificate for
/// `localhost` from `pki`.
struct SmtpSink {
    _process: ChildProcess,
    port: u16,
    out: PathBuf,
}

impl SmtpSink {
    fn start(pki: &TestPki, dir: &Path) -> SmtpSink {
        let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tools/smtp-sink");
        let installed = Command::new(&tool)
            .arg("--install-only")
            .stdout(Stdio::null())
            .status()
            .expect("tests/tools/smtp-sink");
        assert!(installed.success(), "could not install aiosmtpd");
        let leaf = pki.issue("smtp", &["localhost"], 1).expect("certificate");
        let port = free_port();
        let out = dir.join("mail");
        std::fs::create_dir_all(&out).expect("mail dir");
        let mut command = Command::new(tool);
        command
            .args(["--port", &port.to_string(), "--cert"])
            .arg(&leaf.cert)
            .arg("--key")
            .arg(&leaf.key)
            .args([
                "--user",
                "gatehouse",
                "--password",
                "smtp-pass-0123",
                "--out",
            ])
            .arg(&out);
        let process = ChildProcess::spawn(command, &dir.join("smtp.log")).expect("smtp-sink");
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", process.log_text()));
        SmtpSink {
            _process: process,
            port,
            out,
        }
    }

    fn messages(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .expect("mail dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).expect("mail")).expect("JSON"))
            .collect()
    }
}

#[tokio::test]
async fn mail_goes_over_starttls_to_a_server_the_policy_trusts() {
    let pki = TestPki::new().expect("test CA");
    let scratch = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(&pki, scratch.path());
    let mode = scratch.path().join("mode");
    std::fs::write(&mode, "fail\n").expect("mode");
    let password = scratch.path().join("smtp-password");
    std::fs::write(&password, "smtp-pass-0123\n").expect("password");
    let channel = |name: &str, ca: &str| {
        format!(
            r#"
[[scheduler.notify.email]]
name = "{name}"
server = "localhost:{port}"
from = "gatehouse@example.com"
to = ["ops@example.com"]
username = "gatehouse"
password_file = "{password}"
{ca}
"#,
            port = sink.port,
            password = password.display(),
        )
    };
    let notify = format!(
        "\n[scheduler.notify]\nallow_hosts = [\"localhost\"]\n{LOOPBACK}\nretries = 0\n{}{}",
        channel(
            "mail",
            &format!("ca_file = \"{}\"", pki.ca_path().display())
        ),
        // The same server, without the policy's trust in its CA.
        channel("untrusted", ""),
    );
    let jobs = flaky_job("mailer", &mode, r#"{ to = ["mail", "untrusted"] }"#);
    let stack = SchedulerUnderTest::start_on(
        &shared_docker().host(),
        &with_secret_dir(&scratch, &notify),
        &jobs,
    )
    .await;
    assert_eq!(run_to_end(&stack, "mailer").await["status"], "failed");
    let records = deliveries(&stack, 2).await;
    let outcome = |channel: &str| {
        records
            .iter()
            .find(|r| r["details"]["channel"] == channel)
            .map(|r| r["details"].clone())
            .unwrap_or_default()
    };
    assert_eq!(
        outcome("mail")["outcome"],
        "delivered",
        "{records:#?}\n{}",
        stack.scheduler_log()
    );
    assert_eq!(outcome("untrusted")["outcome"], "failed", "{records:#?}");

    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.messages().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let mail = &messages[0];
    assert_eq!(mail["tls"], true);
    assert_eq!(mail["auth_user"], "gatehouse");
    assert_eq!(mail["mail_from"], "gatehouse@example.com");
    let data = mail["data"].as_str().expect("data");
    assert!(data.contains("job mailer failed"), "{data}");
    assert!(
        data.contains("token=***") && !data.contains(API_TOKEN),
        "{data}"
    );
}

/// A scratch directory with a `mode` file that makes `flaky_job` fail
/// until the test writes `ok` into it.
fn failing_mode() -> (tempfile::TempDir, std::path::PathBuf) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mode = scratch.path().join("mode");
    std::fs::write(&mode, "fail\n").expect("mode");
    (scratch, mode)
}

/// `[scheduler]` keys that let the jobs read their `mode` file from the
/// test's scratch directory (env files come only from `secret_dirs`).
fn with_secret_dir(scratch: &tempfile::TempDir, keys: &str) -> String {
    format!("secret_dirs = [\"{}\"]\n{keys}", scratch.path().display())
}
