//! The scheduler under test, as a whole stack: the real gateway in front
//! (a [`GatewayUnderTest`]), the real `gatehouse-scheduler` behind it on a
//! private dockerd, one policy for both, with API keys for an operator
//! and a viewer. Everything talks over real sockets; the scheduler only
//! ever sees requests the gateway signed. Its log is shown when it does
//! not come up, and its tail when a test fails while it runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit::AuditLog;
use crate::docker::{PrivateDocker, TEST_IMAGE};
use crate::gateway::{server_placeholders, GatewayPorts, GatewayUnderTest};
use crate::process::{free_port, show_log_on_failure, ChildProcess};
use crate::template::Placeholders;
use crate::{binaries, TestPki};

pub const OPERATOR_KEY: &str = "gh_test_operator_key_0123456789abcdef";
pub const VIEWER_KEY: &str = "gh_test_viewer_key_0123456789abcdef";

/// One dockerd for the stacks of a test binary, started on first use.
/// (Apart from [`PrivateDocker::shared`], so the stacks' containers never
/// meet those of tests that drive Docker directly.)
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

/// The policy of every stack. Placeholders: the gateway's (see
/// [`server_placeholders`]) plus `{sched}`, `{sched_admin}`,
/// `{sched_upstream}` (the `jobs` route's upstream), the key hashes, and
/// the sections `{gateway_extra}`, `{scheduler_extra}` and `{jobs}`.
/// `{gateway_extra}` follows the `jobs` route: keys before its first table
/// header are that route's.
pub const STACK_POLICY: &str = concat!(
    crate::listen_and_tls!(),
    r#"
[limits]
shutdown_grace = "2s"
"#,
    crate::no_rate_limits!(),
    r#"
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
database = "{database}"
allowed_images = ["gatehouse-test/*"]
stop_grace = "2s"
max_concurrent_runs = 4
{scheduler_extra}
{jobs}
"#
);

/// A job table with the test image and both roles; `body` adds keys.
pub fn job(name: &str, body: &str) -> String {
    format!(
        "\n[[job]]\nname = \"{name}\"\nimage = \"{TEST_IMAGE}\"\npull = \"never\"\nrun_roles = [\"operator\"]\nview_roles = [\"viewer\"]\n{body}\n"
    )
}

pub struct SchedulerUnderTest {
    pub gateway: GatewayUnderTest,
    pub scheduler: Option<ChildProcess>,
    pub https: SocketAddr,
    /// The HTTP listener, which only redirects to `https`.
    pub http: SocketAddr,
    pub sched: SocketAddr,
    pub sched_admin: SocketAddr,
    pub gw_admin: SocketAddr,
    pub policy_path: PathBuf,
    pub docker_host: String,
    /// Added to the scheduler's command line by
    /// [`SchedulerUnderTest::spawn_scheduler`].
    pub scheduler_args: Vec<String>,
    placeholders: Placeholders,
    /// The `{gateway_extra}` section, kept when the policy is rewritten.
    gateway_extra: String,
    spawns: u32,
}

impl SchedulerUnderTest {
    pub async fn start(jobs: &str) -> SchedulerUnderTest {
        Self::start_on(&shared_docker().host(), "", jobs).await
    }

    pub async fn start_on(
        docker_host: &str,
        scheduler_extra: &str,
        jobs: &str,
    ) -> SchedulerUnderTest {
        Self::start_with_gateway(docker_host, "", scheduler_extra, jobs).await
    }

    /// Like [`SchedulerUnderTest::start_on`], with `gateway_extra` (e.g.
    /// `[session]` and `[[oidc]]` tables) in the policy before the
    /// `[scheduler]` table.
    pub async fn start_with_gateway(
        docker_host: &str,
        gateway_extra: &str,
        scheduler_extra: &str,
        jobs: &str,
    ) -> SchedulerUnderTest {
        Self::start_full(
            docker_host,
            gateway_extra,
            scheduler_extra,
            jobs,
            None,
            None,
        )
        .await
    }

