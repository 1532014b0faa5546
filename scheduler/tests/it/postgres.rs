//! The run history in a real PostgreSQL (`database = "postgres://…"`):
//! runs are recorded there with the schema's migrations, a restart finds
//! them, and a scheduler that loses its lease stops. (Several schedulers
//! on one database: `replicas.rs`.)

use std::time::Duration;

use gatehouse_tests::postgres::Postgres;
use gatehouse_tests::scheduler::job;
use gatehouse_tests::SchedulerUnderTest;

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
