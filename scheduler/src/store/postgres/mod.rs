//! The PostgreSQL store (`database = "postgres://…"`): the same rows as
//! SQLite, through a small pool (tokio-postgres under deadpool), with its
//! own numbered migrations (`migrations/postgres`, refinery).
//!
//! Several schedulers may share one database (`members.rs`): each fire
//! time is recorded once (a unique index on job and planned time, so the
//! first scheduler to record it runs it), each run has one owner at a
//! time, and the runs of a scheduler that dies pass to another.

mod members;
mod tls;

use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use gatehouse_policy::scheduler::PostgresTls;
use tokio_postgres::config::SslMode;
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

use self::members::{Member, UNFINISHED};
use super::schema::Deployment;
use super::{
    now_ms, Claim, Finish, NewRun, ReasonCode, Run, RunFilter, RunStatus, StoreError, Trigger,
    RUN_COLUMNS,
};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// Held while migrating, so that schedulers starting together do not
/// migrate at once ("gatehouse-migrat" in a 64-bit key).
const MIGRATION_LOCK: i64 = 0x6761_7465_6d69_6772;
const POOL_SIZE: usize = 8;

pub(super) struct Postgres {
    pool: Pool,
    member: Member,
}

impl Postgres {
    pub(super) async fn open(
        url: &str,
        password: Option<&[u8]>,
        tls: &PostgresTls,
    ) -> Result<(Postgres, Deployment), StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(sql)?;
        if let Some(password) = password {
            config.password(password);
        }
        config.connect_timeout(Duration::from_secs(10));
        config.ssl_mode(match tls {
            PostgresTls::VerifyFull { .. } => SslMode::Require,
            PostgresTls::Disabled => SslMode::Disable,
        });
        // Used only when the mode asks for TLS.
        let connector = tls::connector(tls)?;
        let deployment = migrate(&config, connector.clone()).await?;
        let manager = Manager::from_config(
            config.clone(),
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Postgres(e.to_string()))?;
        let member = Member::join(&pool).await?;
        Ok((Postgres { pool, member }, deployment))
    }

    /// Resolves when this scheduler must stop acting as a member.
    pub(super) async fn membership_lost(&self) {
        self.member.lost().await
    }

    pub(super) async fn leave(&self) -> Result<(), StoreError> {
        self.member.leave(&self.pool).await
    }

    pub(super) async fn adopt_orphans(&self) -> Result<Vec<i64>, StoreError> {
        self.member.adopt_orphans(&self.pool).await
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        client(&self.pool).await
    }

    /// Records a run owned by this scheduler. A fire time another
    /// scheduler recorded first is not recorded again; with `only_if_idle`,
    /// nor is a run of a job that has an unfinished run, whoever owns it
    /// (checked and written under the job's lock, so two schedulers cannot
    /// both find it idle).
    pub(super) async fn insert(
        &self,
        run: &NewRun<'_>,
        only_if_idle: bool,
    ) -> Result<Claim, StoreError> {
        let mut client = self.client().await?;
        if !only_if_idle {
            return self.insert_on(&client, run).await;
        }
        // One transaction, so the check and the insert hold the lock.
        let tx = client.transaction().await.map_err(sql)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&run.job],
        )
        .await
        .map_err(sql)?;
        let statement = format!(
            "SELECT id FROM runs WHERE job = $1 AND status IN {UNFINISHED} ORDER BY id LIMIT 1"
        );
        if let Some(row) = tx.query_opt(&statement, &[&run.job]).await.map_err(sql)? {
            return Ok(Claim::Busy(row.get(0)));
        }
        let claim = self.insert_on(&tx, run).await?;
        tx.commit().await.map_err(sql)?;
        Ok(claim)
    }

    /// The insert itself, on a connection or in a transaction.
    async fn insert_on(
        &self,
        client: &impl GenericClient,
        run: &NewRun<'_>,
    ) -> Result<Claim, StoreError> {
        let trigger = run.trigger;
        let row = client
            .query_opt(
                "INSERT INTO runs (job, trigger_kind, triggered_by, planned_at, retry_of, attempt, status, queued_at, finished_at, reason, reason_code, owner)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (job, planned_at) WHERE trigger_kind IN ('schedule', 'catch_up') AND attempt = 1
                 DO NOTHING RETURNING id",
                &[&run.job, &trigger.kind(), &trigger.by(), &trigger.planned(), &trigger.retry_of(), &run.attempt, &run.status, &run.queued_at, &run.finished_at, &run.reason, &run.reason_code, &self.member.fence],
            )
            .await
            .map_err(sql)?;
        Ok(row.map_or(Claim::TakenElsewhere, |row| Claim::Recorded(row.get(0))))
    }

    async fn execute(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.client()
            .await?
            .execute(statement, params)
            .await
            .map_err(sql)
    }

    /// A write to a run this scheduler owns: refused (and nothing changed)
    /// once the run has passed to another scheduler.
    async fn fenced(
        &self,
        id: i64,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), StoreError> {
        match self.execute(statement, params).await? {
            0 => Err(StoreError::NotOwner(id)),
            _ => Ok(()),
        }
    }

    pub(super) async fn set_status(&self, id: i64, status: RunStatus) -> Result<(), StoreError> {
        self.fenced(
            id,
            "UPDATE runs SET status = $2 WHERE id = $1 AND owner = $3",
            &[&id, &status.as_str(), &self.member.fence],
        )
        .await
    }

    pub(super) async fn set_container(
        &self,
        id: i64,
        container_id: &str,
    ) -> Result<(), StoreError> {
        self.fenced(
            id,
            "UPDATE runs SET container_id = $2 WHERE id = $1 AND owner = $3",
            &[&id, &container_id, &self.member.fence],
        )
        .await
    }

    pub(super) async fn mark_running(&self, id: i64, started_at: i64) -> Result<(), StoreError> {
        self.fenced(
            id,
            "UPDATE runs SET status = 'running', started_at = $2 WHERE id = $1 AND owner = $3",
            &[&id, &started_at, &self.member.fence],
        )
        .await
    }

    pub(super) async fn finish(
        &self,
        id: i64,
        status: RunStatus,
        finish: &Finish,
    ) -> Result<bool, StoreError> {
        self.execute(
            "UPDATE runs SET status = $2, finished_at = $3, exit_code = $4, oom_killed = $5,
                    logs = $6, logs_truncated = $7, reason = $8, reason_code = $9
             WHERE id = $1 AND status IN ('queued', 'starting', 'running') AND owner = $10",
            &[
                &id,
                &status.as_str(),
                &now_ms(),
                &finish.exit_code,
                &finish.oom_killed,
                &finish.logs,
                &finish.logs_truncated,
                &finish.reason,
                &finish.reason_code.map(ReasonCode::as_str),
                &self.member.fence,
            ],
        )
        .await
        .map(|n| n == 1)
    }

    async fn runs(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Run>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(statement, params)
            .await
            .map_err(sql)?;
        rows.iter().map(run_from_row).collect()
    }

    pub(super) async fn get(&self, id: i64) -> Result<Option<Run>, StoreError> {
        let statement = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        Ok(self.runs(&statement, &[&id]).await?.pop())
    }

    pub(super) async fn logs(&self, id: i64) -> Result<Option<(Vec<u8>, bool)>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT logs, logs_truncated FROM runs WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(sql)?;
        Ok(row.map(|r| (r.get::<_, Option<Vec<u8>>>(0).unwrap_or_default(), r.get(1))))
    }

    pub(super) async fn list(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let statement = format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE ($1::TEXT IS NULL OR job = $1) AND ($2::TEXT IS NULL OR status = $2)
             ORDER BY id DESC LIMIT $3"
        );
        self.runs(
            &statement,
            &[
                &filter.job,
                &filter.status.map(RunStatus::as_str),
                &(filter.limit as i64),
            ],
        )
        .await
    }

    /// The unfinished runs this scheduler owns.
    pub(super) async fn unfinished(&self) -> Result<Vec<Run>, StoreError> {
        let statement = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status IN {UNFINISHED} AND owner = $1 ORDER BY id"
        );
        self.runs(&statement, &[&self.member.fence]).await
    }

    /// The unfinished runs other schedulers own (of `job`, or of any job).
    pub(super) async fn unfinished_elsewhere(
        &self,
        job: Option<&str>,
    ) -> Result<Vec<i64>, StoreError> {
        let statement = format!(
            "SELECT id FROM runs WHERE status IN {UNFINISHED} AND owner IS DISTINCT FROM $1
               AND ($2::TEXT IS NULL OR job = $2) ORDER BY id"
        );
        let rows = self
            .client()
            .await?
            .query(&statement, &[&self.member.fence, &job])
            .await
            .map_err(sql)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Asks the owner of an unfinished run to stop it. False when the run
    /// is finished.
    pub(super) async fn request_stop(&self, id: i64, request: &str) -> Result<bool, StoreError> {
        let statement =
            format!("UPDATE runs SET stop_request = $2 WHERE id = $1 AND status IN {UNFINISHED}");
        Ok(self.execute(&statement, &[&id, &request]).await? == 1)
    }

    pub(super) async fn first_use(&self, jti: &str, forget_after: u64) -> Result<bool, StoreError> {
        let forget_after = i64::try_from(forget_after).unwrap_or(i64::MAX);
        let inserted = self
            .execute(
                "INSERT INTO accepted_assertions (jti, forget_after) VALUES ($1, $2)
                 ON CONFLICT (jti) DO NOTHING",
                &[&jti, &forget_after],
            )
            .await?;
        Ok(inserted == 1)
    }

    /// What other schedulers asked of this one's unfinished runs.
    pub(super) async fn stop_requests(&self) -> Result<Vec<(i64, String)>, StoreError> {
        let statement = format!(
            "SELECT id, stop_request FROM runs
             WHERE status IN {UNFINISHED} AND owner = $1 AND stop_request IS NOT NULL"
        );
        let rows = self
            .client()
            .await?
            .query(&statement, &[&self.member.fence])
            .await
            .map_err(sql)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(super) async fn last_success(&self, job: &str) -> Result<Option<Run>, StoreError> {
        let statement = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE job = $1 AND status = 'succeeded' ORDER BY id DESC LIMIT 1"
        );
        Ok(self.runs(&statement, &[&job]).await?.pop())
    }

    pub(super) async fn previous_outcome(
        &self,
        job: &str,
        before: i64,
    ) -> Result<Option<RunStatus>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT status FROM runs AS r
                 WHERE job = $1 AND id < $2
                   AND status IN ('succeeded', 'failed', 'timed_out', 'lost')
                   AND NOT EXISTS (SELECT 1 FROM runs AS n WHERE n.retry_of = r.id)
                 ORDER BY id DESC LIMIT 1",
                &[&job, &before],
            )
            .await
            .map_err(sql)?;
        Ok(row.and_then(|r| RunStatus::parse(r.get::<_, &str>(0))))
    }

    pub(super) async fn last_planned(&self, job: &str) -> Result<Option<i64>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT last_planned FROM job_state WHERE job = $1", &[&job])
            .await
            .map_err(sql)?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(super) async fn set_last_planned(&self, job: &str, planned: i64) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO job_state (job, last_planned) VALUES ($1, $2)
             ON CONFLICT (job) DO UPDATE
               SET last_planned = GREATEST(job_state.last_planned, excluded.last_planned)",
            &[&job, &planned],
        )
        .await
        .map(drop)
    }

    pub(super) async fn prune(&self, keep: usize, max_age: Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms() - max_age.as_millis() as i64;
        let by_age = self
            .execute(
                "DELETE FROM runs WHERE finished_at IS NOT NULL AND finished_at < $1",
                &[&cutoff],
            )
            .await?;
        let by_count = self
            .execute(
                "DELETE FROM runs WHERE finished_at IS NOT NULL AND id IN (
                    SELECT id FROM (
                        SELECT id, ROW_NUMBER() OVER (PARTITION BY job ORDER BY id DESC) AS n FROM runs
                    ) AS numbered WHERE n > $1)",
                &[&(keep as i64)],
            )
            .await?;
        Ok(usize::try_from(by_age + by_count).unwrap_or(usize::MAX))
    }
}

