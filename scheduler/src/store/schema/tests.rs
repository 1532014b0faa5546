use super::*;
use crate::store::{RunStatus, Store, StoreError};

/// The schema every release wrote before migrations were versioned,
/// created by `CREATE TABLE IF NOT EXISTS` on each open.
const BEFORE_MIGRATIONS: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL,
    trigger_kind TEXT NOT NULL, triggered_by TEXT, planned_at INTEGER,
    retry_of INTEGER, attempt INTEGER NOT NULL, status TEXT NOT NULL,
    queued_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER,
    exit_code INTEGER, oom_killed INTEGER NOT NULL DEFAULT 0,
    container_id TEXT, logs BLOB, logs_truncated INTEGER NOT NULL DEFAULT 0,
    reason TEXT, reason_code TEXT);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs(job, id);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status);
CREATE TABLE IF NOT EXISTS job_state (job TEXT PRIMARY KEY, last_planned INTEGER NOT NULL);
";

fn applied_versions(path: &Path) -> Vec<i64> {
    let conn = Connection::open(path).expect("open");
    let mut query = conn
        .prepare("SELECT version FROM refinery_schema_history ORDER BY version")
        .expect("history table");
    let versions = query
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("versions");
    versions
}

#[tokio::test]
async fn a_database_from_before_migrations_opens_with_every_row_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scheduler.db");
    {
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(BEFORE_MIGRATIONS).expect("old schema");
        conn.execute_batch(
            "INSERT INTO runs (job, trigger_kind, triggered_by, attempt, status, queued_at,
                               started_at, finished_at, exit_code, container_id, logs, reason_code)
             VALUES ('backup', 'manual', 'alice', 1, 'succeeded', 1, 2, 3, 0, 'c0ffee', x'6f6b0a', NULL),
                    ('backup', 'schedule', NULL, 1, 'running', 4, 5, NULL, NULL, 'beef', NULL, NULL);
             INSERT INTO job_state (job, last_planned) VALUES ('backup', 1700000000000);",
        )
        .expect("old rows");
    }
    let store = open_sqlite(&path).await.expect("an old database opens");
    let done = store.get(1).await.expect("get").expect("run 1 kept");
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.container_id.as_deref(), Some("c0ffee"));
    assert_eq!(
        store.logs(1).await.expect("logs"),
        Some((b"ok\n".to_vec(), false))
    );
    let unfinished = store.unfinished().await.expect("unfinished");
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].container_id.as_deref(), Some("beef"));
    assert_eq!(
        store.last_planned("backup").await.expect("job state"),
        Some(1_700_000_000_000)
    );
    let deployment = store.deployment().clone();
    assert_eq!(deployment.instance.len(), 16, "{deployment:?}");
    assert_eq!(
        deployment.legacy_instance.as_deref(),
        Some(legacy_instance_id(&path).as_str()),
        "the old label is kept for the runs in flight"
    );
    drop(store);
    assert_eq!(applied_versions(&path), [1, 2]);
    let again = open_sqlite(&path).await.expect("opens again");
    assert_eq!(again.deployment(), &deployment, "the labels are stable");
    assert_eq!(applied_versions(&path), [1, 2], "nothing runs twice");
}

#[tokio::test]
async fn the_instance_is_made_with_the_database_not_derived_from_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stack/scheduler.db");
    let first = open_sqlite(&path).await.expect("open").deployment().clone();
    assert_eq!(
        first.legacy_instance, None,
        "a new database has no old label"
    );
    assert!(first.instance.bytes().all(|b| b.is_ascii_hexdigit()));
    // Another deployment's database at the very same path, as in every
    // stack's container (/data/scheduler.db): a label of its own.
    std::fs::rename(dir.path().join("stack"), dir.path().join("moved")).expect("move");
    let second = open_sqlite(&path).await.expect("open").deployment().clone();
    assert_ne!(second.instance, first.instance);
    // And a database keeps its label wherever it is opened from.
    let moved = open_sqlite(&dir.path().join("moved/scheduler.db"))
        .await
        .expect("open");
    assert_eq!(moved.deployment(), &first);
}

#[tokio::test]
async fn a_database_written_by_a_newer_release_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scheduler.db");
    drop(open_sqlite(&path).await.expect("open"));
    Connection::open(&path)
        .expect("open")
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES (999, 'from_the_future', '2030-01-01T00:00:00Z', '0')",
            [],
        )
        .expect("a newer migration");
    let refused = open_sqlite(&path).await.err().expect("refused");
    let StoreError::Schema { source, .. } = &refused else {
        panic!("{refused}");
    };
    assert!(
        matches!(
            source,
            SchemaError::Newer {
                found: 999,
                known: 2
            }
        ),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("newer gatehouse-scheduler"),
        "{refused}"
    );
}

async fn open_sqlite(path: &std::path::Path) -> Result<Store, crate::store::StoreError> {
    Store::open(&gatehouse_policy::scheduler::Database::Sqlite(
        path.to_path_buf(),
    ))
    .await
}
