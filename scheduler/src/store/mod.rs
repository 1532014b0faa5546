//! The run history: SQLite (WAL) by default, or PostgreSQL. A run's row
//! is written before its container is created, so a crash at any point
//! leaves a row that the next start can reconcile: a run is never
//! silently forgotten.

use std::time::Duration;

use gatehouse_policy::scheduler::Database;

mod postgres;
mod reason;
mod run;
mod schema;
mod sqlite;
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
    #[error("run history (PostgreSQL): {0}")]
    Postgres(String),
    /// The run has passed to another scheduler (this one was presumed
    /// dead): nothing was written.
    #[error("run history: run {0} is owned by another scheduler now")]
    NotOwner(i64),
    #[error("run history: the database lock was poisoned by a panic")]
    Poisoned,
}

/// What asking to record a new run came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Recorded(i64),
    /// Another scheduler on the same database recorded this fire time
    /// first: it runs it.
    TakenElsewhere,
    /// The job has this unfinished run (asked only `only_if_idle`).
    Busy(i64),
}

pub struct Store {
    backend: Backend,
    deployment: Deployment,
}

enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

const RUN_COLUMNS: &str = "id, job, trigger_kind, triggered_by, planned_at, retry_of, attempt, status, \
     queued_at, started_at, finished_at, exit_code, oom_killed, container_id, logs_truncated, reason, \
     reason_code";

/// A run's first row, the same for both backends.
struct NewRun<'a> {
    job: &'a str,
    trigger: &'a Trigger,
    attempt: i64,
    status: &'static str,
    queued_at: i64,
    /// Set for a run recorded already finished (skipped).
    finished_at: Option<i64>,
    reason: Option<&'a str>,
    reason_code: Option<&'static str>,
}

impl<'a> NewRun<'a> {
    fn new(
        job: &'a str,
        trigger: &'a Trigger,
        attempt: u32,
        status: RunStatus,
        reason: Option<&'a str>,
        code: Option<ReasonCode>,
    ) -> NewRun<'a> {
        let now = now_ms();
        NewRun {
            job,
            trigger,
            attempt: i64::from(attempt),
            status: status.as_str(),
            queued_at: now,
            finished_at: status.is_terminal().then_some(now),
            reason,
            reason_code: code.map(ReasonCode::as_str),
        }
    }
}

/// One call on whichever backend the store has.
macro_rules! on_backend {
    ($store:expr, $db:ident => $call:expr) => {
        match &$store.backend {
            Backend::Sqlite($db) => $call,
            Backend::Postgres($db) => $call.await,
        }
    };
}

impl Store {
    pub async fn open(database: &Database) -> Result<Store, StoreError> {
        let (backend, deployment) = match database {
            Database::Sqlite(path) => {
                let (db, deployment) = sqlite::Sqlite::open(path)?;
                (Backend::Sqlite(db), deployment)
            }
            Database::Postgres { url, password, tls } => {
                let password = password.as_ref().map(|p| p.expose());
                let (db, deployment) = postgres::Postgres::open(url, password, tls).await?;
                (Backend::Postgres(db), deployment)
            }
        };
        Ok(Store {
            backend,
            deployment,
        })
    }

    /// Who owns the containers this database records.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// Whether other schedulers may share this store (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Resolves when this scheduler must stop: it lost its membership of
    /// a shared database (see `postgres/members.rs`). Never, for SQLite.
    pub async fn membership_lost(&self) {
        match &self.backend {
            Backend::Sqlite(_) => std::future::pending().await,
            Backend::Postgres(db) => db.membership_lost().await,
        }
    }

