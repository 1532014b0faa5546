//! Table tests of `[scheduler]` and `[[job]]`: safe defaults, and every
//! loosening refused unless the scheduler allows it.

use std::path::Path;
use std::time::Duration;

use crate::scheduler::*;
use crate::*;

pub(crate) const HEAD: &str = concat!(
    crate::scheduler_test_head!(),
    r#"
[scheduler]
listen = "127.0.0.1:9100"
database = "state/scheduler.db"
allowed_images = ["registry.example.com/ops/*", "busybox@sha256:*", "local/busybox:1"]
allowed_mounts = [{ source = "/srv/reports" }, { source = "/srv/scratch", writable = true }]
allowed_networks = ["jobs-net"]
allowed_capabilities = ["NET_BIND_SERVICE"]
secret_dirs = ["/run/secrets"]
"#
);

pub(crate) fn with_job(job: &str) -> String {
    format!("{HEAD}\n[[job]]\n{job}\n")
}

fn parse_ok(text: &str) -> Policy {
    match parse(Path::new("/etc/gatehouse/policy.toml"), text) {
        Ok(p) => p,
        Err(e) => panic!("expected a valid policy, got: {e:?}"),
    }
}

fn first_problem(text: &str) -> Problem {
    match parse(Path::new("policy.toml"), text) {
        Ok(_) => panic!("expected the policy to be rejected"),
        Err(e) => e.problems()[0].clone(),
    }
}

const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn a_minimal_job_gets_every_hardened_default() {
    let policy = parse_ok(&with_job(&format!(
        "name = \"nightly\"\nschedule = \"0 3 * * *\"\nimage = \"busybox@sha256:{DIGEST}\"\ncommand = [\"true\"]"
    )));
    let scheduler = policy.scheduler.as_ref().expect("scheduler");
    assert_eq!(
        scheduler.database,
        Database::Sqlite("/etc/gatehouse/state/scheduler.db".into())
    );
    assert_eq!(scheduler.gateway_routes, vec!["jobs".to_owned()]);
    assert_eq!(
        scheduler.gateway_jwks.as_str(),
        "http://127.0.0.1:9090/jwks.json"
    );
    assert_eq!(scheduler.gateway_issuer, "https://localhost:8443");
    assert_eq!(scheduler.max_concurrent_runs, 4);
    assert_eq!(scheduler.log_cap, 1024 * 1024);
    let job = &policy.jobs[0];
    let c = &job.container;
    assert_eq!(c.user.to_string(), "65534:65534");
    assert!(c.read_only_rootfs);
    assert!(c.cap_add.is_empty());
    assert_eq!(c.network, Network::None);
    assert_eq!(c.memory, 256 * 1024 * 1024);
    assert_eq!(c.cpus, 1.0);
    assert_eq!(c.pids, 128);
    assert!(c.mounts.is_empty());
    assert!(job.image_pinned);
    assert_eq!(job.overlap, Overlap::Forbid);
    assert_eq!(job.catch_up, CatchUp::None);
    assert_eq!(job.retries.max, 0);
    assert_eq!(job.timeout, Duration::from_secs(3600));
    assert!(
        job.run_roles.is_empty(),
        "nobody may run a job by hand unless named"
    );
}

#[test]
fn a_full_job_converts() {
    let policy = parse_ok(&with_job(
        r#"name = "report"
schedule = "*/5 * * * *"
timezone = "Europe/Berlin"
image = "registry.example.com/ops/report:1.2"
pull = "never"
command = ["report", "--since", "24h"]
env = { FORMAT = "json", TOKEN = { file = "/run/secrets/t", sensitive = true }, FROM_ENV = "${HOME}" }
timeout = "10m"
overlap = "replace"
catch_up = "latest"
starting_deadline = "5m"
retries = { max = 2, backoff = "30s" }
run_roles = ["operator"]
view_roles = ["viewer"]
container = { network = "jobs-net", cap_add = ["cap_net_bind_service"], memory = "512MiB", mounts = [{ source = "/srv/scratch/x", target = "/data", writable = true }] }"#,
    ));
    let job = &policy.jobs[0];
    assert!(!job.image_pinned);
    assert_eq!(job.pull, PullPolicy::Never);
    assert_eq!(job.overlap, Overlap::Replace);
    assert_eq!(
        job.catch_up,
        CatchUp::Latest {
            starting_deadline: Duration::from_secs(300)
        }
    );
    assert_eq!(job.retries.max, 2);
    assert_eq!(job.container.cap_add, vec!["NET_BIND_SERVICE".to_owned()]);
    assert_eq!(job.container.network, Network::Named("jobs-net".into()));
    assert!(job.container.mounts[0].writable);
    let token = job.env.iter().find(|e| e.name == "TOKEN").expect("TOKEN");
    assert!(token.sensitive);
    assert_eq!(token.value, EnvSource::File("/run/secrets/t".into()));
    let from_env = job
        .env
        .iter()
        .find(|e| e.name == "FROM_ENV")
        .expect("FROM_ENV");
    assert_eq!(from_env.value, EnvSource::Env("HOME".into()));
    assert!(job.may_run(&["operator".into()].into()));
    assert!(job.may_view(&["viewer".into()].into()));
    assert!(!job.may_run(&["viewer".into()].into()));
}

