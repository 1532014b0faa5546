//! The gateway under test: the real `gatehouse-gateway` binary on a policy
//! rendered from a template, with real certificates, free ports, a real
//! upstream, and clients that trust the test CA. Its log is shown when it
//! does not come up, and its tail when a test fails while it runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::audit::AuditLog;
use crate::metrics::metric_value;
use crate::process::{free_port, show_log_on_failure, wait_for_port, ChildProcess};
use crate::raw_response::{read_until_quiet, RawResponse};
use crate::template::Placeholders;
use crate::{binaries, EchoUpstream, TestPki};

/// The start of every gateway policy under test, as a literal for
/// `concat!`: the three listeners on loopback and the server certificate.
/// Placeholders `{https}`, `{http}`, `{admin}`, `{cert}`, `{key}` (see
/// [`server_placeholders`]).
#[macro_export]
macro_rules! listen_and_tls {
    () => {
        r#"
[listen]
https = "127.0.0.1:{https}"
http_redirect = "127.0.0.1:{http}"
admin = "127.0.0.1:{admin}"
public_origin = "https://localhost:{https}"

[[tls.cert]]
hosts = ["localhost", "127.0.0.1"]
cert = "{cert}"
key = "{key}"
"#
    };
}

/// Rate limits out of the way, as a literal for `concat!`, for tests that
/// are not about them.
#[macro_export]
macro_rules! no_rate_limits {
    () => {
        r#"
[rate_limit]
client = "100000/s"
identity = "100000/s"
login = "100000/s"
"#
    };
}

/// The policy most gateway tests start from. Placeholders: `{https}`,
/// `{http}`, `{admin}`, `{cert}`, `{key}`, `{upstream}`, `{dir}`, `{extra}`
/// (appended). Rate limits are out of the way here; the abuse tests set
/// their own. Every test writes an audit log.
pub const BASE_POLICY: &str = concat!(
    crate::listen_and_tls!(),
    r#"
[limits]
shutdown_grace = "5s"
"#,
    crate::no_rate_limits!(),
    r#"
[audit]
path = "{dir}/audit.jsonl"

[[route]]
name = "app"
path = "/"
upstream = "{upstream}"
max_body = "1KiB"
public = true
{extra}
"#
);

/// How long the gateway may take to listen on all its ports.
const STARTUP: Duration = Duration::from_secs(15);

/// The ports of the gateway's three listeners, on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub struct GatewayPorts {
    pub https: u16,
    pub http: u16,
    pub admin: u16,
}

impl GatewayPorts {
    pub fn free() -> GatewayPorts {
        GatewayPorts {
            https: free_port(),
            http: free_port(),
            admin: free_port(),
        }
    }
}

pub struct GatewayUnderTest {
    pub process: ChildProcess,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub pki: TestPki,
    pub policy_path: PathBuf,
    placeholders: Placeholders,
    /// Kept alive for as long as the gateway proxies to it.
    _upstream: Option<EchoUpstream>,
    spawns: u32,
}

impl GatewayUnderTest {
    /// Starts a gateway with [`BASE_POLICY`] and `extra` appended.
    pub async fn start(extra: &str) -> GatewayUnderTest {
        Self::start_with(BASE_POLICY, extra).await
    }

    pub async fn start_with(template: &str, extra: &str) -> GatewayUnderTest {
        let gateway = Self::prepare(template, extra).await;
        gateway.wait_ready();
        gateway
    }

    /// Like [`Self::start_with`], running `setup` (e.g. issuing more
    /// certificates into the PKI directory, `{dir}`) before the spawn.
    pub async fn start_custom(
        template: &str,
        extra: &str,
        setup: impl FnOnce(&TestPki),
    ) -> GatewayUnderTest {
        let gateway = Self::prepare_with(template, extra, setup).await;
        gateway.wait_ready();
        gateway
    }

    /// A gateway on 127.0.0.1:443 with its redirect on :80, as scanners
    /// that only speak to the standard ports expect. Needs root (or
    /// CAP_NET_BIND_SERVICE); without it the gateway refuses to start and
    /// this fails with its message.
    pub async fn start_on_standard_ports(extra: &str) -> GatewayUnderTest {
        let template = BASE_POLICY
            .replace("https://localhost:{https}", "https://localhost")
            .replace("127.0.0.1:{https}", "127.0.0.1:443")
            .replace("127.0.0.1:{http}", "127.0.0.1:80");
        let mut gateway = Self::prepare(&template, extra).await;
        gateway.https = SocketAddr::from(([127, 0, 0, 1], 443));
        gateway.http = SocketAddr::from(([127, 0, 0, 1], 80));
        gateway.wait_ready();
        gateway
    }

