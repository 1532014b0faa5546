//! A whole stack under test: a private dockerd (shared by the tests of this
//! binary), the real gateway in front, and the scheduler behind it, with
//! API keys for an operator and a viewer. Everything talks over real
//! sockets; the scheduler only ever sees requests the gateway signed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gatehouse_tests::docker::{PrivateDocker, TEST_IMAGE};
use gatehouse_tests::{free_port, wait_for_port, ChildProcess, TestPki};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const SCHEDULER: &str = env!("CARGO_BIN_EXE_gatehouse-scheduler");
pub const OPERATOR_KEY: &str = "gh_test_operator_key_0123456789abcdef";
pub const VIEWER_KEY: &str = "gh_test_viewer_key_0123456789abcdef";

/// The gateway binary, built beside ours by `cargo test --workspace`;
/// built here when a narrower `cargo test -p` did not build it, or left an
/// older one than the gateway's or the policy crate's sources (a stale
/// gateway would make gateway changes look ineffective here).
pub fn gateway_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = Path::new(SCHEDULER).with_file_name("gatehouse-gateway");
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let sources = [root.join("gateway/src"), root.join("policies/src")];
        if built.is_none_or(|built| sources.iter().any(|dir| newer_than(dir, built))) {
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--locked",
                    "-p",
                    "gatehouse-gateway",
                    "--bin",
                    "gatehouse-gateway",
                ])
                .status()
                .expect("cargo build gatehouse-gateway");
            assert!(status.success(), "building gatehouse-gateway failed");
        }
        bin
    })
    .clone()
}

/// Whether any file under `dir` was modified after `time`.
fn newer_than(dir: &Path, time: std::time::SystemTime) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let path = entry.path();
            if path.is_dir() {
                newer_than(&path, time)
            } else {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m > time)
            }
        })
}

/// One dockerd for every test of this binary, started on first use.
pub fn shared_docker() -> &'static PrivateDocker {
    static DOCKER: OnceLock<PrivateDocker> = OnceLock::new();
    DOCKER.get_or_init(|| {
        PrivateDocker::start()
            .expect("a private dockerd (needs root, docker.io and busybox-static)")
    })
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

pub const POLICY: &str = r#"
[listen]
https = "127.0.0.1:{https}"
http_redirect = "127.0.0.1:{http}"
admin = "127.0.0.1:{gw_admin}"
public_origin = "https://localhost:{https}"

[[tls.cert]]
hosts = ["localhost", "127.0.0.1"]
cert = "{cert}"
key = "{key}"

[limits]
shutdown_grace = "2s"

[rate_limit]
client = "100000/s"
identity = "100000/s"
login = "100000/s"

[audit]
path = "{dir}/audit.jsonl"

[roles]
operator = []
viewer = []

[[api_key]]
name = "operator"
sha256 = "{operator_hash}"
roles = ["operator"]

[[api_key]]
name = "viewer"
sha256 = "{viewer_hash}"
roles = ["viewer"]

[[route]]
name = "jobs"
path = "/"
upstream = "http://127.0.0.1:{sched_upstream}"
roles = ["operator", "viewer"]

{gateway_extra}
[scheduler]
listen = "127.0.0.1:{sched}"
admin = "127.0.0.1:{sched_admin}"
database = "{dir}/scheduler.db"
allowed_images = ["gatehouse-test/*"]
stop_grace = "2s"
max_concurrent_runs = 4
{scheduler_extra}
{jobs}
"#;

/// A job table with the test image and both roles; `body` adds keys.
pub fn job(name: &str, body: &str) -> String {
    format!(
        "\n[[job]]\nname = \"{name}\"\nimage = \"{TEST_IMAGE}\"\npull = \"never\"\nrun_roles = [\"operator\"]\nview_roles = [\"viewer\"]\n{body}\n"
    )
}

pub struct Stack {
    pub pki: TestPki,
    pub gateway: ChildProcess,
    pub scheduler: Option<ChildProcess>,
    pub https: SocketAddr,
    /// The HTTP listener, which only redirects to `https`.
    pub http: SocketAddr,
    pub sched: SocketAddr,
    pub sched_admin: SocketAddr,
    pub gw_admin: SocketAddr,
    pub policy_path: PathBuf,
    pub docker_host: String,
    /// Added to the scheduler's command line by [`Stack::spawn_scheduler`].
    pub scheduler_args: Vec<String>,
    vars: Vec<(String, String)>,
    respawns: u32,
}

impl Stack {
    pub async fn start(jobs: &str) -> Stack {
        Self::start_on(&shared_docker().host(), "", jobs).await
    }

    pub async fn start_on(docker_host: &str, scheduler_extra: &str, jobs: &str) -> Stack {
        Self::start_with_gateway(docker_host, "", scheduler_extra, jobs).await
    }

