//! The compose stack, brought up the way the README says: `compose/up`,
//! here with docker-compose 1.29 against a private dockerd of its own.
//!
//! No registry is reachable, so the images compose names are seeded first:
//! FROM-scratch images with this build's binaries and the libraries `ldd`
//! names (what `compose/Dockerfile` would produce, minus Debian), and the
//! demo job's `busybox:1.36.1` as a tag of the test busybox. The demo job's
//! schedule is shortened to every 2 seconds in a copy of the policy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::compose_stack::ComposeStack;
use gatehouse_tests::docker::{PrivateDocker, TEST_IMAGE};
use serde_json::Value;

use gatehouse_tests::binaries;

const COMPOSE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../compose");
/// The uid:gid compose/Dockerfile gives its user.
const UID: u32 = 10001;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_up_serves_https_bootstraps_an_admin_and_runs_the_demo_job() {
    let stack = ComposeStack::new(COMPOSE_DIR, "ghcompose");
    let (docker, compose_dir, compose_bin) = (&stack.docker, &stack.dir, &stack.compose_bin);
    let (https_port, http_port, project) = (stack.https_port, stack.http_port, &stack.project);
    let policy_file = policy_with_a_fast_demo_job(compose_dir, stack.work.path());
    let env = |command: &mut Command| {
        stack.env(command);
        command
            .env("GATEHOUSE_POLICY_FILE", &policy_file)
            .env("GATEHOUSE_UP_TIMEOUT", "60");
    };

    // Declared after `stack`, so dropped before it: even a failing test
    // takes the stack down, since dockerd leaves the bridges of networks
    // that still exist on the host when it stops.
    let mut cleanup = Command::new(compose_dir.join("down"));
    env(&mut cleanup);
    let _down_on_drop = DownOnDrop(cleanup);

    let password = first_up_prints_the_admin_password(&env, compose_dir);
    let client = https_client(&stack.ca_file, https_port);
    let base = format!("https://localhost:{https_port}");
    the_gateway_refuses_strangers_and_redirects_http(&client, &base, &password, http_port).await;
    only_the_hash_is_stored(docker, project, &password);
    let logs_now = || logs(&env, compose_bin, compose_dir);
    the_demo_job_runs_on_schedule(&client, &base, &password, &logs_now).await;
    let mut restart = Command::new(compose_bin);
    env(&mut restart);
    restart
        .arg("-f")
        .arg(compose_dir.join("docker-compose.yml"))
        .args(["restart", "gateway"]);
    the_assertion_key_survives_a_restart(&client, &base, &password, restart).await;
    // A second compose/up changes nothing and prints no password.
    let mut again = Command::new(compose_dir.join("up"));
    env(&mut again);
    let second = String::from_utf8_lossy(&check(&mut again).stdout).into_owned();
    assert!(!second.contains("admin password:"), "{second}");
    assert!(second.contains("already exists"), "{second}");
    let _: Value = admin_get(&client, &base, &password, "/api/jobs").await;
    drop(client);
    stack.down(&env);
}

/// The images compose names: our two binaries, and the demo job's
/// busybox as a tag of the test image.
pub(crate) fn seed_images(docker: &PrivateDocker, work: &Path) {
    seed_image(docker, work, binaries::gateway(), "gateway");
    seed_image(docker, work, binaries::scheduler(), "scheduler");
    check(
        docker
            .docker_cli()
            .args(["tag", TEST_IMAGE, "busybox:1.36.1"]),
    );
}

/// A copy of compose's policy in `work`, the demo job every 2 seconds.
fn policy_with_a_fast_demo_job(compose_dir: &Path, work: &Path) -> PathBuf {
    let policy = std::fs::read_to_string(compose_dir.join("policy.toml")).expect("policy");
    let fast = policy.replace("schedule = \"* * * * *\"", "schedule = \"*/2 * * * * *\"");
    assert_ne!(fast, policy, "the demo job's schedule line moved");
    let policy_file = work.join("policy.toml");
    std::fs::write(&policy_file, fast).expect("policy copy");
    policy_file
}

/// The first `compose/up` prints the admin password, once.
pub(crate) fn first_up_prints_the_admin_password(
    env: &dyn Fn(&mut Command),
    compose_dir: &Path,
) -> String {
    let mut up = Command::new(compose_dir.join("up"));
    env(&mut up);
    let first = check(&mut up);
    let first_out = String::from_utf8_lossy(&first.stdout).into_owned();
    let password = first_out
        .lines()
        .find_map(|l| l.strip_prefix("admin password: "))
        .unwrap_or_else(|| panic!("no password printed:\n{first_out}"))
        .trim()
        .to_owned();
    assert!(password.len() >= 32, "{password}");
    password
}

