use super::*;
use rusqlite::Connection;

impl Store {
    /// A run in any first status, as the engine's calls record them.
    async fn insert(
        &self,
        job: &str,
        trigger: &Trigger,
        attempt: u32,
        status: RunStatus,
        reason: Option<&str>,
    ) -> Result<i64, StoreError> {
        let run = NewRun::new(job, trigger, attempt, status, reason, None);
        match self.record(&run, false).await? {
            Claim::Recorded(id) => Ok(id),
            other => panic!("SQLite records every run: {other:?}"),
        }
    }
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_sqlite(&dir.path().join("sub/runs.db"))
        .await
        .expect("open");
    (dir, store)
}

#[tokio::test]
async fn a_run_moves_through_its_states_and_finishes_once() {
    let (_dir, s) = store().await;
    let id = s
        .insert(
            "j",
            &Trigger::Manual { by: "alice".into() },
            1,
            RunStatus::Queued,
            None,
        )
        .await
        .expect("insert");
    s.set_container(id, "c1").await.expect("container");
    s.mark_running(id, 5).await.expect("running");
    assert_eq!(s.unfinished().await.expect("unfinished").len(), 1);
    let finish = Finish {
        exit_code: Some(3),
        logs: Some(b"out".to_vec()),
        ..Finish::default()
    };
    assert!(s
        .finish(id, RunStatus::Failed, &finish)
        .await
        .expect("finish"));
    assert!(!s
        .finish(id, RunStatus::Lost, &Finish::default())
        .await
        .expect("again"));
    let run = s.get(id).await.expect("get").expect("exists");
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.exit_code, Some(3));
    assert_eq!(run.trigger, Trigger::Manual { by: "alice".into() });
    assert_eq!(run.container_id.as_deref(), Some("c1"));
    assert_eq!(
        s.logs(id).await.expect("logs"),
        Some((b"out".to_vec(), false))
    );
    assert!(s.unfinished().await.expect("unfinished").is_empty());
}

#[tokio::test]
async fn lists_filter_by_job_and_status_newest_first() {
    let (_dir, s) = store().await;
    for job in ["a", "b", "a"] {
        s.insert(
            job,
            &Trigger::Schedule { planned: 1 },
            1,
            RunStatus::Skipped,
            Some("overlap"),
        )
        .await
        .expect("insert");
    }
    let runs = s
        .list(&RunFilter {
            job: Some("a".into()),
            status: Some(RunStatus::Skipped),
            limit: 10,
        })
        .await
        .expect("list");
    assert_eq!(runs.len(), 2);
    assert!(runs[0].id > runs[1].id);
    assert_eq!(runs[0].reason.as_deref(), Some("overlap"));
}

#[tokio::test]
async fn pruning_keeps_the_newest_finished_runs_and_every_unfinished_one() {
    let (_dir, s) = store().await;
    for _ in 0..5 {
        s.insert(
            "a",
            &Trigger::Schedule { planned: 1 },
            1,
            RunStatus::Skipped,
            None,
        )
        .await
        .expect("insert");
    }
    let open = s
        .insert(
            "a",
            &Trigger::Schedule { planned: 1 },
            1,
            RunStatus::Queued,
            None,
        )
        .await
        .expect("insert");
    let removed = s.prune(2, Duration::from_secs(3600)).await.expect("prune");
    assert_eq!(
        removed, 4,
        "5 finished + 1 open, keep 2 newest (one is open)"
    );
    assert!(s.get(open).await.expect("get").is_some());
}

#[tokio::test]
async fn last_planned_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("runs.db");
    open_sqlite(&path)
        .await
        .expect("open")
        .set_last_planned("j", 42)
        .await
        .expect("set");
    assert_eq!(
        open_sqlite(&path)
            .await
            .expect("reopen")
            .last_planned("j")
            .await
            .expect("get"),
        Some(42)
    );
}

#[tokio::test]
async fn reason_codes_are_stored_with_skips_and_finishes() {
    let (_dir, s) = store().await;
    let skipped = s
        .insert_skipped(
            "j",
            &Trigger::Schedule { planned: 1 },
            "missed: the scheduler was not running",
            ReasonCode::Missed,
        )
        .await
        .expect("insert")
        .expect("recorded");
    let run = s.get(skipped).await.expect("get").expect("exists");
    assert_eq!(run.status, RunStatus::Skipped);
    assert_eq!(run.reason_code, Some(ReasonCode::Missed));
    assert!(run.finished_at.is_some());

    let lost = s
        .insert(
            "j",
            &Trigger::Schedule { planned: 2 },
            1,
            RunStatus::Queued,
            None,
        )
        .await
        .expect("insert");
    assert_eq!(
        s.get(lost).await.expect("get").expect("exists").reason_code,
        None
    );
    let finish = Finish::because(ReasonCode::NeverStarted, "never started");
    assert!(s
        .finish(lost, RunStatus::Lost, &finish)
        .await
        .expect("finish"));
    let run = s.get(lost).await.expect("get").expect("exists");
    assert_eq!(run.reason_code, Some(ReasonCode::NeverStarted));
    assert_eq!(run.exit_code, None, "nothing ran, so no exit code");
    let json = serde_json::to_value(&run).expect("json");
    assert_eq!(json["reason_code"], "never_started");
    for code in ReasonCode::ALL {
        assert_eq!(ReasonCode::parse(code.as_str()), Some(code));
    }
}

#[tokio::test]
async fn a_database_from_before_reason_codes_gains_the_column_and_keeps_its_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    {
        let conn = Connection::open(&path).expect("open");
        // The runs table as the first release wrote it.
        conn.execute_batch(
            "CREATE TABLE runs (
                id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL,
                trigger_kind TEXT NOT NULL, triggered_by TEXT, planned_at INTEGER,
                retry_of INTEGER, attempt INTEGER NOT NULL, status TEXT NOT NULL,
                queued_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER,
                exit_code INTEGER, oom_killed INTEGER NOT NULL DEFAULT 0,
                container_id TEXT, logs BLOB, logs_truncated INTEGER NOT NULL DEFAULT 0,
                reason TEXT);
             INSERT INTO runs (job, trigger_kind, triggered_by, attempt, status, queued_at, finished_at, exit_code)
             VALUES ('j', 'manual', 'alice', 1, 'succeeded', 1, 2, 0);",
        )
        .expect("old schema");
    }
    let s = open_sqlite(&path).await.expect("open an old database");
    let old = s.get(1).await.expect("get").expect("exists");
    assert_eq!(old.status, RunStatus::Succeeded);
    assert_eq!(old.reason_code, None);
    let id = s
        .insert_skipped(
            "j",
            &Trigger::Manual { by: "bob".into() },
            "overlap: run 1 is still active",
            ReasonCode::Overlap,
        )
        .await
        .expect("insert")
        .expect("recorded");
    assert_eq!(
        s.get(id).await.expect("get").expect("exists").reason_code,
        Some(ReasonCode::Overlap)
    );
    drop(s);
    open_sqlite(&path)
        .await
        .expect("opening again adds nothing twice");
}

async fn open_sqlite(path: &std::path::Path) -> Result<Store, crate::store::StoreError> {
    Store::open(&gatehouse_policy::scheduler::Database::Sqlite(
        path.to_path_buf(),
    ))
    .await
}