    /// Like [`Stack::start_on`], with `gateway_extra` (e.g. `[session]` and
    /// `[[oidc]]` tables) in the policy before the `[scheduler]` table.
    pub async fn start_with_gateway(
        docker_host: &str,
        gateway_extra: &str,
        scheduler_extra: &str,
        jobs: &str,
    ) -> Stack {
        Self::start_full(docker_host, gateway_extra, scheduler_extra, jobs, None).await
    }

    /// With the `jobs` route's upstream at `upstream_port` (a relay in
    /// front of the scheduler) instead of the scheduler's own port; the
    /// scheduler then needs `gateway_routes = ["jobs"]`.
    pub async fn start_relayed(upstream_port: u16, scheduler_extra: &str, jobs: &str) -> Stack {
        let docker = shared_docker().host();
        Self::start_full(&docker, "", scheduler_extra, jobs, Some(upstream_port)).await
    }

    async fn start_full(
        docker_host: &str,
        gateway_extra: &str,
        scheduler_extra: &str,
        jobs: &str,
        upstream_port: Option<u16>,
    ) -> Stack {
        let pki = TestPki::new().expect("test CA");
        let leaf = pki
            .issue("server", &["localhost", "127.0.0.1"], 30)
            .expect("server certificate");
        let dir = pki.dir.path().to_path_buf();
        let ports = [
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        ];
        let mut vars = vec![
            ("{https}".to_owned(), ports[0].to_string()),
            ("{gw_admin}".to_owned(), ports[1].to_string()),
            ("{sched}".to_owned(), ports[2].to_string()),
            (
                "{sched_upstream}".to_owned(),
                upstream_port.unwrap_or(ports[2]).to_string(),
            ),
            ("{sched_admin}".to_owned(), ports[3].to_string()),
            ("{http}".to_owned(), ports[4].to_string()),
            ("{cert}".to_owned(), leaf.cert.display().to_string()),
            ("{key}".to_owned(), leaf.key.display().to_string()),
            ("{dir}".to_owned(), dir.display().to_string()),
            ("{operator_hash}".to_owned(), sha256_hex(OPERATOR_KEY)),
            ("{viewer_hash}".to_owned(), sha256_hex(VIEWER_KEY)),
        ];
        // First, so the other placeholders inside it are filled in too.
        vars.insert(0, ("{gateway_extra}".to_owned(), gateway_extra.to_owned()));
        let policy_path = dir.join("policy.toml");
        std::fs::write(&policy_path, render(&vars, scheduler_extra, jobs)).expect("write policy");
        let mut stack = Stack {
            pki,
            gateway: spawn(
                Command::new(gateway_bin())
                    .args(["run", "--policy"])
                    .arg(&policy_path),
                &dir.join("gateway.log"),
            ),
            scheduler: None,
            https: SocketAddr::from(([127, 0, 0, 1], ports[0])),
            gw_admin: SocketAddr::from(([127, 0, 0, 1], ports[1])),
            sched: SocketAddr::from(([127, 0, 0, 1], ports[2])),
            sched_admin: SocketAddr::from(([127, 0, 0, 1], ports[3])),
            http: SocketAddr::from(([127, 0, 0, 1], ports[4])),
            policy_path,
            docker_host: docker_host.to_owned(),
            scheduler_args: Vec::new(),
            vars,
            respawns: 0,
        };
        for addr in [stack.https, stack.gw_admin] {
            if let Err(e) = wait_for_port(addr, Duration::from_secs(15)) {
                panic!("{e}\n--- gateway log ---\n{}", stack.gateway.log_text());
            }
        }
        stack.spawn_scheduler().await;
        stack
    }

    pub fn dir(&self) -> &Path {
        self.pki.dir.path()
    }

    /// Rewrites the policy with other jobs; both programs reload it.
    pub fn write_policy(&self, scheduler_extra: &str, jobs: &str) {
        std::fs::write(&self.policy_path, render(&self.vars, scheduler_extra, jobs))
            .expect("write policy");
    }

    /// Starts (or starts again) the scheduler and waits until it is ready.
    pub async fn spawn_scheduler(&mut self) {
        self.spawn_scheduler_unready().await;
        self.wait_ready().await;
    }

    /// Starts (or starts again) the scheduler and waits only until its
    /// admin listener answers `/healthz`, ready or not.
    pub async fn spawn_scheduler_unready(&mut self) {
        self.respawns += 1;
        let log = self.dir().join(format!("scheduler-{}.log", self.respawns));
        let mut command = Command::new(SCHEDULER);
        command
            .args(["run", "--policy"])
            .arg(&self.policy_path)
            .args(&self.scheduler_args)
            .env("DOCKER_HOST", &self.docker_host)
            .env("GATEHOUSE_LOG", "info,gatehouse_scheduler=debug");
        self.scheduler = Some(spawn(&mut command, &log));
        let url = format!("http://{}/healthz", self.sched_admin);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the scheduler did not start:\n{}", self.scheduler_log());
    }