#[test]
fn loosenings_beyond_the_scheduler_are_refused_with_their_location() {
    let cases: &[(&str, &str)] = &[
        ("image = \"evil.example.com/x:1\"", "not in [scheduler] allowed_images"),
        ("image = \"Not A Ref\"", "not a valid image reference"),
        ("image = \"busybox@sha256:abc\"", "not a valid image reference"),
        ("image = \"local/busybox:1\"\ncontainer = { user = \"0:0\" }", "never run as root"),
        ("image = \"local/busybox:1\"\ncontainer = { network = \"host\" }", "not in [scheduler] allowed_networks"),
        ("image = \"local/busybox:1\"\ncontainer = { cap_add = [\"SYS_ADMIN\"] }", "cannot be granted"),
        ("image = \"local/busybox:1\"\ncontainer = { cap_add = [\"NET_RAW\"] }", "not in [scheduler] allowed_capabilities"),
        ("image = \"local/busybox:1\"\ncontainer = { memory = \"64GiB\" }", "memory is outside"),
        ("image = \"local/busybox:1\"\ncontainer = { pids = 100000 }", "pids is outside"),
        ("image = \"local/busybox:1\"\ncontainer = { mounts = [{ source = \"/etc\", target = \"/x\" }] }", "not under any"),
        ("image = \"local/busybox:1\"\ncontainer = { mounts = [{ source = \"/srv/reports\", target = \"/x\", writable = true }] }", "read-only"),
        ("image = \"local/busybox:1\"\ncontainer = { mounts = [{ source = \"/srv/reports/../../etc\", target = \"/x\" }] }", "not an allowed host path"),
        ("image = \"local/busybox:1\"\ncontainer = { mounts = [{ source = \"/srv/reports\", target = \"/proc/x\" }] }", "cannot be a mount target"),
        ("image = \"local/busybox:1\"\nenv = { \"1BAD\" = \"x\" }", "not a valid environment variable name"),
        ("image = \"local/busybox:1\"\nenv = { \"A-B\" = \"x\" }", "not a valid environment variable name"),
        ("image = \"local/busybox:1\"\nenv = { T = { value = \"a\", file = \"/b\" } }", "exactly one of"),
        ("image = \"local/busybox:1\"\noverlap = \"sometimes\"", "not an overlap mode"),
        ("image = \"local/busybox:1\"\nstarting_deadline = \"5m\"", "only applies to catch_up"),
        ("image = \"local/busybox:1\"\nrun_roles = [\"admin\"]", "unknown role"),
        ("image = \"local/busybox:1\"\nshell = true\ncommand = [\"a\", \"b\"]", "one script string"),
        ("image = \"local/busybox:1\"\nretries = { max = 50 }", "between 0 and 10"),
        ("image = \"local/busybox:1\"\ntimeout = \"30d\"", "at most 7 days"),
    ];
    for (body, expected) in cases {
        let text = with_job(&format!("name = \"j\"\n{body}"));
        let problem = first_problem(&text);
        assert!(
            problem.message.contains(expected),
            "{body}: expected `{expected}`, got `{}`",
            problem.message
        );
        let job_line = text.lines().position(|l| l == "[[job]]").expect("job") + 1;
        assert!(
            problem.line > job_line,
            "{body}: the problem points into the job, got line {}",
            problem.line
        );
    }
}

