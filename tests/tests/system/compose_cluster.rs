//! The cluster compose stack (`compose/cluster/`): two gateways behind
//! HAProxy, Redis, two schedulers and PostgreSQL, brought up with
//! `compose/cluster/up` (docker-compose 1.29) on a private dockerd.
//!
//! No registry is reachable, so every image compose names is seeded
//! first: ours as in `compose.rs`, and stand-ins for `haproxy:2.6`,
//! `redis:7.0` and `postgres:15` made from Debian's own HAProxy 2.6,
//! Redis 7.0 and PostgreSQL 15 binaries (the same programs, without the
//! official images' Debian userland). The PostgreSQL stand-in's entrypoint
//! does what the official one does with `POSTGRES_USER`, `POSTGRES_DB`
//! and `POSTGRES_PASSWORD_FILE`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::compose_stack::ComposeStack;
use gatehouse_tests::docker::{PrivateDocker, TEST_IMAGE};
use serde_json::Value;

use super::compose::{
    admin_get, check, first_up_prints_the_admin_password, https_client, linked_libraries,
    DownOnDrop,
};

const CLUSTER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../compose/cluster");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_stack_comes_up_and_serves_through_either_gateway_and_scheduler() {
    let stack = ComposeStack::new(CLUSTER_DIR, "ghcluster");
    seed_stand_ins(&stack.docker, stack.work.path());
    let (docker, dir, project) = (&stack.docker, &stack.dir, &stack.project);
    let (https_port, ca_file) = (stack.https_port, &stack.ca_file);
    let secrets = stack.work.path().join("secrets");
    let env = |command: &mut Command| {
        stack.env(command);
        command
            .env("GATEHOUSE_SECRETS_DIR", &secrets)
            .env("GATEHOUSE_UP_TIMEOUT", "120");
    };
    let mut cleanup = Command::new(dir.join("down"));
    env(&mut cleanup);
    let _down_on_drop = DownOnDrop(cleanup);

    // docker-compose accepts the file as it is.
    let mut config = Command::new(&stack.compose_bin);
    env(&mut config);
    config
        .env("GATEHOUSE_SECRETS_DIR", &secrets)
        .arg("-f")
        .arg(dir.join("docker-compose.yml"))
        .args(["config", "-q"]);
    check(&mut config);

    let password = first_up_prints_the_admin_password(&env, dir);
    for secret in ["redis-password", "postgres-password"] {
        let written = std::fs::read_to_string(secrets.join(secret)).expect(secret);
        assert!(written.trim().len() >= 32, "{secret}: {written}");
    }
    let client = https_client(ca_file, https_port);
    let base = format!("https://localhost:{https_port}");

    // Anonymous: refused, through whichever gateway HAProxy picks (round
    // robin per connection, so a new client each time).
    for _ in 0..4 {
        let r = https_client(ca_file, https_port)
            .get(format!("{base}/api/jobs"))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 401);
    }
    // Both gateways serve (round robin), and either scheduler answers.
    for _ in 0..6 {
        let jobs = admin_get(&client, &base, &password, "/api/jobs").await;
        assert!(jobs.to_string().contains("\"hello\""), "{jobs}");
    }
    let ran = run_and_wait(&client, &base, &password).await;
    assert_eq!(ran["status"], "succeeded", "{ran}");

    // Both schedulers are members of the one database.
    let members = psql(docker, project, "SELECT count(*) FROM schedulers");
    assert_eq!(members, "2");
    // Both gateways refused some of the anonymous requests, and saw the
    // client's address through the PROXY header, not HAProxy's.
    for audit in ["audit-a", "audit-b"] {
        let denied: Vec<Value> = audit_records(docker, &format!("{project}_{audit}"))
            .into_iter()
            .filter(|r| r["event"] == "access.denied")
            .collect();
        assert!(!denied.is_empty(), "{audit}: no refusal recorded");
        for record in &denied {
            let ip = record["client_ip"].as_str().unwrap_or_default();
            assert!(ip.starts_with("172.30.99."), "{record}");
            assert_ne!(
                ip, "172.30.99.10",
                "HAProxy's address, not the client's: {record}"
            );
        }
    }

    stack.down(&env);
}

