//! The clock: fires each scheduled job at its next time, catches up once
//! after downtime where a job asks for it, and follows policy reloads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gatehouse_policy::cron::Schedule;
use gatehouse_policy::scheduler::{CatchUp, Job};
use tokio::sync::watch;

use crate::engine::{RunEngine, Triggered};
use crate::store::Trigger;

/// Upper bound on one sleep, so a wall-clock step (NTP, suspend) is
/// noticed within this long.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Fire times counted one by one after downtime; beyond this, "at least".
const MAX_MISSED_COUNTED: u64 = 10_000;

/// On startup (once Docker answers): every scheduled time that passed since
/// the scheduler last looked is accounted for. For jobs with
/// `catch_up = "latest"`, the most recent one runs once if it is within the
/// starting deadline. Any other missed time leaves a record: one `skipped`
/// run (reason code `missed`) at the latest of them, saying how many there
/// were, and `gatehouse_scheduler_missed_runs_total` counts each. Every
/// job's "seen up to" moves to now.
pub async fn catch_up(engine: &Arc<RunEngine>, now: DateTime<Utc>) {
    for job in engine.jobs().values() {
        let Some(schedule) = &job.schedule else {
            continue;
        };
        let last = engine.store().last_planned(&job.name).await.ok().flatten();
        if let Some(from) = last.and_then(DateTime::from_timestamp_millis) {
            account_for_missed(engine, job, schedule, from, now).await;
        }
        if let Err(e) = engine
            .store()
            .set_last_planned(&job.name, now.timestamp_millis())
            .await
        {
            tracing::error!(job = %job.name, error = %e, "cannot record the schedule position");
        }
    }
}

async fn account_for_missed(
    engine: &Arc<RunEngine>,
    job: &Job,
    schedule: &Schedule,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) {
    let Some(latest) = schedule.latest_between(from, now) else {
        return;
    };
    let missed = count_between(schedule, from, now).max(1);
    let counted = if missed >= MAX_MISSED_COUNTED {
        format!("at least {missed}")
    } else {
        missed.to_string()
    };
    let times = if missed == 1 { "time" } else { "times" };
    let latest_ms = latest.timestamp_millis();
    let reason = match job.catch_up {
        CatchUp::Latest { starting_deadline } => {
            let deadline = chrono::Duration::from_std(starting_deadline).unwrap_or_default();
            if latest >= now - deadline {
                tracing::info!(job = %job.name, missed = %latest, "catching up the most recent missed run");
                let catch_up = Trigger::CatchUp { planned: latest_ms };
                if let Err(e) = engine.trigger(&job.name, catch_up).await {
                    tracing::error!(job = %job.name, error = %e, "cannot queue the catch-up run");
                }
                // The catch-up run stands for the latest; older ones only count.
                if let Err(e) = engine
                    .record_missed(&job.name, latest_ms, missed - 1, None)
                    .await
                {
                    tracing::error!(job = %job.name, error = %e, "cannot count missed runs");
                }
                return;
            }
            tracing::info!(job = %job.name, "missed runs are older than starting_deadline; not caught up");
            format!(
                "missed: the scheduler was not running (or not connected to Docker) at {}; {counted} scheduled {times} since {} passed, the latest older than starting_deadline ({}), so none was caught up",
                latest.to_rfc3339(),
                from.to_rfc3339(),
                humantime::format_duration(starting_deadline)
            )
        }
        CatchUp::None => format!(
            "missed: the scheduler was not running (or not connected to Docker) at {}; {counted} scheduled {times} since {} passed, and the job does not catch up (catch_up = \"none\")",
            latest.to_rfc3339(),
            from.to_rfc3339()
        ),
    };
    tracing::warn!(job = %job.name, missed, latest = %latest, "scheduled runs were missed");
    if let Err(e) = engine
        .record_missed(&job.name, latest_ms, missed, Some(reason))
        .await
    {
        tracing::error!(job = %job.name, error = %e, "cannot record missed runs");
    }
}

/// Fire times in (`from`, `to`], counted up to [`MAX_MISSED_COUNTED`].
fn count_between(schedule: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    let mut count = 0;
    let mut at = from;
    while count < MAX_MISSED_COUNTED {
        match schedule.next_after(at) {
            Some(next) if next <= to => {
                count += 1;
                at = next;
            }
            _ => break,
        }
    }
    count
}

/// Fires jobs until shutdown. `reloaded` ticks when the job table changed.
pub async fn run(
    engine: Arc<RunEngine>,
    mut reloaded: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next: HashMap<String, DateTime<Utc>> = HashMap::new();
    loop {
        let now = Utc::now();
        let jobs = engine.jobs();
        next.retain(|name, _| jobs.get(name).is_some_and(|j| j.schedule.is_some()));
        for job in jobs.values() {
            if let Some(schedule) = &job.schedule {
                next.entry(job.name.clone()).or_insert_with(|| {
                    schedule
                        .next_after(now)
                        .unwrap_or(now + chrono::Duration::days(3650))
                });
            }
        }
        let due: Vec<(String, DateTime<Utc>)> = next
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(n, at)| (n.clone(), *at))
            .collect();
        for (name, planned) in due {
            let Some(job) = jobs.get(&name) else { continue };
            let trigger = Trigger::Schedule {
                planned: planned.timestamp_millis(),
            };
            match engine.trigger(&name, trigger).await {
                Ok(Triggered::Queued(run)) => {
                    tracing::debug!(job = %name, run, %planned, "scheduled run queued")
                }
                Ok(Triggered::Skipped(..)) => {}
                Ok(Triggered::TakenElsewhere) => {
                    tracing::debug!(job = %name, %planned, "another scheduler took this scheduled time")
                }
                Err(e) => tracing::error!(job = %name, error = %e, "cannot queue a scheduled run"),
            }
            if let Err(e) = engine
                .store()
                .set_last_planned(&name, planned.timestamp_millis())
                .await
            {
                tracing::error!(job = %name, error = %e, "cannot record the schedule position");
            }
            // After a stall (suspend, a long clock step) times in the past
            // are not replayed one by one: the next one after now is next.
            let after = planned.max(now);
            let following = job
                .schedule
                .as_ref()
                .and_then(|s| s.next_after(after))
                .unwrap_or(now + chrono::Duration::days(3650));
            next.insert(name, following);
        }
        let sleep = next
            .values()
            .min()
            .map(|at| (*at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            changed = reloaded.changed() => {
                if changed.is_err() { return; }
                // Jobs whose schedule changed start from now.
                let jobs = engine.jobs();
                next.retain(|name, _| jobs.contains_key(name));
                next.clear();
            }
            _ = crate::engine::until_true(&mut shutdown) => return,
        }
    }
}
