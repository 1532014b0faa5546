//! The database's tables, created on open, and the columns added to
//! databases written by older releases.

use rusqlite::Connection;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    triggered_by TEXT,
    planned_at INTEGER,
    retry_of INTEGER,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    queued_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    exit_code INTEGER,
    oom_killed INTEGER NOT NULL DEFAULT 0,
    container_id TEXT,
    logs BLOB,
    logs_truncated INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    reason_code TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs(job, id);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status);
CREATE TABLE IF NOT EXISTS job_state (
    job TEXT PRIMARY KEY,
    last_planned INTEGER NOT NULL
);
";

/// Columns added after the first release, added to older databases on open.
const ADDED_COLUMNS: [(&str, &str); 1] = [("reason_code", "TEXT")];

/// Creates what is missing: the tables on a new database, the added
/// columns on an older one.
pub(super) fn create_or_upgrade(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    add_missing_columns(conn)
}

/// `ALTER TABLE … ADD COLUMN` for each of [`ADDED_COLUMNS`] an older
/// database lacks; rows written before have NULL there.
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let existing: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('runs')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, kind) in ADDED_COLUMNS {
        if !existing.iter().any(|e| e == name) {
            conn.execute_batch(&format!("ALTER TABLE runs ADD COLUMN {name} {kind}"))?;
        }
    }
    Ok(())
}