    /// At shutdown: lets other schedulers adopt this one's runs at once.
    pub async fn leave(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(db) => db.leave().await,
        }
    }

    /// Takes over the unfinished runs of schedulers presumed dead (and of
    /// none); returns their ids. Nothing to adopt with SQLite.
    pub async fn adopt_orphans(&self) -> Result<Vec<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(db) => db.adopt_orphans().await,
        }
    }

    /// Unfinished runs that other schedulers own, of `job` or of any.
    pub async fn unfinished_elsewhere(&self, job: Option<&str>) -> Result<Vec<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(db) => db.unfinished_elsewhere(job).await,
        }
    }

    /// Asks whichever scheduler owns run `id` to stop it; false when the
    /// run is finished (or, with SQLite, not this process's to ask).
    pub async fn request_stop(&self, id: i64, request: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(false),
            Backend::Postgres(db) => db.request_stop(id, request).await,
        }
    }

    /// Stops other schedulers asked of this one's runs.
    pub async fn stop_requests(&self) -> Result<Vec<(i64, String)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(db) => db.stop_requests().await,
        }
    }

    /// Whether the gateway assertion `jti` (good until `forget_after`,
    /// Unix seconds) is used here for the first time among the schedulers
    /// sharing the database. Always true for SQLite, where this process's
    /// own replay check is the only one.
    pub async fn first_use(&self, jti: &str, forget_after: u64) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(true),
            Backend::Postgres(db) => db.first_use(jti, forget_after).await,
        }
    }

    /// Records a queued run. With `only_if_idle`, not while the job has an
    /// unfinished run on another scheduler sharing the database.
    pub async fn queue(
        &self,
        job: &str,
        trigger: &Trigger,
        attempt: u32,
        only_if_idle: bool,
    ) -> Result<Claim, StoreError> {
        let run = NewRun::new(job, trigger, attempt, RunStatus::Queued, None, None);
        self.record(&run, only_if_idle).await
    }

    /// Records a run that was skipped (never queued), with why; `None`
    /// when another scheduler already recorded this fire time.
    pub async fn insert_skipped(
        &self,
        job: &str,
        trigger: &Trigger,
        reason: &str,
        code: ReasonCode,
    ) -> Result<Option<i64>, StoreError> {
        let run = NewRun::new(
            job,
            trigger,
            1,
            RunStatus::Skipped,
            Some(reason),
            Some(code),
        );
        Ok(match self.record(&run, false).await? {
            Claim::Recorded(id) => Some(id),
            Claim::TakenElsewhere | Claim::Busy(_) => None,
        })
    }

    async fn record(&self, run: &NewRun<'_>, only_if_idle: bool) -> Result<Claim, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.insert(run).map(Claim::Recorded),
            Backend::Postgres(db) => db.insert(run, only_if_idle).await,
        }
    }

    pub async fn set_status(&self, id: i64, status: RunStatus) -> Result<(), StoreError> {
        on_backend!(self, db => db.set_status(id, status))
    }

    pub async fn set_container(&self, id: i64, container_id: &str) -> Result<(), StoreError> {
        on_backend!(self, db => db.set_container(id, container_id))
    }

    pub async fn mark_running(&self, id: i64, started_at: i64) -> Result<(), StoreError> {
        on_backend!(self, db => db.mark_running(id, started_at))
    }

    /// Records the terminal state once; a second finish of the same run
    /// (two paths racing to record it) changes nothing.
    pub async fn finish(
        &self,
        id: i64,
        status: RunStatus,
        finish: &Finish,
    ) -> Result<bool, StoreError> {
        on_backend!(self, db => db.finish(id, status, finish))
    }

    pub async fn get(&self, id: i64) -> Result<Option<Run>, StoreError> {
        on_backend!(self, db => db.get(id))
    }

    pub async fn logs(&self, id: i64) -> Result<Option<(Vec<u8>, bool)>, StoreError> {
        on_backend!(self, db => db.logs(id))
    }

    /// Newest first.
    pub async fn list(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        on_backend!(self, db => db.list(filter))
    }

    /// Runs that were queued, starting or running when the last process
    /// stopped: each must be adopted, recorded or marked lost. With a
    /// shared database, only this scheduler's (see `adopt_orphans`).
    pub async fn unfinished(&self) -> Result<Vec<Run>, StoreError> {
        on_backend!(self, db => db.unfinished())
    }

    pub async fn last_success(&self, job: &str) -> Result<Option<Run>, StoreError> {
        on_backend!(self, db => db.last_success(job))
    }

    /// The outcome of `job`'s last finished run before `before` that no
    /// retry followed (a retried failure is not the job's final word):
    /// how a success is known to be a recovery.
    pub async fn previous_outcome(
        &self,
        job: &str,
        before: i64,
    ) -> Result<Option<RunStatus>, StoreError> {
        on_backend!(self, db => db.previous_outcome(job, before))
    }

    /// The last scheduled time the scheduler acted on for `job`, so that a
    /// restart knows what it missed.
    pub async fn last_planned(&self, job: &str) -> Result<Option<i64>, StoreError> {
        on_backend!(self, db => db.last_planned(job))
    }

    pub async fn set_last_planned(&self, job: &str, planned: i64) -> Result<(), StoreError> {
        on_backend!(self, db => db.set_last_planned(job, planned))
    }

    /// Drops finished runs beyond the newest `keep` per job and those older
    /// than `max_age`. Unfinished runs are never pruned.
    pub async fn prune(&self, keep: usize, max_age: Duration) -> Result<usize, StoreError> {
        on_backend!(self, db => db.prune(keep, max_age))
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests;