#[test]
fn jobs_without_a_scheduler_section_are_refused() {
    let head = HEAD.split("[scheduler]").next().expect("head");
    let problem = first_problem(&format!("{head}\n[[job]]\nname = \"j\"\nimage = \"x:1\"\n"));
    assert!(
        problem.message.contains("need a [scheduler]"),
        "{}",
        problem.message
    );
}

#[test]
fn scheduler_needs_a_route_and_its_own_port() {
    let text = HEAD.replace(
        "upstream = \"http://127.0.0.1:9100\"",
        "upstream = \"http://127.0.0.1:9000\"",
    );
    assert!(first_problem(&text)
        .message
        .contains("no [[route]] proxies to the scheduler"));
    let text = HEAD.replace("listen = \"127.0.0.1:9100\"", "listen = \"127.0.0.1:9090\"");
    assert!(first_problem(&text)
        .message
        .contains("overlaps a gateway listener"));
}

#[test]
fn only_routes_that_reach_the_schedulers_host_and_port_are_its_audience() {
    // Another service on the same port elsewhere: its assertions must not
    // be accepted by the scheduler.
    let other = "[[route]]\nname = \"reports\"\npath = \"/reports\"\nupstream = \"http://10.0.0.7:9100\"\nroles = [\"viewer\"]\n";
    let text = HEAD.replace("[scheduler]", &format!("{other}\n[scheduler]"));
    let policy = parse_ok(&text);
    let scheduler = policy.scheduler.as_ref().expect("scheduler");
    assert_eq!(scheduler.gateway_routes, vec!["jobs".to_owned()]);

    // Listening on every interface: a loopback upstream still counts, a
    // host name never does (it may be any machine) until it is named.
    let any = text.replace("listen = \"127.0.0.1:9100\"", "listen = \"0.0.0.0:9100\"");
    let policy = parse_ok(&any.replace("http://127.0.0.1:9100", "http://localhost:9100"));
    let scheduler = policy.scheduler.as_ref().expect("scheduler");
    assert_eq!(scheduler.gateway_routes, vec!["jobs".to_owned()]);
    let named_host = any.replace("http://127.0.0.1:9100", "http://scheduler:9100");
    let problem = first_problem(&named_host);
    assert!(
        problem
            .message
            .contains("no [[route]] proxies to the scheduler at 0.0.0.0:9100"),
        "{}",
        problem.message
    );
    assert!(problem
        .hint
        .as_deref()
        .unwrap_or_default()
        .contains("gateway_routes"));
    let named = named_host.replace(
        "allowed_images =",
        "gateway_routes = [\"jobs\"]\nallowed_images =",
    );
    let policy = parse_ok(&named);
    let scheduler = policy.scheduler.as_ref().expect("scheduler");
    assert_eq!(scheduler.gateway_routes, vec!["jobs".to_owned()]);
}

#[test]
fn duplicate_job_names_are_refused() {
    let job = "name = \"j\"\nimage = \"local/busybox:1\"";
    let problem = first_problem(&format!("{}\n[[job]]\n{job}\n", with_job(job)));
    assert!(
        problem.message.contains("declared twice"),
        "{}",
        problem.message
    );
}

#[test]
fn env_names_follow_posix() {
    for good in ["A", "_x", "PATH_2", "a1"] {
        assert!(is_env_name(good), "{good}");
    }
    for bad in ["", "1A", "A-B", "A B", "Ä", "A=B"] {
        assert!(!is_env_name(bad), "{bad}");
    }
}

#[test]
fn jwks_refresh_and_ca_have_safe_defaults_and_bounds() {
    let policy = parse_ok(HEAD);
    let scheduler = policy.scheduler.as_ref().expect("scheduler");
    assert_eq!(scheduler.gateway_jwks_refresh, Duration::from_secs(300));
    assert_eq!(scheduler.gateway_jwks_ca, None);

    let https = HEAD.replace(
        "database = ",
        "gateway_jwks = \"https://gw.internal/jwks.json\"\ngateway_jwks_ca = \"ca.pem\"\ngateway_jwks_refresh = \"30s\"\ndatabase = ",
    );
    let policy = parse_ok(&https);
    let scheduler = policy.scheduler.as_ref().expect("scheduler");
    assert_eq!(scheduler.gateway_jwks_refresh, Duration::from_secs(30));
    assert_eq!(
        scheduler.gateway_jwks_ca.as_deref(),
        Some(Path::new("/etc/gatehouse/ca.pem"))
    );

    let plain = HEAD.replace("database = ", "gateway_jwks_ca = \"ca.pem\"\ndatabase = ");
    assert!(first_problem(&plain)
        .message
        .contains("only used for an https gateway_jwks"));
    for bad in ["\"500ms\"", "\"2d\""] {
        let text = HEAD.replace(
            "database = ",
            &format!("gateway_jwks_refresh = {bad}\ndatabase = "),
        );
        assert!(first_problem(&text).message.contains("between 1s and 1d"));
    }
}

