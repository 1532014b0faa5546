//! Starting a gateway under test: a policy from a template, real
//! certificates, free ports, a real upstream, and clients that trust the
//! test CA.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_tests::{free_port, wait_for_port, ChildProcess, EchoUpstream, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse-gateway");

/// The policy most tests start from. Placeholders: `{https}`, `{http}`,
/// `{admin}`, `{cert}`, `{key}`, `{upstream}`, `{dir}`, `{extra}`
/// (appended). Rate limits are out of the way here; the abuse tests set
/// their own. Every test writes an audit log.
pub const BASE_POLICY: &str = r#"
[listen]
https = "127.0.0.1:{https}"
http_redirect = "127.0.0.1:{http}"
admin = "127.0.0.1:{admin}"
public_origin = "https://localhost:{https}"

[[tls.cert]]
hosts = ["localhost", "127.0.0.1"]
cert = "{cert}"
key = "{key}"

[limits]
shutdown_grace = "5s"

[rate_limit]
client = "100000/s"
identity = "100000/s"
login = "100000/s"

[audit]
path = "{dir}/audit.jsonl"

[[route]]
name = "app"
path = "/"
upstream = "{upstream}"
max_body = "1KiB"
public = true
{extra}
"#;

pub struct Gateway {
    pub process: ChildProcess,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub pki: TestPki,
    pub policy_path: PathBuf,
    /// Kept alive for as long as the gateway proxies to it.
    _upstream: EchoUpstream,
    vars: Vec<(String, String)>,
}

impl Gateway {
    /// Starts a gateway with [`BASE_POLICY`] and `extra` appended.
    pub async fn start(extra: &str) -> Gateway {
        Self::start_with(BASE_POLICY, extra).await
    }

    pub async fn start_with(template: &str, extra: &str) -> Gateway {
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
    ) -> Gateway {
        let gateway = Self::prepare_with(template, extra, setup).await;
        gateway.wait_ready();
        gateway
    }

    /// A gateway on 127.0.0.1:443 with its redirect on :80, as scanners
    /// that only speak to the standard ports expect. Needs root (or
    /// CAP_NET_BIND_SERVICE); without it the gateway refuses to start and
    /// this fails with its message.
    pub async fn start_on_standard_ports(extra: &str) -> Gateway {
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
    pub async fn prepare(template: &str, extra: &str) -> Gateway {
        Self::prepare_with(template, extra, |_| {}).await
    }

    pub async fn prepare_with(
        template: &str,
        extra: &str,
        setup: impl FnOnce(&TestPki),
    ) -> Gateway {
        let pki = TestPki::new().expect("test CA");
        setup(&pki);
        let leaf = pki
            .issue("server", &["localhost", "127.0.0.1"], 30)
            .expect("server certificate");
        let upstream = EchoUpstream::start().await.expect("upstream");
        let (https, http, admin) = (free_port(), free_port(), free_port());
        let vars = vec![
            ("{https}".to_owned(), https.to_string()),
            ("{http}".to_owned(), http.to_string()),
            ("{admin}".to_owned(), admin.to_string()),
            ("{cert}".to_owned(), leaf.cert.display().to_string()),
            ("{key}".to_owned(), leaf.key.display().to_string()),
            ("{upstream}".to_owned(), upstream.url()),
            ("{dir}".to_owned(), pki.dir.path().display().to_string()),
        ];
        let policy_path = pki.dir.path().join("policy.toml");
        let mut text = template.replace("{extra}", extra);
        for (k, v) in &vars {
            text = text.replace(k, v);
        }
        std::fs::write(&policy_path, text).expect("write policy");
        let process = spawn_gateway(&policy_path, &pki.dir.path().join("gateway.log"));
        Gateway {
            process,
            https: SocketAddr::from(([127, 0, 0, 1], https)),
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            pki,
            policy_path,
            _upstream: upstream,
            vars,
        }
    }

    /// Starts the gateway again on the same policy, ports and directory,
    /// after the previous process has exited.
    pub fn respawn(&mut self) {
        let log = self.pki.dir.path().join("gateway-respawned.log");
        self.process = spawn_gateway(&self.policy_path, &log);
        self.wait_ready();
    }

    /// The audit log the base policy writes.
    pub fn audit_path(&self) -> PathBuf {
        self.pki.dir.path().join("audit.jsonl")
    }

    /// The records of the audit log (active file) now.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.audit_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until `count` audit records have `event`; returns them all.
    pub async fn audit_events(&self, event: &str, count: usize) -> Vec<serde_json::Value> {
        for _ in 0..100 {
            let found: Vec<_> = self
                .audit_records()
                .into_iter()
                .filter(|r| r["event"] == event)
                .collect();
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "fewer than {count} `{event}` audit records:\n{}",
            std::fs::read_to_string(self.audit_path()).unwrap_or_default()
        );
    }

    pub fn wait_ready(&self) {
        for addr in [self.https, self.http, self.admin] {
            if let Err(e) = wait_for_port(addr, Duration::from_secs(10)) {
                panic!("{e}\n--- gateway log ---\n{}", self.process.log_text());
            }
        }
    }

    /// Rewrites the policy file with the same placeholders filled in.
    pub fn rewrite_policy(&self, template: &str, extra: &str) {
        let mut text = template.replace("{extra}", extra);
        for (k, v) in &self.vars {
            text = text.replace(k, v);
        }
        let tmp = self.policy_path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write policy");
        std::fs::rename(&tmp, &self.policy_path).expect("replace policy");
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
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.pki.ca_pem.as_bytes()).expect("CA pem"),
            )
            .resolve("localhost", self.https)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client()
            .get(format!("{}{path}", self.origin()))
            .send()
            .await
            .expect("request")
    }

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

/// What came back on a raw connection, and whether the gateway closed it.
pub struct RawResponse {
    pub text: String,
    pub closed: bool,
}

impl RawResponse {
    pub fn status(&self) -> u16 {
        self.text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or("");
        head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

pub async fn read_until_quiet<S: AsyncReadExt + Unpin>(stream: &mut S) -> RawResponse {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut closed = false;
    loop {
        match tokio::time::timeout(Duration::from_millis(1500), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    RawResponse {
        text: String::from_utf8_lossy(&out).into_owned(),
        closed,
    }
}

/// The JSON the echo upstream returns.
pub async fn echoed(response: reqwest::Response) -> serde_json::Value {
    response.json().await.expect("echo JSON")
}

/// Header value the upstream received, from an echo body.
pub fn upstream_header(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .map(|headers| {
            headers
                .iter()
                .filter(|pair| pair[0].as_str() == Some(name))
                .filter_map(|pair| pair[1].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of one un-labelled or labelled sample in Prometheus text.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let value = rest.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

fn spawn_gateway(policy_path: &std::path::Path, log: &std::path::Path) -> ChildProcess {
    let mut command = Command::new(BIN);
    command
        .args(["run", "--policy"])
        .arg(policy_path)
        .args(["--threads", "2", "--log-format", "json"])
        .env("GATEHOUSE_LOG", "info");
    ChildProcess::spawn(command, log).expect("spawn gateway")
}

/// `gatehouse-gateway audit verify FILES`: exit code and output.
pub fn audit_verify(files: &[PathBuf]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify"])
        .args(files)
        .output()
        .expect("run audit verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}
