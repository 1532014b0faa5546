//! The Docker engine against a real, private dockerd (engine API 1.41):
//! every hardening promise of `ContainerSpec` is checked from inside a
//! running container, and every outcome (exit codes, OOM, stop, logs,
//! daemon restart) through the same `DockerClient` calls the scheduler uses.
//!
//! One daemon is shared by the whole binary (`PrivateDocker::shared`); the
//! restart test starts its own because it takes the daemon down.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use std::borrow::Cow;

use gatehouse_policy::scheduler::{ContainerSettings, PullPolicy};
use gatehouse_scheduler::docker::{
    BindMount, CapturedLogs, ContainerSpec, DockerClient, DockerError, Exit,
};
use gatehouse_tests::docker::{PrivateDocker, TEST_IMAGE};

const MIB: u64 = 1024 * 1024;

/// This binary's scheduler instance label, so parallel test binaries
/// sharing nothing still never list each other's containers.
fn instance() -> String {
    format!("engine-tests-{}", std::process::id())
}

async fn engine() -> (DockerClient, &'static PrivateDocker) {
    let docker = PrivateDocker::shared().expect("private dockerd");
    let engine = DockerClient::connect_to(&docker.host())
        .await
        .expect("connect to the private dockerd");
    (engine, docker)
}

/// The hardened spec of the brief: nobody, read-only rootfs, no caps, no
/// network, 256 MiB, 1 CPU, 128 pids, 16 MiB /tmp. Names are unique per run.
fn hardened(job: &str, command: &[&str]) -> ContainerSpec<'static> {
    static RUN: AtomicI64 = AtomicI64::new(1);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    ContainerSpec {
        name: format!("gatehouse-{job}-{run}-{}", std::process::id()),
        image: TEST_IMAGE.to_owned(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        env: Vec::new(),
        settings: Cow::Owned(ContainerSettings {
            tmp_size: 16 * MIB,
            ..ContainerSettings::hardened(4096)
        }),
        mounts: Vec::new(),
        job: job.to_owned(),
        run,
        log_cap_bytes: 64 * 1024,
        instance: instance(),
    }
}

/// Creates, starts, waits, reads logs, removes.
async fn run_to_end(engine: &DockerClient, spec: &ContainerSpec<'_>) -> (Exit, CapturedLogs) {
    let id = engine.create(spec).await.expect("create");
    engine.start(&id).await.expect("start");
    let exit = engine.wait(&id).await.expect("wait");
    let logs = engine.logs(&id, spec.log_cap_bytes).await.expect("logs");
    engine.remove(&id).await.expect("remove");
    (exit, logs)
}

/// Runs `sh -c script` hardened and returns (exit code, output).
async fn sh(engine: &DockerClient, job: &str, script: &str) -> (Exit, String) {
    let (exit, logs) = run_to_end(engine, &hardened(job, &["sh", "-c", script])).await;
    (exit, String::from_utf8_lossy(&logs.bytes).into_owned())
}

#[tokio::test]
async fn negotiates_the_engine_api_version() {
    let (engine, _) = engine().await;
    assert_eq!(engine.api_version(), "1.41");
    engine.ping().await.expect("ping");
}

#[tokio::test]
async fn runs_as_nobody() {
    let (engine, _) = engine().await;
    let (exit, logs) = run_to_end(&engine, &hardened("id", &["id"])).await;
    let out = String::from_utf8_lossy(&logs.bytes);
    assert_eq!(exit.exit_code, 0, "{out}");
    assert!(
        out.starts_with("uid=65534(nobody) gid=65534(nogroup)"),
        "{out}"
    );
}

#[tokio::test]
async fn root_filesystem_is_read_only() {
    let (engine, _) = engine().await;
    let (exit, out) = sh(&engine, "rofs", "echo x > /x; echo rc=$?; touch /bin/y").await;
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    assert_ne!(exit.exit_code, 0, "{out}");
}

