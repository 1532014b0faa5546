//! Notifications about run outcomes: webhook (HMAC-signed JSON), Slack
//! incoming webhook, and email (SMTP with STARTTLS).
//!
//! A notification's life, in order:
//! 1. `RunEngine::record` writes a run's outcome, then calls
//!    `RunEngine::notify_outcome` (`engine/notice.rs`), which picks the event (failed, timed_out, lost, recovered,
//!    succeeded) from the status and the job's history, and keeps it only
//!    if the job's `notify.on` asks for it. A failure that a retry follows
//!    is not announced: its retry's outcome is;
//! 2. one delivery per channel in `notify.to` goes on a bounded queue with
//!    `try_send`: a full queue drops it (counted, logged, audited) and the
//!    run never waits;
//! 3. the worker (`deliver`) sends it through the SSRF guard (`guard`),
//!    retrying transient failures with jittered backoff; a refused
//!    destination is never retried;
//! 4. every delivery's end is counted in
//!    `gatehouse_scheduler_notifications_total{channel, outcome}` and
//!    audited as `notify.delivery`.
//!
//! **Invariant:** a notification never changes a run's outcome: it is
//! decided after the outcome is stored, and nothing flows back.

mod deliver;
mod email;
mod error;
pub mod guard;
mod http;
mod slack;
mod webhook;

use std::sync::Arc;

use anyhow::Context;
use gatehouse_policy::notify::{ChannelKind, NotifyEvent, NotifySettings};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::audit::Audit;
use crate::metrics::Metrics;
use crate::store::{now_ms, Finish, RunStatus};

pub use error::DeliveryError;

/// Bytes of the end of a run's (masked) output a notification carries.
const LOG_TAIL: usize = 2048;

/// What a notification says about a run: the webhook's JSON body, and the
/// text of Slack messages and mails.
#[derive(Debug, Clone, Serialize)]
pub struct RunNotice {
    #[serde(serialize_with = "event_name")]
    pub event: NotifyEvent,
    pub job: String,
    pub run: i64,
    pub attempt: u32,
    #[serde(serialize_with = "status_name")]
    pub status: RunStatus,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    /// Unix milliseconds.
    pub finished_at: i64,
    /// The end of the run's output, already masked like the stored logs.
    pub log_tail: String,
}

impl RunNotice {
    /// The notice of `event` for run `run` of `job`, with the end of its
    /// recorded output.
    pub(crate) fn new(
        event: NotifyEvent,
        job: &str,
        run: i64,
        attempt: u32,
        status: RunStatus,
        finish: &Finish,
    ) -> RunNotice {
        let log_tail = finish
            .logs
            .as_deref()
            .map(|logs| {
                String::from_utf8_lossy(&logs[logs.len().saturating_sub(LOG_TAIL)..]).into_owned()
            })
            .unwrap_or_default();
        RunNotice {
            event,
            job: job.to_owned(),
            run,
            attempt,
            status,
            exit_code: finish.exit_code,
            reason: finish.reason.clone(),
            finished_at: now_ms(),
            log_tail,
        }
    }

    /// One line for chat and mail subjects.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "Gatehouse: job {} {} (run {}, attempt {}",
            self.job,
            match self.event {
                NotifyEvent::Recovered => "recovered",
                NotifyEvent::Succeeded => "succeeded",
                NotifyEvent::TimedOut => "timed out",
                NotifyEvent::Lost => "was lost",
                NotifyEvent::Failed => "failed",
            },
            self.run,
            self.attempt
        );
        if let Some(code) = self.exit_code {
            text.push_str(&format!(", exit code {code}"));
        }
        text.push(')');
        if let Some(reason) = &self.reason {
            text.push_str(": ");
            text.push_str(reason);
        }
        text
    }
}

/// The event by its wire name, e.g. `timed_out`.
fn event_name<S: serde::Serializer>(event: &NotifyEvent, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(event.as_str())
}

/// The run's status by its wire name, e.g. `timed_out`.
fn status_name<S: serde::Serializer>(status: &RunStatus, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(status.as_str())
}

struct Delivery {
    channel: String,
    notice: Arc<RunNotice>,
}

/// The scheduler's handle on the delivery queue.
pub struct Notifier {
    queue: mpsc::Sender<Delivery>,
    metrics: Arc<Metrics>,
    audit: Audit,
}

impl Notifier {
    /// Starts the delivery worker (needs a Tokio runtime).
    pub fn start(settings: &NotifySettings, metrics: Arc<Metrics>, audit: Audit) -> Notifier {
        let (queue, rx) = mpsc::channel(settings.queue);
        let worker = deliver::Worker::new(settings.clone(), metrics.clone(), audit.clone());
        tokio::spawn(worker.run(rx));
        Notifier {
            queue,
            metrics,
            audit,
        }
    }

    /// Queues one delivery per channel; never waits.
    pub fn enqueue(&self, notice: RunNotice, to: &[String]) {
        let notice = Arc::new(notice);
        for channel in to {
            let delivery = Delivery {
                channel: channel.clone(),
                notice: notice.clone(),
            };
            if let Err(e) = self.queue.try_send(delivery) {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "the notification queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the notification worker stopped",
                };
                tracing::warn!(channel = %channel, job = %notice.job, run = notice.run, "notification dropped: {why}");
                deliver::record(
                    &self.metrics,
                    &self.audit,
                    channel,
                    &notice,
                    0,
                    deliver::Outcome::Dropped,
                    Some(why),
                );
            }
        }
    }
}

/// What `check` and start-up verify: every secret is readable, a Slack URL
/// read from the environment or a file is an allowed http(s) URL, mail
/// addresses parse and CA files load.
pub fn check(settings: &NotifySettings) -> anyhow::Result<()> {
    let guard = guard::Guard::new(settings.guard.clone());
    for channel in &settings.channels {
        let what = || format!("notification channel {}", channel.name);
        match &channel.kind {
            ChannelKind::Webhook { secret, .. } => {
                secret.read().with_context(what)?;
            }
            ChannelKind::Slack { url } => {
                slack::read_url(url, &guard).with_context(what)?;
            }
            ChannelKind::Email(mail) => {
                email::check(mail).with_context(what)?;
            }
        }
    }
    if !settings.guard.insecure_allow_networks.is_empty() {
        tracing::warn!(networks = ?settings.guard.insecure_allow_networks, "notifications may reach internal addresses (insecure_allow_networks)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> RunNotice {
        RunNotice {
            event: NotifyEvent::Failed,
            job: "nightly".into(),
            run: 7,
            attempt: 1,
            status: RunStatus::Failed,
            exit_code: Some(3),
            reason: None,
            finished_at: 0,
            log_tail: String::new(),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let metrics = Metrics::new();
        // A queue of one that nobody empties: the worker is stuck.
        let (queue, _stuck) = mpsc::channel(1);
        let notifier = Notifier {
            queue,
            metrics: metrics.clone(),
            audit: Audit::default(),
        };
        let started = std::time::Instant::now();
        notifier.enqueue(notice(), &["a".into(), "b".into(), "c".into()]);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let dropped = |channel: &str| {
            metrics
                .notifications
                .with_label_values(&[channel, "dropped"])
                .get()
        };
        assert_eq!((dropped("a"), dropped("b"), dropped("c")), (0, 1, 1));
    }

    #[test]
    fn the_summary_names_the_job_event_and_exit() {
        assert_eq!(
            notice().summary(),
            "Gatehouse: job nightly failed (run 7, attempt 1, exit code 3)"
        );
    }
}