/// Real TLS against the development CA that compose/up exported.
pub(crate) fn https_client(ca_file: &Path, https_port: u16) -> reqwest::Client {
    let ca = std::fs::read(ca_file).expect("compose/up exports the CA");
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA"))
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], https_port)),
        )
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Anonymous and wrong-password requests get 401 with the security
/// headers, the admin gets the jobs, and the redirect listener is
/// published too.
async fn the_gateway_refuses_strangers_and_redirects_http(
    client: &reqwest::Client,
    base: &str,
    password: &str,
    http_port: u16,
) {
    let anonymous = client
        .get(format!("{base}/api/jobs"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous
        .headers()
        .contains_key("strict-transport-security"));
    assert!(anonymous.headers().contains_key("content-security-policy"));

    let wrong = client
        .get(format!("{base}/api/jobs"))
        .basic_auth("admin", Some("not-the-password"))
        .send()
        .await
        .expect("GET");
    assert_eq!(wrong.status(), 401);

    let jobs: Value = admin_get(client, base, password, "/api/jobs").await;
    assert!(jobs.to_string().contains("\"hello\""), "{jobs}");

    // The redirect listener is published too.
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{http_port}/x"))
        .send()
        .await
        .expect("GET http");
    assert_eq!(redirect.status(), 308);
}

/// Only the password's hash is stored, in a private file.
fn only_the_hash_is_stored(docker: &PrivateDocker, project: &str, password: &str) {
    let volume = format!("{project}_bootstrap");
    let stored = check(docker.docker_cli().args([
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/b:ro"),
        TEST_IMAGE,
        "sh",
        "-c",
        "stat -c '%a %u' /b /b/admin-password.hash; cat /b/admin-password.hash",
    ]));
    let stored = String::from_utf8_lossy(&stored.stdout).into_owned();
    assert!(
        stored.contains(&format!("700 {UID}\n600 {UID}\n")),
        "{stored}"
    );
    assert!(stored.contains("$argon2id$"), "{stored}");
    assert!(
        !stored.contains(password),
        "the password is stored in plain text"
    );
}

/// A scheduled run, in a real container, through the gateway.
async fn the_demo_job_runs_on_schedule(
    client: &reqwest::Client,
    base: &str,
    password: &str,
    logs: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(45);
    let run = loop {
        let runs: Value = admin_get(client, base, password, "/api/runs?job=hello").await;
        let done = runs["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["status"] == "succeeded")
            .cloned();
        if let Some(run) = done {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "no succeeded run of the demo job: {runs}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(run["exit_code"], 0, "{run}");
    assert_eq!(run["trigger"]["kind"], "schedule", "{run}");
}

/// The gateway keeps its assertion key across a `restart` (the bootstrap's
/// assertion.key), so the scheduler keeps verifying it at once.
async fn the_assertion_key_survives_a_restart(
    client: &reqwest::Client,
    base: &str,
    password: &str,
    mut restart: Command,
) {
    let jwks_url = format!("{base}/.well-known/gatehouse/jwks.json");
    let jwks_before = public_jwks(client, &jwks_url).await.expect("JWKS");
    check(&mut restart);
    let deadline = Instant::now() + Duration::from_secs(30);
    let jwks_after = loop {
        if let Some(jwks) = public_jwks(client, &jwks_url).await {
            break jwks;
        }
        assert!(Instant::now() < deadline, "the gateway did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        jwks_after, jwks_before,
        "the gateway's key changed on restart"
    );
    let _: Value = admin_get(client, base, password, "/api/jobs").await;
}

pub(crate) struct DownOnDrop(pub(crate) Command);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = self.0.arg("--volumes").output();
    }
}

async fn public_jwks(client: &reqwest::Client, url: &str) -> Option<String> {
    let response = client.get(url).send().await.ok()?;
    if response.status() != 200 {
        return None;
    }
    response.text().await.ok()
}

pub(crate) async fn admin_get(
    client: &reqwest::Client,
    base: &str,
    password: &str,
    path: &str,
) -> Value {
    let response = client
        .get(format!("{base}{path}"))
        .basic_auth("admin", Some(password))
        .send()
        .await
        .expect("GET");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Imports a FROM-scratch image `gatehouse/<service>:local` holding `binary`
/// (debug info stripped, to keep the import quick), the libraries it links,
/// CA certificates, the non-root user and the state directories the
/// Dockerfile creates.
fn seed_image(docker: &PrivateDocker, work: &Path, binary: &Path, service: &str) {
    let rootfs = work.join(format!("rootfs-{service}"));
    let name = binary.file_name().expect("binary name");
    let bin_dir = rootfs.join("usr/local/bin");
    std::fs::create_dir_all(&bin_dir).expect("rootfs");
    check(
        Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(bin_dir.join(name))
            .arg(binary),
    );
    for lib in linked_libraries(binary) {
        let target = rootfs.join(lib.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(target.parent().expect("parent")).expect("lib dir");
        std::fs::copy(&lib, &target).unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
    }
    let certs = rootfs.join("etc/ssl/certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        certs.join("ca-certificates.crt"),
    )
    .expect("CA bundle (ca-certificates)");
    std::fs::write(
        rootfs.join("etc/passwd"),
        format!("root:x:0:0::/:/nonexistent\ngatehouse:x:{UID}:{UID}::/nonexistent:/nonexistent\n"),
    )
    .expect("passwd");
    std::fs::write(
        rootfs.join("etc/group"),
        format!("root:x:0:\ngatehouse:x:{UID}:\n"),
    )
    .expect("group");
    std::fs::create_dir_all(rootfs.join("tmp")).expect("tmp");
    for (dir, mode) in [
        ("var/lib/gatehouse/bootstrap", 0o700),
        ("var/lib/gatehouse/audit", 0o750),
        ("var/lib/gatehouse/scheduler", 0o750),
        ("etc/gatehouse/certs", 0o750),
    ] {
        let path = rootfs.join(dir);
        std::fs::create_dir_all(&path).expect("state dir");
        check(Command::new("chown").arg(format!("{UID}:{UID}")).arg(&path));
        check(Command::new("chmod").arg(format!("{mode:o}")).arg(&path));
    }
    check(Command::new("chmod").arg("1777").arg(rootfs.join("tmp")));

    let tarball = work.join(format!("{service}.tar"));
    check(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("--numeric-owner")
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
    );
    let entrypoint = format!("ENTRYPOINT [\"/usr/local/bin/{}\"]", name.to_string_lossy());
    check(docker.docker_cli().args([
        "import",
        "-c",
        &entrypoint,
        "-c",
        "CMD [\"run\", \"--policy\", \"/etc/gatehouse/policy.toml\"]",
        "-c",
        &format!("USER {UID}:{UID}"),
        &tarball.display().to_string(),
        &format!("gatehouse/{service}:local"),
    ]));
    std::fs::remove_dir_all(&rootfs).expect("remove rootfs");
    std::fs::remove_file(&tarball).expect("remove tarball");
}

/// The shared libraries `ldd` resolves for `binary`, and its loader.
pub(crate) fn linked_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = check(Command::new("ldd").arg(binary));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A PATH on which `docker-compose` is found and the `docker compose`
/// plugin is not (the plugin is found through the docker CLI's own dirs,
/// so a `docker` wrapper that refuses `compose` stands in front).
pub(crate) fn path_with_compose_only(compose: &Path, work: &Path) -> String {
    let shims = work.join("bin");
    std::fs::create_dir_all(&shims).expect("shim dir");
    let docker = which("docker").expect("docker CLI");
    let shim = shims.join("docker");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\n[ \"$1\" = compose ] && {{ echo 'no plugin in this test' >&2; exit 1; }}\nexec {} \"$@\"\n",
            docker.display()
        ),
    )
    .expect("docker shim");
    check(Command::new("chmod").arg("755").arg(&shim));
    let compose_dir = compose.parent().expect("compose dir");
    format!(
        "{}:{}:/usr/sbin:/usr/bin:/sbin:/bin",
        shims.display(),
        compose_dir.display()
    )
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn logs(env: &dyn Fn(&mut Command), compose: &Path, dir: &Path) -> String {
    let mut command = Command::new(compose);
    env(&mut command);
    command.arg("-f").arg(dir.join("docker-compose.yml")).args([
        "logs",
        "--no-color",
        "--tail",
        "60",
    ]);
    command
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default()
}

/// Runs `command` and panics with its output unless it succeeds.
pub(crate) fn check(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed with {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