    /// `/readyz`: its status and body.
    pub async fn readyz(&self) -> (u16, String) {
        let r = reqwest::get(format!("http://{}/readyz", self.sched_admin))
            .await
            .expect("readyz");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.sched_admin);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the scheduler did not become ready:\n{}",
            self.scheduler_log()
        );
    }

    pub fn scheduler_log(&self) -> String {
        self.scheduler
            .as_ref()
            .map(|s| s.log_text())
            .unwrap_or_default()
    }

    /// Stops the gateway and starts it again on the same policy (without
    /// `[assertion] key_file`, so it signs with a newly generated key).
    /// Returns when the new process is spawned, before it listens.
    pub fn restart_gateway(&mut self) {
        self.gateway.signal("TERM").expect("signal the gateway");
        assert!(
            self.gateway.wait_exit(Duration::from_secs(15)).is_some(),
            "the gateway did not exit on TERM"
        );
        self.respawns += 1;
        let log = self.dir().join(format!("gateway-{}.log", self.respawns));
        self.gateway = spawn(
            Command::new(gateway_bin())
                .args(["run", "--policy"])
                .arg(&self.policy_path),
            &log,
        );
    }

    pub fn kill_scheduler(&mut self, signal: &str) {
        let mut process = self.scheduler.take().expect("scheduler running");
        process.signal(signal).expect("signal");
        assert!(
            process.wait_exit(Duration::from_secs(15)).is_some(),
            "scheduler did not exit on {signal}"
        );
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.pki.ca_pem.as_bytes()).expect("CA"),
            )
            .resolve("localhost", self.https)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    pub async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .client()
            .get(self.url(path))
            .header("x-api-key", key)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .client()
            .post(self.url(path))
            .header("x-api-key", key)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Triggers `job` as the operator and returns the run id.
    pub async fn run_now(&self, job: &str) -> i64 {
        let (status, body) = self
            .post(OPERATOR_KEY, &format!("/api/jobs/{job}/run"))
            .await;
        assert_eq!(
            status,
            202,
            "trigger {job}: {body}\n{}",
            self.scheduler_log()
        );
        body["run"].as_i64().expect("run id")
    }

    pub async fn run(&self, id: i64) -> Value {
        let (status, body) = self.get(OPERATOR_KEY, &format!("/api/runs/{id}")).await;
        assert_eq!(status, 200, "run {id}: {body}");
        body["run"].clone()
    }

    /// Waits until run `id` has `status` (any terminal status if `None`).
    pub async fn wait_run(&self, id: i64, status: Option<&str>, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let terminal = [
            "succeeded",
            "failed",
            "timed_out",
            "cancelled",
            "skipped",
            "lost",
        ];
        let mut last = Value::Null;
        while Instant::now() < deadline {
            last = self.run(id).await;
            let now = last["status"].as_str().unwrap_or_default();
            let done = match status {
                Some(want) => now == want,
                None => terminal.contains(&now),
            };
            if done {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "run {id} did not reach {status:?}; last: {last}\n--- scheduler log ---\n{}",
            self.scheduler_log()
        );
    }

    /// Waits until a reload has made `job` visible to the operator.
    pub async fn wait_job(&self, job: &str) {
        for _ in 0..100 {
            if self.get(OPERATOR_KEY, &format!("/api/jobs/{job}")).await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "job {job} did not appear after the reload:\n{}",
            self.scheduler_log()
        );
    }

    pub async fn logs(&self, id: i64) -> String {
        let r = self
            .client()
            .get(self.url(&format!("/api/runs/{id}/logs")))
            .header("x-api-key", OPERATOR_KEY)
            .send()
            .await
            .expect("logs");
        assert_eq!(r.status(), 200);
        r.text().await.expect("text")
    }

    pub async fn runs_of(&self, job: &str) -> Vec<Value> {
        let (status, body) = self
            .get(OPERATOR_KEY, &format!("/api/runs?job={job}&limit=100"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["runs"].as_array().cloned().unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.sched_admin))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    pub fn audit_records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir().join("audit.scheduler.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub async fn audit_events(&self, event: &str, count: usize) -> Vec<Value> {
        for _ in 0..200 {
            let found: Vec<Value> = self
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
            "fewer than {count} `{event}` records: {:?}",
            self.audit_records()
        );
    }

    pub fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &self.docker_host);
        c
    }

    /// Containers of this stack's scheduler that Docker still has.
    pub fn containers_of(&self, job: &str) -> Vec<String> {
        let out = self
            .docker()
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=gatehouse.job={job}"),
            ])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn render(vars: &[(String, String)], scheduler_extra: &str, jobs: &str) -> String {
    let mut text = POLICY
        .replace("{scheduler_extra}", scheduler_extra)
        .replace("{jobs}", jobs);
    for (k, v) in vars {
        text = text.replace(k, v);
    }
    text
}

fn spawn(command: &mut Command, log: &Path) -> ChildProcess {
    let mut owned = Command::new(command.get_program());
    owned.args(command.get_args());
    for (k, v) in command.get_envs() {
        if let Some(v) = v {
            owned.env(k, v);
        }
    }
    ChildProcess::spawn(owned, log).expect("spawn")
}

pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