/// Brings the schema up to date (refinery, on a connection of its own) and
/// reads the deployment. A database from a newer release is refused.
async fn migrate(
    config: &tokio_postgres::Config,
    connector: MakeRustlsConnect,
) -> Result<Deployment, StoreError> {
    let (mut client, connection) = config.connect(connector).await.map_err(sql)?;
    let driver = tokio::spawn(connection);
    // Released when this connection closes.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(sql)?;
    let runner = embedded::migrations::runner();
    let known = super::schema::known_version(&runner);
    let history: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(sql)?
        .get(0);
    if history {
        let found: Option<i32> = client
            .query_one("SELECT MAX(version) FROM refinery_schema_history", &[])
            .await
            .map_err(sql)?
            .get(0);
        if let Some(found) = found.map(i64::from).filter(|found| *found > known) {
            return Err(StoreError::Schema {
                path: "postgres".to_owned(),
                source: super::schema::SchemaError::Newer { found, known },
            });
        }
    }
    runner
        .run_async(&mut client)
        .await
        .map_err(|e| StoreError::Schema {
            path: "postgres".to_owned(),
            source: super::schema::SchemaError::Migration(e),
        })?;
    let row = client
        .query_one(
            "SELECT instance, legacy_instance FROM deployment WHERE id = 1",
            &[],
        )
        .await
        .map_err(sql)?;
    drop(client);
    let _ = driver.await;
    Ok(Deployment {
        instance: row.get(0),
        legacy_instance: row.get(1),
    })
}