/// "Run now" through the balancer, then the run until it ends.
async fn run_and_wait(client: &reqwest::Client, base: &str, password: &str) -> Value {
    let response = client
        .post(format!("{base}/api/jobs/hello/run"))
        .basic_auth("admin", Some(password))
        // Basic credentials are the browser's kind: the CSRF check wants
        // proof the request is the site's own.
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("POST");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 202, "{body}");
    let id = body["run"].as_i64().expect("run id");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = admin_get(client, base, password, &format!("/api/runs/{id}")).await;
        let now = run["run"]["status"].as_str().unwrap_or_default().to_owned();
        if !["queued", "starting", "running"].contains(&now.as_str()) {
            return run["run"].clone();
        }
        assert!(Instant::now() < deadline, "run {id} did not end: {run}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn psql(docker: &PrivateDocker, project: &str, sql: &str) -> String {
    let container = format!("{project}_postgres_1");
    let out = check(docker.docker_cli().args([
        "exec",
        &container,
        "psql",
        "-U",
        "gatehouse",
        "-d",
        "gatehouse",
        "-At",
        "-c",
        sql,
    ]));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The audit records in a gateway's audit volume.
fn audit_records(docker: &PrivateDocker, volume: &str) -> Vec<Value> {
    let out = check(docker.docker_cli().args([
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{volume}:/a:ro"),
        TEST_IMAGE,
        "cat",
        "/a/audit.jsonl",
    ]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("an audit record"))
        .collect()
}

/// `haproxy:2.6`, `redis:7.0` and `postgres:15`, from Debian's binaries.
fn seed_stand_ins(docker: &PrivateDocker, work: &Path) {
    let mut haproxy = StandIn::new(work, "haproxy");
    haproxy.program(Path::new("/usr/sbin/haproxy"));
    haproxy.import(
        docker,
        "haproxy:2.6",
        &[
            "ENTRYPOINT [\"/usr/sbin/haproxy\", \"-W\", \"-db\", \"-f\", \"/usr/local/etc/haproxy/haproxy.cfg\"]",
            "USER 99:99",
        ],
    );

    let mut redis = StandIn::new(work, "redis");
    redis.program(Path::new("/usr/bin/redis-server"));
    redis.program(Path::new("/usr/bin/redis-cli"));
    redis.import(
        docker,
        "redis:7.0",
        &[
            "ENV PATH=/usr/bin:/bin",
            "CMD [\"redis-server\"]",
            "USER 999:999",
        ],
    );

    let bin = postgres_bin_dir();
    let version = bin
        .parent()
        .and_then(Path::file_name)
        .expect("/usr/lib/postgresql/VERSION/bin")
        .to_string_lossy()
        .into_owned();
    let mut postgres = StandIn::new(work, "postgres");
    postgres.tree(&PathBuf::from(format!("/usr/lib/postgresql/{version}")));
    postgres.tree(&PathBuf::from(format!("/usr/share/postgresql/{version}")));
    // Debian's PostgreSQL reads time zones from the system's tzdata.
    postgres.tree(Path::new("/usr/share/zoneinfo"));
    postgres.owned_dir("var/lib/postgresql/data", 0o700);
    postgres.owned_dir("var/run/postgresql", 0o2777);
    postgres.script(
        "usr/local/bin/docker-entrypoint.sh",
        &postgres_entrypoint(&bin),
    );
    postgres.import(
        docker,
        "postgres:15",
        &[
            &format!("ENV PATH={}:/bin", bin.display()),
            "ENV PGDATA=/var/lib/postgresql/data",
            "ENTRYPOINT [\"/usr/local/bin/docker-entrypoint.sh\"]",
            "CMD [\"postgres\"]",
            "USER 999:999",
        ],
    );
}

fn postgres_bin_dir() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql (apt install postgresql)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let version = versions.last().expect("a PostgreSQL server");
    PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"))
}

/// The official image's first start, for what compose/cluster uses of it.
fn postgres_entrypoint(bin: &Path) -> String {
    let bin = bin.display();
    format!(
        r#"#!/bin/sh
set -e
if [ "$1" = postgres ]; then
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    {bin}/initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$POSTGRES_PASSWORD_FILE" \
      -E UTF8 --locale=C --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "CREATE DATABASE $POSTGRES_DB" | {bin}/postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  exec {bin}/postgres -D "$PGDATA" -c listen_addresses='*' -k /var/run/postgresql
fi
exec "$@"
"#
    )
}

/// A root filesystem of host files, imported as an image.
struct StandIn {
    rootfs: PathBuf,
    tarball: PathBuf,
}

impl StandIn {
    fn new(work: &Path, name: &str) -> StandIn {
        let rootfs = work.join(format!("standin-{name}"));
        for dir in ["bin", "etc", "tmp"] {
            std::fs::create_dir_all(rootfs.join(dir)).expect("rootfs");
        }
        check(Command::new("chmod").arg("1777").arg(rootfs.join("tmp")));
        // A shell for entrypoints and healthchecks (Debian's busybox-static).
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static");
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).expect("sh");
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\nhaproxy:x:99:99::/nonexistent:/nonexistent\n\
             postgres:x:999:999::/var/lib/postgresql:/bin/sh\nnobody:x:65534:65534::/:/nonexistent\n",
        )
        .expect("passwd");
        std::fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\nhaproxy:x:99:\npostgres:x:999:\nnogroup:x:65534:\n",
        )
        .expect("group");
        StandIn {
            tarball: work.join(format!("standin-{name}.tar")),
            rootfs,
        }
    }

    /// A host file at the same path, with the libraries it links.
    fn program(&mut self, path: &Path) {
        self.copy(path);
        for lib in linked_libraries(path) {
            self.copy(&lib);
        }
    }

    /// A host directory at the same path, with the libraries its programs
    /// and modules link.
    fn tree(&mut self, dir: &Path) {
        self.copy(dir);
        let listing = check(
            Command::new("find")
                .arg(dir)
                .args(["-type", "f", "-perm", "-u+x"]),
        );
        let modules = check(
            Command::new("find")
                .arg(dir)
                .args(["-type", "f", "-name", "*.so"]),
        );
        let files = String::from_utf8_lossy(&listing.stdout).into_owned()
            + &String::from_utf8_lossy(&modules.stdout);
        for file in files.lines() {
            let is_elf = std::fs::read(file).is_ok_and(|bytes| bytes.starts_with(b"\x7fELF"));
            if is_elf {
                for lib in linked_libraries(Path::new(file)) {
                    self.copy(&lib);
                }
            }
        }
    }

    /// `path` (a file or a directory, symbolic links followed) at the same
    /// place in the image.
    fn copy(&self, path: &Path) {
        let target = self.rootfs.join(path.strip_prefix("/").expect("absolute"));
        let parent = target.parent().expect("parent");
        std::fs::create_dir_all(parent).expect("parent dir");
        check(
            Command::new("cp")
                .args(["-R", "-L", "--preserve=mode,timestamps"])
                .arg(path)
                .arg(parent),
        );
    }

    fn owned_dir(&self, dir: &str, mode: u32) {
        let path = self.rootfs.join(dir);
        std::fs::create_dir_all(&path).expect("dir");
        check(Command::new("chown").arg("999:999").arg(&path));
        check(Command::new("chmod").arg(format!("{mode:o}")).arg(&path));
    }

    fn script(&self, at: &str, text: &str) {
        let path = self.rootfs.join(at);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(&path, text).expect("script");
        check(Command::new("chmod").arg("755").arg(&path));
    }

    fn import(self, docker: &PrivateDocker, tag: &str, changes: &[&str]) {
        check(
            Command::new("tar")
                .arg("-C")
                .arg(&self.rootfs)
                .args(["--numeric-owner", "-cf"])
                .arg(&self.tarball)
                .arg("."),
        );
        let mut import = docker.docker_cli();
        import.arg("import");
        for change in changes {
            import.args(["-c", change]);
        }
        import.arg(&self.tarball).arg(tag);
        check(&mut import);
        std::fs::remove_dir_all(&self.rootfs).expect("remove rootfs");
        std::fs::remove_file(&self.tarball).expect("remove tarball");
    }
}
