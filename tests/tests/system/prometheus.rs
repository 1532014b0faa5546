//! The deployment's monitoring files against a real Prometheus: the compose
//! stack's `prometheus.yml` (with only the addresses and intervals changed)
//! scrapes a real gateway and scheduler, loads the real `alerts.yml`, and
//! every query of the Grafana dashboard answers with data.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gatehouse_tests::{free_port, wait_for_port, ChildProcess};
use serde_json::Value;

use gatehouse_tests::process::OutputWithStdin;
use gatehouse_tests::scheduler::{job, OPERATOR_KEY, VIEWER_KEY};
use gatehouse_tests::SchedulerUnderTest;

/// Debian's `prometheus` package (also provides promtool); tests/run installs it.
const PROMETHEUS: &str = "prometheus";
const WAIT: Duration = Duration::from_secs(40);

fn compose_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose")
}

/// Runs promtool in the compose directory and insists it succeeds.
fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(compose_dir())
        .output()
        .expect("promtool (Debian package `prometheus`; tests/run installs it)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn promtool_check_metrics(what: &str, metrics: &str) {
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(metrics.as_bytes())
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics ({what}): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real Prometheus running `compose/prometheus.yml`, pointed at a stack.
struct Prometheus {
    process: ChildProcess,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(stack: &SchedulerUnderTest) -> Prometheus {
        let compose = compose_dir();
        let rules = compose.join("alerts.yml");
        let mut config =
            std::fs::read_to_string(compose.join("prometheus.yml")).expect("prometheus.yml");
        // Each edit must apply exactly once, so a change to the compose
        // file cannot silently leave the test scraping something else.
        for (from, to) in [
            ("scrape_interval: 15s", "scrape_interval: 1s".to_owned()),
            ("scrape_timeout: 10s", "scrape_timeout: 1s".to_owned()),
            (
                "evaluation_interval: 15s",
                "evaluation_interval: 1s".to_owned(),
            ),
            ("\"gateway:9090\"", format!("\"{}\"", stack.gw_admin)),
            ("\"scheduler:9101\"", format!("\"{}\"", stack.sched_admin)),
            ("  - alerts.yml", format!("  - {}", rules.display())),
        ] {
            assert_eq!(
                config.matches(from).count(),
                1,
                "prometheus.yml should contain `{from}` once:\n{config}"
            );
            config = config.replace(from, &to);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        let port = free_port();
        let mut command = Command::new(PROMETHEUS);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle");
        let process = ChildProcess::spawn(command, &dir.path().join("prometheus.log"))
            .expect("the prometheus server (Debian package `prometheus`; tests/run installs it)");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if let Err(e) = wait_for_port(addr, Duration::from_secs(20)) {
            panic!("{e}\n--- prometheus log ---\n{}", process.log_text());
        }
        Prometheus {
            process,
            url: format!("http://{addr}"),
            _dir: dir,
        }
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let body: Value = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await
            .expect("prometheus API")
            .json()
            .await
            .expect("prometheus API JSON");
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }

    async fn query(&self, promql: &str) -> Vec<Value> {
        self.api("/api/v1/query", &[("query", promql)]).await["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `promql` until it returns at least one series.
    async fn wait_for(&self, promql: &str) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let result = self.query(promql).await;
            if !result.is_empty() {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "`{promql}` returned nothing for {WAIT:?}\n--- prometheus log ---\n{}",
            self.process.log_text()
        );
    }
}

/// A route with a tiny limit, so a second request is refused with 429.
/// Appended after the jobs: TOML lets an array of tables continue later.
const TIGHT_ROUTE: &str = r#"
[[route]]
name = "tight"
path = "/tight"
upstream = "http://127.0.0.1:1"
roles = ["operator"]
rate_limit = "1/min"
"#;

/// The alert names declared in `alerts.yml`.
fn alert_names() -> Vec<String> {
    std::fs::read_to_string(compose_dir().join("alerts.yml"))
        .expect("alerts.yml")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_the_stack_with_the_compose_config_alerts_and_dashboard() {
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts.test.yml"]);

    let jobs = [
        job("measured", "command = [\"true\"]"),
        job("tick", "schedule = \"*/2 * * * * *\"\ncommand = [\"true\"]"),
        job("broken", "command = [\"true\"]")
            .replace("gatehouse-test/busybox:latest", "gatehouse-test/not-here:1"),
        TIGHT_ROUTE.to_owned(),
    ]
    .concat();
    let stack = SchedulerUnderTest::start(&jobs).await;
    let prometheus = Prometheus::start(&stack);

    // Events behind every series the alerts and the dashboard use.
    assert_eq!(stack.get(OPERATOR_KEY, "/api/jobs").await.0, 200);
    let anonymous = stack.client().get(stack.url("/api/jobs")).send().await;
    assert_eq!(anonymous.expect("GET").status(), 401);
    assert_eq!(stack.get("gh_not_a_known_key", "/api/jobs").await.0, 401);
    let first = stack.get(OPERATOR_KEY, "/tight/x").await.0;
    assert_ne!(first, 429, "the first request is within the limit");
    assert_eq!(stack.get(OPERATOR_KEY, "/tight/x").await.0, 429);
    let (status, body) = stack.post(VIEWER_KEY, "/api/jobs/measured/run").await;
    assert_eq!(status, 403, "{body}");
    let measured = stack.run_now("measured").await;
    let broken = stack.run_now("broken").await;
    stack
        .wait_run(measured, Some("succeeded"), Duration::from_secs(30))
        .await;
    stack
        .wait_run(broken, Some("failed"), Duration::from_secs(30))
        .await;

    let gateway_metrics = reqwest::get(format!("http://{}/metrics", stack.gw_admin))
        .await
        .expect("gateway metrics")
        .text()
        .await
        .expect("text");
    let scheduler_metrics = stack.metrics().await;
    promtool_check_metrics("gateway", &gateway_metrics);
    promtool_check_metrics("scheduler", &scheduler_metrics);

    // Both targets are up under the compose job names, and the series
    // carry the labels the alerts and the dashboard select on (the
    // scheduler's `job_name` is not renamed: it does not clash with `job`).
    for promql in [
        r#"up{job="gatehouse-gateway"} == 1"#,
        r#"up{job="gatehouse-scheduler"} == 1"#,
        r#"gatehouse_requests_total{job="gatehouse-gateway",route="jobs",status="200"} >= 1"#,
        r#"gatehouse_request_duration_seconds_count{route="jobs"} >= 1"#,
        r#"gatehouse_denials_total{reason="unauthenticated"} >= 1"#,
        r#"gatehouse_denials_total{reason="credential-unknown"} >= 1"#,
        r#"gatehouse_login_failures_total{method="api_key"} >= 1"#,
        r#"gatehouse_rate_limited_total{tier="route",route="tight"} >= 1"#,
        // Seconds left on the 30-day test certificate, not a timestamp.
        r#"gatehouse_tls_cert_expiry_seconds > 29 * 86400 < 31 * 86400"#,
        r#"gatehouse_scheduler_api_denials_total{reason="forbidden"} >= 1"#,
        r#"gatehouse_scheduler_runs_total{job="gatehouse-scheduler",job_name="measured",outcome="succeeded"} == 1"#,
        r#"gatehouse_scheduler_runs_total{job_name="broken",outcome="failed"} >= 1"#,
        r#"gatehouse_scheduler_run_duration_seconds_bucket{job_name="measured",le="+Inf"} >= 1"#,
        r#"gatehouse_scheduler_run_duration_seconds_count{job_name="measured"} >= 1"#,
        r#"gatehouse_scheduler_schedule_jitter_seconds_count{job_name="tick"} > 0"#,
        r#"gatehouse_scheduler_docker_errors_total{operation="ensure_image"} >= 1"#,
    ] {
        prometheus.wait_for(promql).await;
    }

    check_alert_rules(&prometheus).await;
    check_dashboard(&prometheus, &[&gateway_metrics, &scheduler_metrics]).await;
}

/// Every alert of `alerts.yml` is loaded, evaluated without error, and
/// quiet on a healthy stack.
async fn check_alert_rules(prometheus: &Prometheus) {
    let expected = alert_names();
    assert!(expected.len() >= 5, "alerts.yml declares {expected:?}");
    let deadline = Instant::now() + WAIT;
    let mut rules = Vec::new();
    while Instant::now() < deadline {
        let data = prometheus.api("/api/v1/rules", &[("type", "alert")]).await;
        rules = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect::<Vec<_>>();
        // Inactive too: an evaluation from before the first scrape may have
        // left an `absent(up)` rule pending until the next one clears it.
        if rules.len() == expected.len()
            && rules
                .iter()
                .all(|r| r["health"] == "ok" && r["state"] == "inactive")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut loaded: Vec<String> = rules
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    loaded.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(loaded, want, "loaded alert rules");
    for rule in &rules {
        assert_eq!(rule["health"], "ok", "{rule}");
        assert_eq!(rule["state"], "inactive", "a healthy stack alerts: {rule}");
    }
}

/// Metric names an expression uses (`gatehouse_*`).
fn metric_names(expr: &str) -> Vec<&str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| token.starts_with("gatehouse_"))
        .collect()
}

/// The dashboard imports with a Prometheus datasource variable, its
/// metrics are ones the binaries export, and each query returns data.
async fn check_dashboard(prometheus: &Prometheus, exports: &[&str]) {
    let text = std::fs::read_to_string(compose_dir().join("grafana/gatehouse.json"))
        .expect("grafana/gatehouse.json");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus datasource variable: {variables:?}"
    );
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 11, "{} panels", panels.len());
    let mut exprs = Vec::new();
    for panel in panels {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{panel}");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{target}");
            exprs.push((
                target["expr"].as_str().expect("expr").to_owned(),
                target["legendFormat"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
    }
    for (expr, legend) in &exprs {
        let names = metric_names(expr);
        assert!(
            !names.is_empty() || expr.starts_with("up{"),
            "no metric in `{expr}`"
        );
        for name in names {
            let exported = exports.iter().any(|metrics| {
                metrics.lines().any(|line| {
                    line.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                })
            });
            assert!(exported, "`{name}` (in `{expr}`) is not exported");
        }
        // Grafana's rate interval is at least four scrape intervals.
        let series = prometheus
            .wait_for(&expr.replace("$__rate_interval", "10s"))
            .await;
        // A legend names labels the query keeps (a `by` with a wrong label
        // would still return data, but not that label).
        for label in legend_labels(legend) {
            for one in &series {
                assert!(
                    one["metric"].get(label).is_some(),
                    "legend `{legend}` of `{expr}` needs label `{label}`: {one}"
                );
            }
        }
    }
}

/// Labels a Grafana legend format refers to (`{{label}}`).
fn legend_labels(legend: &str) -> Vec<&str> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}"))
        .map(|(label, _)| label.trim())
        .collect()
}