    /// With the run history in `database` (a `postgres://` URL) instead
    /// of the stack's own SQLite file.
    pub async fn start_with_database(database: &str, jobs: &str) -> SchedulerUnderTest {
        Self::start_with_database_and(database, "", jobs).await
    }

    /// Like [`SchedulerUnderTest::start_with_database`], with more
    /// `[scheduler]` keys (e.g. `database_ca`).
    pub async fn start_with_database_and(
        database: &str,
        scheduler_extra: &str,
        jobs: &str,
    ) -> SchedulerUnderTest {
        let docker = shared_docker().host();
        Self::start_full(&docker, "", scheduler_extra, jobs, None, Some(database)).await
    }

    /// With the `jobs` route's upstream at `upstream_port` (a relay in
    /// front of the scheduler) instead of the scheduler's own port; the
    /// scheduler then needs `gateway_routes = ["jobs"]`.
    /// With the run history in `database` (a `postgres://` URL) when
    /// given, and `gateway_extra` as in [`STACK_POLICY`].
    pub async fn start_relayed(
        upstream_port: u16,
        gateway_extra: &str,
        scheduler_extra: &str,
        jobs: &str,
        database: Option<&str>,
    ) -> SchedulerUnderTest {
        let docker = shared_docker().host();
        Self::start_full(
            &docker,
            gateway_extra,
            scheduler_extra,
            jobs,
            Some(upstream_port),
            database,
        )
        .await
    }

    /// Another scheduler process on this stack's policy (the same gateway
    /// keys and database) with listeners of its own: a replica. Returns it
    /// and its API address once it is ready.
    pub async fn spawn_replica(&self) -> (ChildProcess, SocketAddr) {
        let (api, admin) = (free_port(), free_port());
        let policy = std::fs::read_to_string(&self.policy_path)
            .expect("policy")
            .replace(&self.sched.to_string(), &format!("127.0.0.1:{api}"))
            .replace(&self.sched_admin.to_string(), &format!("127.0.0.1:{admin}"));
        let path = self.dir().join(format!("replica-{api}.toml"));
        std::fs::write(&path, policy).expect("replica policy");
        let log = self.dir().join(format!("replica-{api}.log"));
        let process =
            ChildProcess::spawn(self.scheduler_command(&path), &log).expect("spawn a replica");
        if !answers_200(&format!("http://127.0.0.1:{admin}/readyz")).await {
            panic!("the replica did not become ready:\n{}", process.log_text());
        }
        (process, SocketAddr::from(([127, 0, 0, 1], api)))
    }

    /// `gatehouse-scheduler run` on `policy`, against this stack's Docker.
    fn scheduler_command(&self, policy: &Path) -> Command {
        let mut command = Command::new(binaries::scheduler());
        command
            .args(["run", "--policy"])
            .arg(policy)
            .env("DOCKER_HOST", &self.docker_host)
            .env("GATEHOUSE_LOG", "info,gatehouse_scheduler=debug");
        command
    }

