//! The run history in a real PostgreSQL (`database = "postgres://…"`):
//! runs are recorded there with the schema's migrations, a restart finds
//! them, and only one scheduler at a time may use the database; a
//! scheduler that is killed lets the next one in.

use std::time::Duration;

use gatehouse_tests::postgres::Postgres;
use gatehouse_tests::scheduler::job;
use gatehouse_tests::{free_port, SchedulerUnderTest};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_kept_in_postgres_and_one_scheduler_at_a_time_uses_it() {
    let pg = Postgres::start();
    let jobs = job("hello", "shell = true\ncommand = [\"echo hello-from-pg\"]");
    let mut stack = SchedulerUnderTest::start_with_database(&pg.url(), &jobs).await;

    let id = stack.run_now("hello").await;
    let run = stack.wait_run(id, None, LONG).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(stack.logs(id).await, "hello-from-pg\n");
    assert_eq!(
        pg.psql(&format!("SELECT status FROM runs WHERE id = {id}")),
        "succeeded"
    );
    assert_eq!(
        pg.psql("SELECT max(version) FROM refinery_schema_history"),
        "2"
    );
    assert_eq!(pg.psql("SELECT length(instance) FROM deployment"), "16");

    // A second scheduler (its own ports) on the same database refuses.
    let policy = std::fs::read_to_string(&stack.policy_path).expect("policy");
    let second = policy
        .replace(
            &stack.sched.to_string(),
            &format!("127.0.0.1:{}", free_port()),
        )
        .replace(
            &stack.sched_admin.to_string(),
            &format!("127.0.0.1:{}", free_port()),
        );
    let second_path = stack.dir().join("second.toml");
    std::fs::write(&second_path, second).expect("second policy");
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(gatehouse_tests::binaries::scheduler())
            .args(["run", "--policy"])
            .arg(&second_path)
            .env("DOCKER_HOST", &stack.docker_host)
            .output(),
    )
    .await
    .expect("the second scheduler gives up at once")
    .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("another scheduler is using this PostgreSQL database"),
        "{stderr}"
    );

    // Killed, the first lets go of the database; started again, it finds
    // its history.
    stack.kill_scheduler("KILL");
    stack.spawn_scheduler().await;
    let again = stack.run(id).await;
    assert_eq!(again["status"], "succeeded", "{again}");
    let id = stack.run_now("hello").await;
    assert_eq!(stack.wait_run(id, None, LONG).await["status"], "succeeded");
    assert_eq!(pg.psql("SELECT count(*) FROM runs"), "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduler_that_loses_its_database_lock_stops() {
    let pg = Postgres::start();
    let jobs = job("hello", "command = [\"true\"]");
    let mut stack = SchedulerUnderTest::start_with_database(&pg.url(), &jobs).await;
    // The session that holds the lock ends (as when the connection to
    // PostgreSQL breaks): another scheduler could now take the database.
    let ended = pg
        .psql("SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'");
    assert_eq!(ended, "1");
    let mut process = stack.scheduler.take().expect("running");
    let status = process
        .wait_exit(Duration::from_secs(20))
        .expect("the scheduler stops");
    assert!(!status.success(), "{status:?}");
    let log = process.log_text();
    assert!(
        log.contains("no longer holds its PostgreSQL database alone"),
        "{log}"
    );
}