#[tokio::test]
async fn network_none_has_only_loopback() {
    let (engine, _) = engine().await;
    let (exit, out) = sh(&engine, "net", "ls /sys/class/net").await;
    assert_eq!(exit.exit_code, 0, "{out}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["lo"], "{out}");
}

#[tokio::test]
async fn no_capabilities_and_no_new_privileges() {
    let (engine, _) = engine().await;
    let (exit, out) = sh(
        &engine,
        "caps",
        "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status",
    )
    .await;
    assert_eq!(exit.exit_code, 0, "{out}");
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            out.contains(&format!("{field}:\t0000000000000000")),
            "{field} not empty: {out}"
        );
    }
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    // The daemon's default seccomp profile stays on (2 = filter mode).
    assert!(out.contains("Seccomp:\t2"), "{out}");
}

#[tokio::test]
async fn cgroup_limits_are_in_force() {
    let (engine, _) = engine().await;
    // cgroup v1 paths first, v2 as fallback.
    let script = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
                  cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
                  cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max";
    let (exit, out) = sh(&engine, "cgroup", script).await;
    assert_eq!(exit.exit_code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"128"), "{out}");
    assert_eq!(lines.get(1), Some(&"268435456"), "{out}");
    // 1 CPU: a full period's quota (v1 "100000", v2 "100000 100000").
    assert!(
        lines.get(2).is_some_and(|l| l.starts_with("100000")),
        "{out}"
    );
}

#[tokio::test]
async fn forking_beyond_the_pids_limit_fails() {
    let (engine, _) = engine().await;
    let mut spec = hardened(
        "pids",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; echo spawned",
        ],
    );
    spec.settings.to_mut().pids = 16;
    let (_, logs) = run_to_end(&engine, &spec).await;
    let out = String::from_utf8_lossy(&logs.bytes);
    assert!(out.contains("can't fork"), "{out}");
}

#[tokio::test]
async fn memory_hog_is_oom_killed() {
    let (engine, _) = engine().await;
    // busybox `tail` buffers the current line; /dev/zero never ends one.
    let mut spec = hardened("oom", &["tail", "/dev/zero"]);
    spec.settings.to_mut().memory = 32 * MIB;
    let (exit, logs) = run_to_end(&engine, &spec).await;
    assert!(
        exit.oom_killed,
        "{exit:?} {:?}",
        String::from_utf8_lossy(&logs.bytes)
    );
    assert_eq!(exit.exit_code, 137, "{exit:?}");
}

#[tokio::test]
async fn tmp_is_writable_but_noexec() {
    let (engine, _) = engine().await;
    let script =
        "echo hi > /tmp/f && cat /tmp/f; cp /bin/busybox /tmp/bb; /tmp/bb true; echo exec=$?; \
                  grep ' /tmp ' /proc/mounts; ls -ldn /tmp";
    let (_, out) = sh(&engine, "tmp", script).await;
    assert!(out.contains("hi\n"), "{out}");
    assert!(out.contains("exec=126"), "{out}");
    let mount = out
        .lines()
        .find(|l| l.starts_with("tmpfs /tmp "))
        .unwrap_or_else(|| panic!("no tmpfs on /tmp: {out}"));
    for opt in ["rw", "nosuid", "noexec", "size=16384k"] {
        assert!(mount.split([' ', ',']).any(|o| o == opt), "{opt}: {mount}");
    }
    assert!(out.contains(" 65534 "), "/tmp not owned by the user: {out}");
}

#[tokio::test]
async fn nonzero_exit_is_an_outcome() {
    let (engine, _) = engine().await;
    let (exit, _) = sh(&engine, "exit3", "exit 3").await;
    assert_eq!(
        exit,
        Exit {
            exit_code: 3,
            oom_killed: false
        }
    );
}

#[tokio::test]
async fn argv_is_not_run_through_a_shell_and_env_is_passed() {
    let (engine, _) = engine().await;
    let (exit, logs) =
        run_to_end(&engine, &hardened("argv", &["echo", "$HOME", "a  b;", "*"])).await;
    assert_eq!(exit.exit_code, 0);
    assert_eq!(logs.bytes, b"$HOME a  b; *\n");

    let mut spec = hardened("env", &["sh", "-c", "echo \"$GREETING\""]);
    spec.env = vec![("GREETING".into(), "hello = world".into())];
    let (_, logs) = run_to_end(&engine, &spec).await;
    assert_eq!(logs.bytes, b"hello = world\n");
}

