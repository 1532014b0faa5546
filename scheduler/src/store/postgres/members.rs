//! Several schedulers on one PostgreSQL database (migration V3).
//!
//! Each scheduler joins as a member with a lease and a fencing token (its
//! `fence`, from a sequence). It renews the lease every [`RENEW_EVERY`];
//! a member whose lease ran out ([`LEASE`], by the database's clock) is
//! presumed dead, and the next member to look adopts its unfinished runs
//! (and runs that have no owner: those of a scheduler that left, or of a
//! database from before V3). Every run names its owner's fence and every
//! write to a run names the writer's, so a scheduler that was presumed
//! dead and wakes up changes nothing that has passed to another.
//!
//! A scheduler that cannot renew for [`GIVE_UP_AFTER`] (well inside the
//! lease, counted from when the last good renewal was *sent*) gives up, so
//! it stops acting before anyone can adopt its runs; so does one that
//! finds it was removed. Its process then stops (see `server.rs`).

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{client, sql};
use crate::store::StoreError;

/// How long a member's lease lasts after each renewal.
pub(super) const LEASE: Duration = Duration::from_secs(10);
/// How often a member renews it.
const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How long a member keeps acting without a good renewal.
const GIVE_UP_AFTER: Duration = Duration::from_secs(6);

/// Expired assertions are deleted every this many renewals (a minute).
const FORGET_ASSERTIONS_EVERY: u64 = 30;

/// Serialises adoptions, so that two members never adopt the same runs
/// (an arbitrary constant: "gatehouse-adopt" in a 64-bit key).
const ADOPT_LOCK: i64 = 0x6761_7465_6164_6f70;

/// The statuses of a run that is not finished, in SQL.
pub(super) const UNFINISHED: &str = "('queued', 'starting', 'running')";

/// This scheduler's membership.
pub(super) struct Member {
    pub(super) fence: i64,
    /// Turns true when this scheduler must stop acting as a member.
    lost: watch::Receiver<bool>,
}

impl Member {
    /// Joins, and renews the lease in the background from now on.
    pub(super) async fn join(pool: &Pool) -> Result<Member, StoreError> {
        let name = format!("{}:{}", hostname(), std::process::id());
        let fence: i64 = client(pool)
            .await?
            .query_one(
                "INSERT INTO schedulers (name, joined_at, lease_until)
                 VALUES ($1, gatehouse_now_ms(), gatehouse_now_ms() + $2) RETURNING fence",
                &[&name, &lease_ms()],
            )
            .await
            .map_err(sql)?
            .get(0);
        tracing::info!(fence, %name, "joined the schedulers sharing this PostgreSQL database");
        let (lost_tx, lost) = watch::channel(false);
        tokio::spawn(keep_lease(pool.clone(), fence, lost_tx));
        Ok(Member { fence, lost })
    }

    /// Resolves when this scheduler must stop (see the module doc).
    pub(super) async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|lost| *lost).await;
    }

    /// Leaves at shutdown, so that another member adopts this one's runs
    /// at once rather than when the lease runs out.
    pub(super) async fn leave(&self, pool: &Pool) -> Result<(), StoreError> {
        client(pool)
            .await?
            .execute("DELETE FROM schedulers WHERE fence = $1", &[&self.fence])
            .await
            .map(drop)
            .map_err(sql)
    }

    /// Removes the members whose lease ran out and takes over their
    /// unfinished runs, and those of no member. Returns their ids. Nothing
    /// is adopted while this member's own lease has run out.
    pub(super) async fn adopt_orphans(&self, pool: &Pool) -> Result<Vec<i64>, StoreError> {
        let mut client = client(pool).await?;
        let tx = client.transaction().await.map_err(sql)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ADOPT_LOCK])
            .await
            .map_err(sql)?;
        let gone = tx
            .query(
                "DELETE FROM schedulers WHERE lease_until < gatehouse_now_ms() RETURNING fence, name",
                &[],
            )
            .await
            .map_err(sql)?;
        for member in &gone {
            let (fence, name): (i64, String) = (member.get(0), member.get(1));
            tracing::warn!(fence, %name, "a scheduler's lease ran out: adopting its runs");
        }
        let statement = format!(
            "UPDATE runs SET owner = $1
             WHERE status IN {UNFINISHED}
               AND (owner IS NULL OR NOT EXISTS (SELECT 1 FROM schedulers AS s WHERE s.fence = runs.owner))
               AND EXISTS (SELECT 1 FROM schedulers AS me WHERE me.fence = $1 AND me.lease_until >= gatehouse_now_ms())
             RETURNING id"
        );
        let adopted = tx.query(&statement, &[&self.fence]).await.map_err(sql)?;
        tx.commit().await.map_err(sql)?;
        Ok(adopted.iter().map(|r| r.get(0)).collect())
    }
}

/// Renews the lease until it cannot (see the module doc), and now and
/// then forgets accepted assertions that have expired.
async fn keep_lease(pool: Pool, fence: i64, lost: watch::Sender<bool>) {
    let mut last_good = Instant::now();
    let mut every = tokio::time::interval(RENEW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0u64.. {
        every.tick().await;
        if round % FORGET_ASSERTIONS_EVERY == 0 {
            forget_expired_assertions(&pool).await;
        }
        let sent = Instant::now();
        let renewed = tokio::time::timeout(RENEW_EVERY, renew(&pool, fence)).await;
        match renewed {
            Ok(Ok(true)) => last_good = sent,
            Ok(Ok(false)) => {
                tracing::error!(
                    fence,
                    "this scheduler was removed from the database's members (its lease ran out); its runs pass to another"
                );
                let _ = lost.send(true);
                return;
            }
            Ok(Err(e)) => tracing::warn!(fence, error = %e, "cannot renew this scheduler's lease"),
            Err(_) => tracing::warn!(fence, "renewing this scheduler's lease timed out"),
        }
        if last_good.elapsed() >= GIVE_UP_AFTER {
            tracing::error!(
                fence,
                "no lease renewal for {GIVE_UP_AFTER:?}: another scheduler may adopt this one's runs"
            );
            let _ = lost.send(true);
            return;
        }
    }
}

async fn forget_expired_assertions(pool: &Pool) {
    let forgotten = match client(pool).await {
        Ok(client) => client
            .execute(
                "DELETE FROM accepted_assertions WHERE forget_after < gatehouse_now_ms() / 1000",
                &[],
            )
            .await
            .map_err(sql),
        Err(e) => Err(e),
    };
    if let Err(e) = forgotten {
        tracing::warn!(error = %e, "cannot forget expired assertions");
    }
}

async fn renew(pool: &Pool, fence: i64) -> Result<bool, StoreError> {
    let renewed = client(pool)
        .await?
        .execute(
            "UPDATE schedulers SET lease_until = gatehouse_now_ms() + $2
             WHERE fence = $1 AND lease_until >= gatehouse_now_ms()",
            &[&fence, &lease_ms()],
        )
        .await
        .map_err(sql)?;
    Ok(renewed == 1)
}

fn lease_ms() -> i64 {
    LEASE.as_millis() as i64
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned())
}