    /// Writes the policy and spawns the process without waiting for it.
    pub async fn prepare(template: &str, extra: &str) -> GatewayUnderTest {
        Self::prepare_with(template, extra, |_| {}).await
    }

    /// Like [`Self::prepare`], running `setup` on the PKI first. The
    /// template's `{upstream}` is an [`EchoUpstream`] kept for the
    /// gateway's lifetime.
    pub async fn prepare_with(
        template: &str,
        extra: &str,
        setup: impl FnOnce(&TestPki),
    ) -> GatewayUnderTest {
        let pki = TestPki::new().expect("test CA");
        setup(&pki);
        let upstream = EchoUpstream::start().await.expect("upstream");
        let ports = GatewayPorts::free();
        let mut placeholders = Placeholders::new();
        server_placeholders(&mut placeholders, &pki, ports);
        placeholders.set("upstream", upstream.url());
        let policy_path = pki.dir.path().join("policy.toml");
        placeholders.write(&policy_path, template, &[("extra", extra)]);
        let mut gateway = Self::spawn(pki, policy_path, ports, placeholders);
        gateway._upstream = Some(upstream);
        gateway
    }

    /// Spawns the gateway on a policy already written to `policy_path`
    /// (whose listeners are `ports`), without waiting for it. For stacks
    /// that write one policy for the gateway and another program.
    pub fn spawn(
        pki: TestPki,
        policy_path: PathBuf,
        ports: GatewayPorts,
        placeholders: Placeholders,
    ) -> GatewayUnderTest {
        let process = spawn_gateway(&policy_path, &pki.dir.path().join("gateway.log"));
        GatewayUnderTest {
            process,
            https: SocketAddr::from(([127, 0, 0, 1], ports.https)),
            http: SocketAddr::from(([127, 0, 0, 1], ports.http)),
            admin: SocketAddr::from(([127, 0, 0, 1], ports.admin)),
            pki,
            policy_path,
            placeholders,
            _upstream: None,
            spawns: 1,
        }
    }

    /// Starts the gateway again on the same policy, ports and directory,
    /// after the previous process has exited.
    pub fn respawn(&mut self) {
        self.spawn_again();
        self.wait_ready();
    }

    /// Stops the gateway with TERM and starts it again on the same policy.
    /// Returns when the new process is spawned, before it listens.
    pub fn restart(&mut self) {
        self.process.signal("TERM").expect("signal the gateway");
        assert!(
            self.process.wait_exit(Duration::from_secs(15)).is_some(),
            "the gateway did not exit on TERM"
        );
        self.spawn_again();
    }

    fn spawn_again(&mut self) {
        self.spawns += 1;
        let log = self.dir().join(format!("gateway-{}.log", self.spawns));
        self.process = spawn_gateway(&self.policy_path, &log);
    }

    /// The directory of the PKI, the policy, the logs and the audit log.
    pub fn dir(&self) -> &Path {
        self.pki.dir.path()
    }

    /// The audit log the base policy writes.
    pub fn audit_path(&self) -> PathBuf {
        self.dir().join("audit.jsonl")
    }

