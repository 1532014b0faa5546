//! The clock: fires each scheduled job at its next time, catches up once
//! after downtime where a job asks for it, and follows policy reloads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gatehouse_policy::scheduler::CatchUp;
use tokio::sync::watch;

use crate::engine::{Engine, Triggered};
use crate::store::Trigger;

/// Upper bound on one sleep, so a wall-clock step (NTP, suspend) is
/// noticed within this long.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// On startup: for jobs with `catch_up = "latest"`, the most recent time
/// missed since the scheduler last looked runs once if it is within the
/// starting deadline. Every job's "seen up to" moves to now.
pub fn catch_up(engine: &Arc<Engine>, now: DateTime<Utc>) {
    for job in engine.jobs().values() {
        let Some(schedule) = &job.schedule else {
            continue;
        };
        let last = engine.store().last_planned(&job.name).ok().flatten();
        if let (CatchUp::Latest { starting_deadline }, Some(last)) = (job.catch_up, last) {
            let Some(from) = DateTime::from_timestamp_millis(last) else {
                continue;
            };
            let window_start =
                from.max(now - chrono::Duration::from_std(starting_deadline).unwrap_or_default());
            match schedule.latest_between(window_start, now) {
                Some(missed) => {
                    tracing::info!(job = %job.name, %missed, "catching up the most recent missed run");
                    let planned = missed.timestamp_millis();
                    if let Err(e) = engine.trigger(&job.name, Trigger::CatchUp { planned }) {
                        tracing::error!(job = %job.name, error = %e, "cannot queue the catch-up run");
                    }
                }
                None => {
                    if schedule.latest_between(from, now).is_some() {
                        tracing::info!(job = %job.name, "missed runs are older than starting_deadline; not caught up");
                    }
                }
            }
        }
        if let Err(e) = engine
            .store()
            .set_last_planned(&job.name, now.timestamp_millis())
        {
            tracing::error!(job = %job.name, error = %e, "cannot record the schedule position");
        }
    }
}

/// Fires jobs until shutdown. `reloaded` ticks when the job table changed.
pub async fn run(
    engine: Arc<Engine>,
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
            match engine.trigger(&name, trigger) {
                Ok(Triggered::Queued(run)) => {
                    tracing::debug!(job = %name, run, %planned, "scheduled run queued")
                }
                Ok(Triggered::Skipped(..)) => {}
                Err(e) => tracing::error!(job = %name, error = %e, "cannot queue a scheduled run"),
            }
            if let Err(e) = engine
                .store()
                .set_last_planned(&name, planned.timestamp_millis())
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
