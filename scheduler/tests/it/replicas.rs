//! Two schedulers, each behind its own gateway, sharing one real
//! PostgreSQL and one Docker daemon: every fire time runs once, a manual
//! run through either runs once and both show it, overlap and cancel hold
//! across them, and the run of one killed with SIGKILL is adopted by the
//! other and recorded once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatehouse_tests::postgres::Postgres;
use gatehouse_tests::scheduler::{job, OPERATOR_KEY};
use gatehouse_tests::SchedulerUnderTest;

const LONG: Duration = Duration::from_secs(60);
const MINUTE_MS: i64 = 60_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn two_schedulers_on_one_database_run_each_fire_time_and_each_run_once() {
    let pg = Postgres::start();
    let jobs = [
        job("every", "schedule = \"* * * * *\"\ncommand = [\"true\"]"),
        job("hello", "command = [\"echo\", \"hello-pg\"]"),
        job(
            "long",
            "overlap = \"forbid\"\nshell = true\ncommand = [\"sleep 12; echo long-done\"]",
        ),
    ]
    .concat();
    let mut a = SchedulerUnderTest::start_with_database(&pg.url(), &jobs).await;
    let b = SchedulerUnderTest::start_with_database(&pg.url(), &jobs).await;
    // The first minute both schedulers saw from its start.
    let first = (now_ms() / MINUTE_MS + 1) * MINUTE_MS;
    assert_eq!(pg.psql("SELECT count(*) FROM schedulers"), "2");

    // A manual run through either runs once, and both show it.
    for (via, other) in [(&a, &b), (&b, &a)] {
        let id = via.run_now("hello").await;
        let run = other.wait_run(id, Some("succeeded"), LONG).await;
        assert_eq!(run["trigger"]["kind"], "manual", "{run}");
        assert_eq!(other.logs(id).await, "hello-pg\n");
    }
    assert_eq!(
        pg.psql("SELECT count(*) FROM runs WHERE job = 'hello'"),
        "2"
    );

    // Overlap is forbidden across schedulers, and a cancel through B stops
    // A's run.
    let held = a.run_now("long").await;
    a.wait_run(held, Some("running"), LONG).await;
    let (status, body) = b.post(OPERATOR_KEY, "/api/jobs/long/run").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["status"], "skipped", "{body}");
    let reason = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("run {held} is still active")),
        "{body}"
    );
    let (status, body) = b
        .post(OPERATOR_KEY, &format!("/api/runs/{held}/cancel"))
        .await;
    assert_eq!(status, 202, "{body}");
    let run = a
        .wait_run(held, Some("cancelled"), Duration::from_secs(20))
        .await;
    assert_eq!(run["reason"], "cancelled by api_key:operator", "{run}");

    // A is killed while its run runs: B adopts the run once A's lease has
    // run out, and it is recorded once, with its output.
    let adopted = a.run_now("long").await;
    a.wait_run(adopted, Some("running"), LONG).await;
    a.kill_scheduler("KILL");
    let run = b.wait_run(adopted, Some("succeeded"), LONG).await;
    assert_eq!(b.logs(adopted).await, "long-done\n", "{run}");
    let adoptions = b.audit_events("run.adopt", 1).await;
    assert_eq!(adoptions[0]["details"]["run"], adopted, "{adoptions:?}");
    assert_eq!(
        pg.psql(&format!(
            "SELECT count(*) FROM runs WHERE id = {adopted} OR retry_of = {adopted}"
        )),
        "1"
    );
    a.spawn_scheduler().await;
    assert_eq!(pg.psql("SELECT count(*) FROM schedulers"), "2");

    // Three minutes of `* * * * *` through all of that: three runs, one per
    // minute, each succeeded.
    let last = first + 2 * MINUTE_MS;
    let wait = (last + 20_000 - now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let runs = pg.psql(&format!(
        "SELECT planned_at, status, started_at - planned_at FROM runs
         WHERE job = 'every' AND planned_at BETWEEN {first} AND {last} ORDER BY planned_at"
    ));
    let rows: Vec<Vec<&str>> = runs.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 3, "{runs}");
    for (row, minute) in rows.iter().zip(0..) {
        assert_eq!(row[0], (first + minute * MINUTE_MS).to_string(), "{runs}");
        assert_eq!(row[1], "succeeded", "{runs}");
    }
    eprintln!("scheduled run start after its planned time, ms: {runs}");
    let duplicates = pg.psql(
        "SELECT count(*) FROM (SELECT planned_at FROM runs WHERE job = 'every'
         GROUP BY planned_at HAVING count(*) > 1) AS twice",
    );
    assert_eq!(duplicates, "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_started_through_one_scheduler_replaces_the_others_run() {
    let pg = Postgres::start();
    let jobs = job(
        "sync",
        "overlap = \"replace\"\nshell = true\ncommand = [\"sleep 60\"]",
    );
    let a = SchedulerUnderTest::start_with_database(&pg.url(), &jobs).await;
    let b = SchedulerUnderTest::start_with_database(&pg.url(), &jobs).await;
    let old = a.run_now("sync").await;
    a.wait_run(old, Some("running"), LONG).await;
    let new = b.run_now("sync").await;
    let replaced = a
        .wait_run(old, Some("cancelled"), Duration::from_secs(20))
        .await;
    assert_eq!(
        replaced["reason"],
        format!("replaced by run {new}"),
        "{replaced}"
    );
    assert_eq!(b.run(new).await["status"], "running");
}