    /// The records of the audit log (active file) now.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        AuditLog::at(self.audit_path()).records()
    }

    /// Waits until `count` audit records have `event`; returns them all.
    pub async fn audit_events(&self, event: &str, count: usize) -> Vec<serde_json::Value> {
        AuditLog::at(self.audit_path())
            .wait_for(event, count, Duration::from_secs(5))
            .await
    }

    /// Waits until all three listeners accept connections; panics with
    /// the gateway's log if they do not.
    pub fn wait_ready(&self) {
        for addr in [self.https, self.http, self.admin] {
            if let Err(e) = wait_for_port(addr, STARTUP) {
                panic!("{e}\n--- gateway log ---\n{}", self.process.log_text());
            }
        }
    }

    /// Rewrites the policy file with the same placeholders filled in.
    pub fn rewrite_policy(&self, template: &str, extra: &str) {
        self.placeholders
            .replace(&self.policy_path, template, &[("extra", extra)]);
    }

    /// Waits until a metric reaches at least `want` (a rewrite plus SIGHUP
    /// may reload twice, so "at least" is what tests can rely on).
    pub async fn metric_reaches(&self, series: &str, want: f64) {
        for _ in 0..100 {
            if metric_value(&self.metrics().await, series).is_some_and(|v| v >= want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{series} never reached {want}\n{}", self.process.log_text());
    }

    /// Waits until a gauge is at most `want`.
    pub async fn metric_falls_to(&self, series: &str, want: f64) {
        for _ in 0..100 {
            if metric_value(&self.metrics().await, series).is_some_and(|v| v <= want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{series} never fell to {want}");
    }

    /// The access-log records, once at least `count` have been written.
    pub async fn access_log(&self, count: usize) -> Vec<serde_json::Value> {
        for _ in 0..100 {
            let records: Vec<_> = self
                .log_records()
                .into_iter()
                .filter(|r| r["target"] == "gatehouse::access")
                .collect();
            if records.len() >= count {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "fewer than {count} access-log records\n{}",
            self.process.log_text()
        );
    }

    /// The JSON log records written so far.
    pub fn log_records(&self) -> Vec<serde_json::Value> {
        self.process
            .log_text()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub fn origin(&self) -> String {
        format!("https://localhost:{}", self.https.port())
    }

    /// An HTTPS client that trusts only the test CA and resolves
    /// `localhost` to the gateway.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("client")
    }

    /// Like [`Self::client`], keeping cookies the way a browser does.
    pub fn client_with_cookies(&self) -> reqwest::Client {
        self.client_builder()
            .cookie_provider(Arc::new(reqwest::cookie::Jar::default()))
            .build()
            .expect("client")
    }

    /// A client whose connections come from `source` (any 127.0.0.0/8
    /// address is loopback on Linux), to act as many different clients.
    pub fn client_from(&self, source: std::net::IpAddr) -> reqwest::Client {
        self.client_builder()
            .local_address(source)
            .build()
            .expect("client")
    }

    fn client_builder(&self) -> reqwest::ClientBuilder {
        self.pki
            .https_client(self.https)
            .timeout(Duration::from_secs(15))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client()
            .get(format!("{}{path}", self.origin()))
            .send()
            .await
            .expect("request")
    }

    /// The admin listener's `/metrics`, in Prometheus text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// A TLS connection to the gateway with `config`, SNI `server_name`.
    pub async fn tls_connect(
        &self,
        config: rustls::ClientConfig,
        server_name: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.https).await?;
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    }

    /// Sends raw HTTP/1.1 bytes over TLS and returns everything the gateway
    /// sent back before closing or going quiet.
    pub async fn raw_request(&self, request: &[u8]) -> RawResponse {
        let config = self.pki.client_config(&[b"http/1.1"]);
        let mut stream = self
            .tls_connect(config, "localhost")
            .await
            .expect("tls connect");
        stream.write_all(request).await.expect("write request");
        read_until_quiet(&mut stream).await
    }
}

impl Drop for GatewayUnderTest {
    fn drop(&mut self) {
        show_log_on_failure("gateway", &self.process);
    }
}

/// Sets `{https}`, `{http}`, `{admin}`, `{cert}`, `{key}` and `{dir}`: the
/// gateway's listeners, a server certificate for `localhost` and
/// `127.0.0.1` issued by `pki`, and the PKI's directory.
pub fn server_placeholders(placeholders: &mut Placeholders, pki: &TestPki, ports: GatewayPorts) {
    let leaf = pki
        .issue("server", &["localhost", "127.0.0.1"], 30)
        .expect("server certificate");
    placeholders
        .set("https", ports.https)
        .set("http", ports.http)
        .set("admin", ports.admin)
        .set("cert", leaf.cert.display())
        .set("key", leaf.key.display())
        .set("dir", pki.dir.path().display());
}

fn spawn_gateway(policy_path: &Path, log: &Path) -> ChildProcess {
    let mut command = Command::new(binaries::gateway());
    command
        .args(["run", "--policy"])
        .arg(policy_path)
        .args(["--threads", "2", "--log-format", "json"])
        .env("GATEHOUSE_LOG", "info");
    ChildProcess::spawn(command, log).expect("spawn gateway")
}

/// `gatehouse-gateway audit verify FILES`: exit code and output.
pub fn audit_verify(files: &[PathBuf]) -> (i32, String) {
    let out = Command::new(binaries::gateway())
        .args(["audit", "verify"])
        .args(files)
        .output()
        .expect("run audit verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// An argon2id hash of `password`, from the gateway's own `hash-password`.
pub fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(binaries::gateway())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run hash-password");
    writeln!(child.stdin.take().expect("stdin is piped"), "{password}")
        .expect("write the password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("the hash is text")
        .trim()
        .to_owned()
}