#[test]
fn the_executor_is_docker_unless_swarm_is_asked_for() {
    let scheduler = |text: &str| parse_ok(text).scheduler.expect("scheduler").executor;
    assert_eq!(scheduler(HEAD), Executor::Docker);
    let swarm = HEAD.replace(
        "secret_dirs = [\"/run/secrets\"]",
        "secret_dirs = [\"/run/secrets\"]\nexecutor = \"swarm\"",
    );
    assert_eq!(
        scheduler(&swarm),
        Executor::Swarm {
            nodes_enforce_no_new_privileges: false
        }
    );
    let promised = swarm.replace(
        "executor = \"swarm\"",
        "executor = \"swarm\"\nswarm_nodes_enforce_no_new_privileges = true",
    );
    assert_eq!(
        scheduler(&promised),
        Executor::Swarm {
            nodes_enforce_no_new_privileges: true
        }
    );
}

#[test]
fn an_unknown_executor_or_a_stray_swarm_setting_is_refused_where_it_is() {
    for (line, expected) in [
        ("executor = \"kubernetes\"", "unknown executor `kubernetes`"),
        (
            "swarm_nodes_enforce_no_new_privileges = true",
            "only for executor = \"swarm\"",
        ),
    ] {
        let text = HEAD.replace(
            "secret_dirs = [\"/run/secrets\"]",
            &format!("secret_dirs = [\"/run/secrets\"]\n{line}"),
        );
        let problem = first_problem(&text);
        assert!(problem.message.contains(expected), "{}", problem.message);
        let at = text.lines().position(|l| l == line).expect("line") + 1;
        assert_eq!(problem.line, at, "{}", problem.message);
    }
}

#[test]
fn a_postgres_database_says_how_it_is_reached_and_keeps_its_password_out_of_the_url() {
    let with_db = |db: &str| {
        HEAD.replace(
            "database = \"state/scheduler.db\"",
            &format!("database = {db:?}"),
        )
    };
    let policy = parse_ok(&with_db(
        "postgres://gatehouse@db.internal:5432/gatehouse?sslmode=disable",
    ));
    assert_eq!(
        policy.scheduler.expect("scheduler").database,
        Database::Postgres {
            url: "postgres://gatehouse@db.internal:5432/gatehouse".to_owned(),
            password: None,
            tls: PostgresTls::Disabled,
        }
    );
    let verified = parse_ok(&with_db(
        "postgres://gatehouse@db.internal/gatehouse?application_name=gh&sslmode=verify-full",
    ));
    assert_eq!(
        verified.scheduler.expect("scheduler").database,
        Database::Postgres {
            url: "postgres://gatehouse@db.internal/gatehouse?application_name=gh".to_owned(),
            password: None,
            tls: PostgresTls::VerifyFull { ca: None },
        }
    );
    for (db, expected) in [
        (
            "postgres://gatehouse@db.internal/gatehouse",
            "does not say how to reach PostgreSQL",
        ),
        (
            "postgres://gatehouse@db.internal/gatehouse?sslmode=require",
            "sslmode=require can be downgraded or accepts any certificate",
        ),
        (
            "postgres://gatehouse@db.internal/gatehouse?sslmode=prefer",
            "sslmode=prefer can be downgraded",
        ),
        (
            "postgres://gatehouse:hunter2@db.internal/gatehouse?sslmode=disable",
            "holds a password",
        ),
    ] {
        let text = with_db(db);
        let problem = first_problem(&text);
        assert!(
            problem.message.contains(expected),
            "{db}: {}",
            problem.message
        );
        let at = text
            .lines()
            .position(|l| l.starts_with("database = "))
            .expect("line")
            + 1;
        assert_eq!(problem.line, at);
    }
}