#[tokio::test]
async fn logs_keep_stdout_and_stderr_in_order() {
    // Docker copies stdout and stderr from two pipes; lines written moments
    // apart keep their order, simultaneous ones may not.
    let (engine, _) = engine().await;
    let (_, out) = sh(
        &engine,
        "logs-order",
        "echo out; sleep 0.3; echo err >&2; sleep 0.3; echo out2",
    )
    .await;
    assert_eq!(out, "out\nerr\nout2\n");
}

#[tokio::test]
async fn logs_are_capped_to_the_last_bytes() {
    let (engine, docker) = engine().await;
    let mut spec = hardened(
        "logs-cap",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 500 ]; do echo \"line $i\"; i=$((i+1)); done",
        ],
    );
    spec.log_cap_bytes = 1000;
    let id = engine.create(&spec).await.expect("create");
    engine.start(&id).await.expect("start");
    engine.wait(&id).await.expect("wait");

    let logs = engine.logs(&id, 1000).await.expect("logs");
    assert!(logs.truncated);
    assert_eq!(logs.bytes.len(), 1000);
    assert!(logs.bytes.ends_with(b"line 498\nline 499\n"));

    let all = engine.logs(&id, 1 << 20).await.expect("logs");
    assert!(!all.truncated);
    assert!(all.bytes.starts_with(b"line 0\nline 1\n"));

    // Docker's own json-file log is bounded too.
    let out = docker
        .docker_cli()
        .args(["inspect", "--format", "{{json .HostConfig.LogConfig}}", &id])
        .output()
        .expect("docker inspect");
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(config.contains("\"Type\":\"json-file\""), "{config}");
    assert!(config.contains("\"max-file\":\"2\""), "{config}");
    assert!(config.contains("\"max-size\":\"65536\""), "{config}");
    engine.remove(&id).await.expect("remove");
}

#[tokio::test]
async fn stop_with_grace_ends_a_sleeper_quickly() {
    let (engine, _) = engine().await;
    let id = engine
        .create(&hardened("stop", &["sleep", "600"]))
        .await
        .expect("create");
    engine.start(&id).await.expect("start");
    assert_eq!(engine.inspect_exit(&id).await.expect("inspect"), None);

    let started = Instant::now();
    engine
        .stop(&id, Duration::from_secs(3))
        .await
        .expect("stop");
    let exit = engine.wait(&id).await.expect("wait");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!([143, 137].contains(&exit.exit_code), "{exit:?}");
    assert!(!exit.oom_killed);
    assert_eq!(engine.inspect_exit(&id).await.expect("inspect"), Some(exit));

    // Stopping again is fine; so is removing twice.
    engine
        .stop(&id, Duration::from_secs(1))
        .await
        .expect("stop again");
    engine.remove(&id).await.expect("remove");
    engine.remove(&id).await.expect("remove again");
    assert!(matches!(
        engine.inspect_exit(&id).await,
        Err(DockerError::NotFound { .. })
    ));
    assert!(matches!(
        engine.stop(&id, Duration::from_secs(1)).await,
        Err(DockerError::NotFound { .. })
    ));
}

#[tokio::test]
async fn wait_outlasts_the_request_timeout() {
    let (engine, _) = engine().await;
    // The timeout covers a request until its headers; wait's body streams.
    let engine = engine.with_timeout(Duration::from_secs(1));
    let (exit, _) = run_to_end(&engine, &hardened("long-wait", &["sleep", "3"])).await;
    assert_eq!(exit.exit_code, 0);
}