    async fn start_full(
        docker_host: &str,
        gateway_extra: &str,
        scheduler_extra: &str,
        jobs: &str,
        upstream_port: Option<u16>,
        database: Option<&str>,
    ) -> SchedulerUnderTest {
        let pki = TestPki::new().expect("test CA");
        let database = database.map_or_else(
            || pki.dir.path().join("scheduler.db").display().to_string(),
            str::to_owned,
        );
        let ports = GatewayPorts::free();
        let (sched, sched_admin) = (free_port(), free_port());
        let mut placeholders = Placeholders::new();
        server_placeholders(&mut placeholders, &pki, ports);
        placeholders
            .set("gw_admin", ports.admin)
            .set("sched", sched)
            .set("sched_upstream", upstream_port.unwrap_or(sched))
            .set("sched_admin", sched_admin)
            .set("database", database)
            .set("operator_hash", sha256_hex(OPERATOR_KEY))
            .set("viewer_hash", sha256_hex(VIEWER_KEY));
        let policy_path = pki.dir.path().join("policy.toml");
        let sections = [
            ("gateway_extra", gateway_extra),
            ("scheduler_extra", scheduler_extra),
            ("jobs", jobs),
        ];
        placeholders.write(&policy_path, STACK_POLICY, &sections);
        let gateway =
            GatewayUnderTest::spawn(pki, policy_path.clone(), ports, placeholders.clone());
        let mut stack = SchedulerUnderTest {
            https: gateway.https,
            http: gateway.http,
            gw_admin: gateway.admin,
            gateway,
            scheduler: None,
            sched: SocketAddr::from(([127, 0, 0, 1], sched)),
            sched_admin: SocketAddr::from(([127, 0, 0, 1], sched_admin)),
            policy_path,
            docker_host: docker_host.to_owned(),
            scheduler_args: Vec::new(),
            placeholders,
            gateway_extra: gateway_extra.to_owned(),
            spawns: 0,
        };
        stack.gateway.wait_ready();
        stack.spawn_scheduler().await;
        stack
    }

    /// The stack's directory: PKI, policy, logs, database, audit logs.
    pub fn dir(&self) -> &Path {
        self.gateway.dir()
    }

    /// Rewrites the policy with other jobs; both programs reload it.
    pub fn write_policy(&self, scheduler_extra: &str, jobs: &str) {
        let sections = [
            ("gateway_extra", self.gateway_extra.as_str()),
            ("scheduler_extra", scheduler_extra),
            ("jobs", jobs),
        ];
        self.placeholders
            .write(&self.policy_path, STACK_POLICY, &sections);
    }

    /// Starts (or starts again) the scheduler and waits until it is ready.
    pub async fn spawn_scheduler(&mut self) {
        self.spawn_scheduler_unready().await;
        self.wait_ready().await;
    }

    /// Starts (or starts again) the scheduler and waits only until its
    /// admin listener answers `/healthz`, ready or not.
    pub async fn spawn_scheduler_unready(&mut self) {
        self.spawns += 1;
        let log = self.dir().join(format!("scheduler-{}.log", self.spawns));
        let mut command = self.scheduler_command(&self.policy_path);
        command.args(&self.scheduler_args);
        self.scheduler = Some(ChildProcess::spawn(command, &log).expect("spawn the scheduler"));
        if !answers_200(&format!("http://{}/healthz", self.sched_admin)).await {
            panic!("the scheduler did not start:\n{}", self.scheduler_log());
        }
    }

    /// `/readyz`: its status and body.
    pub async fn readyz(&self) -> (u16, String) {
        let r = reqwest::get(format!("http://{}/readyz", self.sched_admin))
            .await
            .expect("readyz");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    pub async fn wait_ready(&self) {
        if !answers_200(&format!("http://{}/readyz", self.sched_admin)).await {
            panic!(
                "the scheduler did not become ready:\n{}",
                self.scheduler_log()
            );
        }
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
        self.gateway.restart();
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
        self.gateway
            .pki
            .https_client(self.https)
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

    /// The scheduler's audit log (beside the gateway's `audit.jsonl`).
    pub fn audit_log(&self) -> AuditLog {
        AuditLog::at(self.dir().join("audit.scheduler.jsonl"))
    }

    pub fn audit_records(&self) -> Vec<Value> {
        self.audit_log().records()
    }

    /// Waits until `count` scheduler audit records have `event`.
    pub async fn audit_events(&self, event: &str, count: usize) -> Vec<Value> {
        self.audit_log()
            .wait_for(event, count, Duration::from_secs(10))
            .await
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

impl Drop for SchedulerUnderTest {
    fn drop(&mut self) {
        if let Some(scheduler) = &self.scheduler {
            show_log_on_failure("scheduler", scheduler);
        }
    }
}

/// Whether `url` answers 200 within 20 seconds (polled every 50 ms).
async fn answers_200(url: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if reqwest::get(url).await.is_ok_and(|r| r.status() == 200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
