//! Run history in SQLite (WAL). A run's row is written before its
//! container is created, so a crash at any point leaves a row that the
//! next start can reconcile: a run is never silently forgotten.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

mod reason;
mod run;
mod schema;
pub use reason::ReasonCode;
pub use run::{Finish, Run, RunFilter, RunStatus, Trigger};
pub use schema::{Deployment, SchemaError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("run history database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("run history database {path}: {source}")]
    Schema { path: String, source: SchemaError },
    #[error("run history: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("run history: the database lock was poisoned by a panic")]
    Poisoned,
}

pub struct Store {
    conn: Mutex<Connection>,
    deployment: Deployment,
}

const RUN_COLUMNS: &str = "id, job, trigger_kind, triggered_by, planned_at, retry_of, attempt, status, \
     queued_at, started_at, finished_at, exit_code, oom_killed, container_id, logs_truncated, reason, \
     reason_code";

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A missing directory is the common first-start case; let SQLite
            // report anything else (permissions) with the path.
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // NORMAL in WAL mode loses at most the last transactions on power
        // loss, never consistency; reconciliation covers the gap.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        let deployment = schema::migrate(&mut conn, path).map_err(|source| StoreError::Schema {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Store {
            conn: Mutex::new(conn),
            deployment,
        })
    }

    /// Who owns the containers this database records.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(f(&conn)?)
    }

    /// Adds a run in `status` (queued, or skipped) and returns its id.
    pub async fn insert(
        &self,
        job: &str,
        trigger: &Trigger,
        attempt: u32,
        status: RunStatus,
        reason: Option<&str>,
    ) -> Result<i64, StoreError> {
        self.insert_row(job, trigger, attempt, status, reason, None)
    }

    /// Records a run that was skipped (never queued), with why.
    pub async fn insert_skipped(
        &self,
        job: &str,
        trigger: &Trigger,
        reason: &str,
        code: ReasonCode,
    ) -> Result<i64, StoreError> {
        self.insert_row(
            job,
            trigger,
            1,
            RunStatus::Skipped,
            Some(reason),
            Some(code),
        )
    }

    fn insert_row(
        &self,
        job: &str,
        trigger: &Trigger,
        attempt: u32,
        status: RunStatus,
        reason: Option<&str>,
        code: Option<ReasonCode>,
    ) -> Result<i64, StoreError> {
        let now = now_ms();
        let retry_of = match trigger {
            Trigger::Retry { of, .. } => Some(*of),
            _ => None,
        };
        let finished = status.is_terminal().then_some(now);
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (job, trigger_kind, triggered_by, planned_at, retry_of, attempt, status, queued_at, finished_at, reason, reason_code)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![job, trigger.kind(), trigger.by(), trigger.planned(), retry_of, attempt, status.as_str(), now, finished, reason, code.map(ReasonCode::as_str)],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub async fn set_status(&self, id: i64, status: RunStatus) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = ?2 WHERE id = ?1",
                params![id, status.as_str()],
            )
            .map(drop)
        })
    }

    pub async fn set_container(&self, id: i64, container_id: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET container_id = ?2 WHERE id = ?1",
                params![id, container_id],
            )
            .map(drop)
        })
    }

    pub async fn mark_running(&self, id: i64, started_at: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = 'running', started_at = ?2 WHERE id = ?1",
                params![id, started_at],
            )
            .map(drop)
        })
    }

    /// Records the terminal state once; a second finish of the same run
    /// (two paths racing to record it) changes nothing.
    pub async fn finish(
        &self,
        id: i64,
        status: RunStatus,
        finish: &Finish,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3, exit_code = ?4, oom_killed = ?5,
                        logs = ?6, logs_truncated = ?7, reason = ?8, reason_code = ?9
                 WHERE id = ?1 AND status IN ('queued', 'starting', 'running')",
                params![
                    id,
                    status.as_str(),
                    now_ms(),
                    finish.exit_code,
                    finish.oom_killed,
                    finish.logs,
                    finish.logs_truncated,
                    finish.reason,
                    finish.reason_code.map(ReasonCode::as_str)
                ],
            )
            .map(|n| n == 1)
        })
    }

    pub async fn get(&self, id: i64) -> Result<Option<Run>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                run_from_row,
            )
            .optional()
        })
    }

    pub async fn logs(&self, id: i64) -> Result<Option<(Vec<u8>, bool)>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT logs, logs_truncated FROM runs WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, Option<Vec<u8>>>(0)?.unwrap_or_default(),
                        r.get(1)?,
                    ))
                },
            )
            .optional()
        })
    }

    /// Newest first.
    pub async fn list(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs
                 WHERE (?1 IS NULL OR job = ?1) AND (?2 IS NULL OR status = ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![
                    filter.job,
                    filter.status.map(RunStatus::as_str),
                    filter.limit as i64
                ],
                run_from_row,
            )?;
            rows.collect()
        })
    }

    /// Runs that were queued, starting or running when the last process
    /// stopped: each must be adopted, recorded or marked lost.
    pub async fn unfinished(&self) -> Result<Vec<Run>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('queued', 'starting', 'running') ORDER BY id"
            ))?;
            let rows = stmt.query_map([], run_from_row)?;
            rows.collect()
        })
    }

    pub async fn last_success(&self, job: &str) -> Result<Option<Run>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE job = ?1 AND status = 'succeeded' ORDER BY id DESC LIMIT 1"),
                [job],
                run_from_row,
            )
            .optional()
        })
    }

    /// The outcome of `job`'s last finished run before `before` that no
    /// retry followed (a retried failure is not the job's final word):
    /// how a success is known to be a recovery.
    pub async fn previous_outcome(
        &self,
        job: &str,
        before: i64,
    ) -> Result<Option<RunStatus>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT status FROM runs AS r
                 WHERE job = ?1 AND id < ?2
                   AND status IN ('succeeded', 'failed', 'timed_out', 'lost')
                   AND NOT EXISTS (SELECT 1 FROM runs AS n WHERE n.retry_of = r.id)
                 ORDER BY id DESC LIMIT 1",
                params![job, before],
                |r| r.get::<_, String>(0),
            )
            .optional()
        })
        .map(|s| s.as_deref().and_then(RunStatus::parse))
    }

    /// The last scheduled time the scheduler acted on for `job`, so that a
    /// restart knows what it missed.
    pub async fn last_planned(&self, job: &str) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT last_planned FROM job_state WHERE job = ?1",
                [job],
                |r| r.get(0),
            )
            .optional()
        })
    }

    pub async fn set_last_planned(&self, job: &str, planned: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO job_state (job, last_planned) VALUES (?1, ?2)
                 ON CONFLICT(job) DO UPDATE SET last_planned = excluded.last_planned",
                params![job, planned],
            )
            .map(drop)
        })
    }

    /// Drops finished runs beyond the newest `keep` per job and those older
    /// than `max_age`. Unfinished runs are never pruned.
    pub async fn prune(&self, keep: usize, max_age: Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms() - max_age.as_millis() as i64;
        self.with(|c| {
            let by_age = c.execute(
                "DELETE FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?1",
                [cutoff],
            )?;
            let by_count = c.execute(
                "DELETE FROM runs WHERE finished_at IS NOT NULL AND id IN (
                    SELECT id FROM (
                        SELECT id, ROW_NUMBER() OVER (PARTITION BY job ORDER BY id DESC) AS n FROM runs
                    ) WHERE n > ?1)",
                [keep as i64],
            )?;
            Ok(by_age + by_count)
        })
    }
}

fn run_from_row(r: &Row<'_>) -> rusqlite::Result<Run> {
    let kind: String = r.get(2)?;
    let by: Option<String> = r.get(3)?;
    let planned: Option<i64> = r.get(4)?;
    let trigger = match kind.as_str() {
        "schedule" => Trigger::Schedule {
            planned: planned.unwrap_or_default(),
        },
        "catch_up" => Trigger::CatchUp {
            planned: planned.unwrap_or_default(),
        },
        "retry" => Trigger::Retry {
            of: r.get::<_, Option<i64>>(5)?.unwrap_or_default(),
            by,
        },
        _ => Trigger::Manual {
            by: by.unwrap_or_default(),
        },
    };
    let status: String = r.get(7)?;
    Ok(Run {
        id: r.get(0)?,
        job: r.get(1)?,
        trigger,
        attempt: r.get(6)?,
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Lost),
        queued_at: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
        exit_code: r.get(11)?,
        oom_killed: r.get(12)?,
        container_id: r.get(13)?,
        logs_truncated: r.get(14)?,
        reason: r.get(15)?,
        reason_code: r
            .get::<_, Option<String>>(16)?
            .as_deref()
            .and_then(ReasonCode::parse),
    })
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests;