#[tokio::test]
async fn list_ours_finds_exited_and_running_containers() {
    let (engine, docker) = engine().await;
    let exited_spec = hardened("list-exited", &["true"]);
    let exited = engine.create(&exited_spec).await.expect("create");
    engine.start(&exited).await.expect("start");
    engine.wait(&exited).await.expect("wait");
    let running_spec = hardened("list-running", &["sleep", "600"]);
    let running = engine.create(&running_spec).await.expect("create");
    engine.start(&running).await.expect("start");
    // Someone else's containers: one with only one of our labels, and one
    // of another scheduler instance on the same daemon.
    let stranger = format!("stranger-{}", std::process::id());
    let other = format!("other-instance-{}", std::process::id());
    for args in [
        vec!["--name", &stranger, "--label", "gatehouse.job=x"],
        vec![
            "--name",
            &other,
            "--label",
            "gatehouse.job=x",
            "--label",
            "gatehouse.run=1",
            "--label",
            "gatehouse.scheduler=someone-else",
        ],
    ] {
        let out = docker
            .docker_cli()
            .arg("create")
            .args(args)
            .args([TEST_IMAGE, "true"])
            .output()
            .expect("docker create");
        assert!(out.status.success(), "{out:?}");
    }

    let ours = engine.list_ours(&instance()).await.expect("list");
    let find = |id: &str| ours.iter().find(|c| c.id == id).cloned();
    let e = find(&exited).expect("exited container listed");
    assert_eq!(
        (e.job.as_str(), e.run, e.running),
        ("list-exited", exited_spec.run, false)
    );
    let r = find(&running).expect("running container listed");
    assert_eq!(
        (r.job.as_str(), r.run, r.running),
        ("list-running", running_spec.run, true)
    );
    assert!(
        ours.iter().all(|c| !c.job.is_empty() && c.job != "x"),
        "{ours:?}"
    );

    engine.remove(&exited).await.expect("remove");
    engine.remove(&running).await.expect("remove");
    engine.remove(&stranger).await.expect("remove");
    engine.remove(&other).await.expect("remove");
}