/// A connection from the pool.
async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get()
        .await
        .map_err(|e| StoreError::Postgres(e.to_string()))
}

/// The error with its causes: tokio-postgres says only "error performing
/// TLS handshake"; rustls's cause (an unknown issuer, a wrong name) is
/// what an operator needs.
fn sql(e: tokio_postgres::Error) -> StoreError {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(inner) = cause {
        text = format!("{text}: {inner}");
        cause = inner.source();
    }
    StoreError::Postgres(text)
}

fn run_from_row(r: &Row) -> Result<Run, StoreError> {
    let trigger = Trigger::from_columns(
        r.try_get(2).map_err(sql)?,
        r.try_get(3).map_err(sql)?,
        r.try_get(4).map_err(sql)?,
        r.try_get(5).map_err(sql)?,
    );
    let status: &str = r.try_get(7).map_err(sql)?;
    let attempt: i64 = r.try_get(6).map_err(sql)?;
    Ok(Run {
        id: r.try_get(0).map_err(sql)?,
        job: r.try_get(1).map_err(sql)?,
        trigger,
        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
        status: RunStatus::parse(status).unwrap_or(RunStatus::Lost),
        queued_at: r.try_get(8).map_err(sql)?,
        started_at: r.try_get(9).map_err(sql)?,
        finished_at: r.try_get(10).map_err(sql)?,
        exit_code: r.try_get(11).map_err(sql)?,
        oom_killed: r.try_get(12).map_err(sql)?,
        container_id: r.try_get(13).map_err(sql)?,
        logs_truncated: r.try_get(14).map_err(sql)?,
        reason: r.try_get(15).map_err(sql)?,
        reason_code: r
            .try_get::<_, Option<String>>(16)
            .map_err(sql)?
            .as_deref()
            .and_then(ReasonCode::parse),
    })
}
