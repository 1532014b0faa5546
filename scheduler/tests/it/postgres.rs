//! The run history in a real PostgreSQL (`database = "postgres://…"`):
//! runs are recorded there with the schema's migrations, a restart finds
//! them, and a scheduler that loses its lease stops. (Several schedulers
//! on one database: `replicas.rs`.)

use std::time::Duration;

use gatehouse_tests::postgres::Postgres;
use gatehouse_tests::scheduler::job;
use gatehouse_tests::{SchedulerUnderTest, TestPki};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_kept_in_postgres_across_a_restart() {
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
        "4"
    );
    assert_eq!(pg.psql("SELECT length(instance) FROM deployment"), "16");

    // Killed and started again, it finds its history.
    stack.kill_scheduler("KILL");
    stack.spawn_scheduler().await;
    let again = stack.run(id).await;
    assert_eq!(again["status"], "succeeded", "{again}");
    let id = stack.run_now("hello").await;
    assert_eq!(stack.wait_run(id, None, LONG).await["status"], "succeeded");
    assert_eq!(pg.psql("SELECT count(*) FROM runs"), "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduler_that_loses_its_lease_stops() {
    let pg = Postgres::start();
    let jobs = job("hello", "command = [\"true\"]");
    let mut stack = SchedulerUnderTest::start_with_database(&pg.url(), &jobs).await;
    // Presumed dead by another scheduler (as when it could not renew its
    // lease in time): its runs may be another's now, so it must stop.
    pg.psql("DELETE FROM schedulers");
    assert_eq!(pg.psql("SELECT count(*) FROM schedulers"), "0");
    let mut process = stack.scheduler.take().expect("running");
    let status = process
        .wait_exit(Duration::from_secs(20))
        .expect("the scheduler stops");
    assert!(!status.success(), "{status:?}");
    let log = process.log_text();
    assert!(
        log.contains("lost its lease on the shared PostgreSQL database"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_history_reaches_postgres_over_verified_tls_and_no_other_ca() {
    let pki = TestPki::new().expect("a test CA");
    let pg = Postgres::start_tls(&pki);
    let ca_of = |pki: &TestPki| format!("database_ca = {:?}", pki.ca_path().display().to_string());
    let jobs = job("hello", "command = [\"echo\", \"over-tls\"]");
    let mut stack =
        SchedulerUnderTest::start_with_database_and(&pg.url_tls(), &ca_of(&pki), &jobs).await;
    let id = stack.run_now("hello").await;
    assert_eq!(stack.wait_run(id, None, LONG).await["status"], "succeeded");
    assert_eq!(stack.logs(id).await, "over-tls\n");
    // Every connection the scheduler holds is TLS (the server refuses any
    // other over TCP; this says so from the server's side too).
    let count = |sql: &str| pg.psql(sql).parse::<u32>().expect("a count");
    let plain = count(
        "SELECT count(*) FROM pg_stat_activity JOIN pg_stat_ssl USING (pid)
         WHERE client_addr IS NOT NULL AND NOT ssl",
    );
    assert_eq!(plain, 0);
    let encrypted = count(
        "SELECT count(*) FROM pg_stat_activity JOIN pg_stat_ssl USING (pid)
         WHERE client_addr IS NOT NULL AND ssl AND version IN ('TLSv1.2', 'TLSv1.3')",
    );
    assert!(encrypted >= 2, "{encrypted}");

    // Trusting another CA, the scheduler does not start: the server it
    // reached could be anyone's.
    stack.kill_scheduler("TERM");
    let stranger = TestPki::new().expect("another CA");
    stack.write_policy(&ca_of(&stranger), &jobs);
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(gatehouse_tests::binaries::scheduler())
            .args(["run", "--policy"])
            .arg(&stack.policy_path)
            .env("DOCKER_HOST", &stack.docker_host)
            .output(),
    )
    .await
    .expect("the scheduler gives up at once")
    .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
}