#[tokio::test]
async fn ensure_image_follows_the_pull_policy() {
    let (engine, _) = engine().await;
    let missing = "gatehouse-test/absent:1";

    let started = Instant::now();
    let err = engine
        .ensure_image(missing, PullPolicy::Never)
        .await
        .expect_err("missing image");
    // ImageMissing (not PullFailed) shows no pull was tried.
    assert!(
        matches!(&err, DockerError::ImageMissing { image } if image == missing),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Present locally: neither policy that consults the cache pulls (a pull
    // would fail here: there is no registry).
    engine
        .ensure_image(TEST_IMAGE, PullPolicy::Never)
        .await
        .expect("present");
    engine
        .ensure_image(TEST_IMAGE, PullPolicy::IfMissing)
        .await
        .expect("present");

    // IfMissing and Always do pull, and a failed pull is an error even when
    // a local copy exists.
    let err = engine
        .ensure_image(missing, PullPolicy::IfMissing)
        .await
        .expect_err("no registry");
    assert!(matches!(err, DockerError::PullFailed { .. }), "{err}");
    let err = engine
        .ensure_image(TEST_IMAGE, PullPolicy::Always)
        .await
        .expect_err("no registry");
    assert!(matches!(err, DockerError::PullFailed { .. }), "{err}");
    assert!(!err.is_connection_error());

    // create never pulls either.
    let mut spec = hardened("no-image", &["true"]);
    spec.image = missing.to_owned();
    let err = engine.create(&spec).await.expect_err("missing image");
    assert!(matches!(err, DockerError::ImageMissing { .. }), "{err}");
}

#[tokio::test]
async fn bind_mounts_honour_read_only() {
    let (engine, _) = engine().await;
    let host = tempfile::tempdir().expect("tempdir");
    let ro = host.path().join("ro");
    let rw = host.path().join("rw");
    for dir in [&ro, &rw] {
        std::fs::create_dir(dir).expect("mkdir");
        // World-writable so that nobody in the container could write if the
        // mount allowed it.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .expect("chmod");
    }
    std::fs::write(ro.join("input"), "from host\n").expect("write");
    let mut spec = hardened(
        "mounts",
        &[
            "sh",
            "-c",
            "cat /in/input; echo x > /in/new; echo ro=$?; echo out > /out/result; echo rw=$?",
        ],
    );
    spec.mounts = vec![
        BindMount {
            source: ro.clone(),
            target: "/in".into(),
            read_only: true,
        },
        BindMount {
            source: rw.clone(),
            target: "/out".into(),
            read_only: false,
        },
    ];
    let (_, logs) = run_to_end(&engine, &spec).await;
    let out = String::from_utf8_lossy(&logs.bytes);
    // Only the order within one stream is guaranteed (see logs test).
    assert!(out.contains("from host\n"), "{out}");
    assert!(out.contains("ro=1") && out.contains("rw=0"), "{out}");
    assert!(!ro.join("new").exists());
    assert_eq!(
        std::fs::read_to_string(rw.join("result")).expect("result"),
        "out\n"
    );

    // A missing source is an error, not a directory created as root.
    let mut spec = hardened("mount-missing", &["true"]);
    spec.mounts = vec![BindMount {
        source: host.path().join("absent"),
        target: "/x".into(),
        read_only: true,
    }];
    let err = engine.create(&spec).await.expect_err("missing source");
    assert!(matches!(err, DockerError::InvalidSpec(_)), "{err}");
    assert!(!host.path().join("absent").exists());
}

#[tokio::test]
async fn duplicate_names_are_reported() {
    let (engine, _) = engine().await;
    let spec = hardened("dup", &["true"]);
    let id = engine.create(&spec).await.expect("create");
    let err = engine.create(&spec).await.expect_err("name in use");
    assert!(
        matches!(&err, DockerError::NameInUse { name } if *name == spec.name),
        "{err}"
    );
    engine.remove(&id).await.expect("remove");
}

#[tokio::test]
async fn unreachable_daemon_is_a_connection_error() {
    let err = DockerClient::connect_to("unix:///tmp/gatehouse-no-such-dockerd.sock")
        .await
        .expect_err("no daemon");
    assert!(err.is_connection_error(), "{err:?}");
    let err = DockerClient::connect_to("tcp://127.0.0.1:2375")
        .await
        .expect_err("tcp");
    assert!(matches!(err, DockerError::UnsupportedHost(_)), "{err}");
}

#[tokio::test]
async fn daemon_restart_kills_running_containers_and_engine_reconnects() {
    let mut docker = PrivateDocker::start().expect("own private dockerd");
    let engine = DockerClient::connect_to(&docker.host())
        .await
        .expect("connect");
    let spec = hardened("restart", &["sleep", "600"]);
    let id = engine.create(&spec).await.expect("create");
    engine.start(&id).await.expect("start");
    assert_eq!(engine.inspect_exit(&id).await.expect("inspect"), None);

    // A wait in flight when the daemon goes down ends with the exit status
    // or as a connection error, never as a bogus exit.
    let waiting = {
        let engine = engine.clone();
        let id = id.clone();
        tokio::spawn(async move { engine.wait(&id).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    // restart() blocks; keep the runtime free while it runs.
    let docker = tokio::task::spawn_blocking(move || docker.restart().map(|()| docker))
        .await
        .expect("join")
        .expect("restart");

    // While the daemon was down a request would fail as a connection error;
    // now the same DockerClient works again (hyper reconnects per request).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match engine.ping().await {
            Ok(()) => break,
            Err(err) if err.is_connection_error() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("engine did not reconnect: {err}\n{}", docker.log_text()),
        }
    }
    match waiting.await.expect("join") {
        Ok(exit) => assert!([143, 137].contains(&exit.exit_code), "{exit:?}"),
        Err(err) => assert!(err.is_connection_error(), "{err:?}"),
    }
    let exit = engine
        .inspect_exit(&id)
        .await
        .expect("inspect")
        .expect("container no longer running");
    assert!([143, 137].contains(&exit.exit_code), "{exit:?}");
    let ours = engine.list_ours(&instance()).await.expect("list");
    assert!(ours.iter().any(|c| c.id == id && !c.running), "{ours:?}");
    engine.remove(&id).await.expect("remove");

    let dir = docker.dir().to_path_buf();
    drop(docker);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let err = engine.ping().await.expect_err("daemon gone");
    assert!(err.is_connection_error(), "{err:?}");
}
