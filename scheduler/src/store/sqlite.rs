//! The SQLite store (WAL), the default: one scheduler, one file. Its
//! calls are quick local writes, made under one connection's lock.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::schema::{self, Deployment};
use super::{
    now_ms, Finish, NewRun, ReasonCode, Run, RunFilter, RunStatus, StoreError, Trigger, RUN_COLUMNS,
};

pub(super) struct Sqlite {
    conn: Mutex<Connection>,
}

impl Sqlite {
    pub(super) fn open(path: &Path) -> Result<(Sqlite, Deployment), StoreError> {
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
        Ok((
            Sqlite {
                conn: Mutex::new(conn),
            },
            deployment,
        ))
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(f(&conn)?)
    }

    /// Adds a run and returns its id.
    pub(super) fn insert(&self, run: &NewRun) -> Result<i64, StoreError> {
        let trigger = run.trigger;
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (job, trigger_kind, triggered_by, planned_at, retry_of, attempt, status, queued_at, finished_at, reason, reason_code)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![run.job, trigger.kind(), trigger.by(), trigger.planned(), trigger.retry_of(), run.attempt, run.status, run.queued_at, run.finished_at, run.reason, run.reason_code],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub(super) fn set_status(&self, id: i64, status: RunStatus) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = ?2 WHERE id = ?1",
                params![id, status.as_str()],
            )
            .map(drop)
        })
    }

    pub(super) fn set_container(&self, id: i64, container_id: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET container_id = ?2 WHERE id = ?1",
                params![id, container_id],
            )
            .map(drop)
        })
    }

    pub(super) fn mark_running(&self, id: i64, started_at: i64) -> Result<(), StoreError> {
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
    pub(super) fn finish(
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

    pub(super) fn get(&self, id: i64) -> Result<Option<Run>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                run_from_row,
            )
            .optional()
        })
    }

    pub(super) fn logs(&self, id: i64) -> Result<Option<(Vec<u8>, bool)>, StoreError> {
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
    pub(super) fn list(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
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
    pub(super) fn unfinished(&self) -> Result<Vec<Run>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('queued', 'starting', 'running') ORDER BY id"
            ))?;
            let rows = stmt.query_map([], run_from_row)?;
            rows.collect()
        })
    }

    pub(super) fn last_success(&self, job: &str) -> Result<Option<Run>, StoreError> {
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
    pub(super) fn previous_outcome(
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
    pub(super) fn last_planned(&self, job: &str) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT last_planned FROM job_state WHERE job = ?1",
                [job],
                |r| r.get(0),
            )
            .optional()
        })
    }

    pub(super) fn set_last_planned(&self, job: &str, planned: i64) -> Result<(), StoreError> {
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
    pub(super) fn prune(&self, keep: usize, max_age: Duration) -> Result<usize, StoreError> {
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
    let trigger = Trigger::from_columns(&r.get::<_, String>(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
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
