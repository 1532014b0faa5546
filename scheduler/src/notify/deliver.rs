//! The delivery worker: takes deliveries off the queue, sends each through
//! its channel with retries, and records how it ended.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use gatehouse_audit::{AuditEvent, EventKind, Outcome as AuditOutcome};
use gatehouse_policy::notify::{ChannelKind, NotifySettings};
use tokio::sync::{mpsc, Semaphore};

use super::error::DeliveryError;
use super::guard::Guard;
use super::{email, http, slack, webhook, Delivery, RunNotice};
use crate::audit::Audit;
use crate::metrics::Metrics;

/// Deliveries sent at once; the rest wait on the queue.
const IN_FLIGHT: usize = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How a delivery ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Failed,
    /// The guard refused the destination.
    Refused,
    /// The queue was full.
    Dropped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
            Outcome::Dropped => "dropped",
        }
    }
}

/// Step 4: the metric, the audit record and (for failures) a log line.
pub(super) fn record(
    metrics: &Metrics,
    audit: &Audit,
    channel: &str,
    notice: &RunNotice,
    attempts: u32,
    outcome: Outcome,
    error: Option<&str>,
) {
    metrics
        .notifications
        .with_label_values(&[channel, outcome.as_str()])
        .inc();
    let audit_outcome = match outcome {
        Outcome::Delivered => AuditOutcome::Success,
        Outcome::Refused => AuditOutcome::Denied,
        Outcome::Failed | Outcome::Dropped => AuditOutcome::Failure,
    };
    let mut event = AuditEvent::new(EventKind::NotifyDelivery, audit_outcome)
        .actor("scheduler", "system")
        .detail("channel", channel)
        .detail("job", notice.job.clone())
        .detail("run", notice.run)
        .detail("event", notice.event.as_str())
        .detail("outcome", outcome.as_str())
        .detail("attempts", attempts);
    if let Some(error) = error {
        event = event.detail("error", error);
        tracing::warn!(channel, job = %notice.job, run = notice.run, outcome = outcome.as_str(), attempts, %error, "notification not delivered");
    } else {
        tracing::info!(channel, job = %notice.job, run = notice.run, event = notice.event.as_str(), "notification delivered");
    }
    audit.record(event);
}

pub(super) struct Worker {
    settings: NotifySettings,
    guard: Guard,
    http: Option<reqwest::Client>,
    metrics: Arc<Metrics>,
    audit: Audit,
}

impl Worker {
    pub fn new(settings: NotifySettings, metrics: Arc<Metrics>, audit: Audit) -> Worker {
        let guard = Guard::new(settings.guard.clone());
        let http = http::client(&guard)
            .map_err(|e| tracing::error!(error = %e, "cannot build the notification HTTP client"))
            .ok();
        Worker {
            settings,
            guard,
            http,
            metrics,
            audit,
        }
    }

    pub async fn run(self, mut queue: mpsc::Receiver<Delivery>) {
        let worker = Arc::new(self);
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        while let Some(delivery) = queue.recv().await {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let worker = worker.clone();
            tokio::spawn(async move {
                worker.deliver(delivery).await;
                drop(slot);
            });
        }
    }

    /// Step 3: every attempt, then the record.
    async fn deliver(&self, delivery: Delivery) {
        let attempts = AtomicU32::new(0);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(FIRST_BACKOFF)
            .with_max_delay(MAX_BACKOFF)
            .with_max_times(self.settings.retries as usize)
            .with_jitter();
        let result = (|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.attempt(&delivery).await
        })
        .retry(backoff)
        .when(DeliveryError::is_transient)
        .notify(|error, wait| {
            tracing::info!(channel = %delivery.channel, %error, ?wait, "notification attempt failed; retrying");
        })
        .await;
        let (outcome, error) = match &result {
            Ok(()) => (Outcome::Delivered, None),
            Err(e @ DeliveryError::Refused(_)) => (Outcome::Refused, Some(e.to_string())),
            Err(e) => (Outcome::Failed, Some(e.to_string())),
        };
        record(
            &self.metrics,
            &self.audit,
            &delivery.channel,
            &delivery.notice,
            attempts.load(Ordering::Relaxed),
            outcome,
            error.as_deref(),
        );
    }

    async fn attempt(&self, delivery: &Delivery) -> Result<(), DeliveryError> {
        let channel = self
            .settings
            .channel(&delivery.channel)
            .ok_or_else(|| DeliveryError::Invalid("no such channel".into()))?;
        let http = || {
            self.http
                .as_ref()
                .ok_or_else(|| DeliveryError::Invalid("no HTTP client".into()))
        };
        let notice = &delivery.notice;
        match &channel.kind {
            ChannelKind::Webhook { url, secret } => {
                webhook::send(http()?, &self.guard, url, secret, notice).await
            }
            ChannelKind::Slack { url } => slack::send(http()?, &self.guard, url, notice).await,
            ChannelKind::Email(mail) => email::send(&self.guard, mail, notice).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use gatehouse_policy::notify::{Channel, GuardSettings, HostPattern, SecretRef};
    use gatehouse_policy::secret::SecretSource;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A receiver on 127.0.0.1 answering `statuses` in turn (the last one
    /// from then on); returns its URL and how many requests it got.
    async fn receiver(statuses: &'static [u16]) -> (url::Url, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let status = statuses[n.min(statuses.len() - 1)];
                let mut head = [0u8; 8192];
                let _ = stream.read(&mut head).await;
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        let url = url::Url::parse(&format!("http://{addr}/hook")).expect("url");
        (url, hits)
    }

    fn worker(url: url::Url, metrics: Arc<Metrics>) -> Worker {
        let secret = SecretSource::Inline("whsec-0123456789")
            .resolve(|_| None)
            .expect("secret");
        let settings = NotifySettings {
            channels: vec![Channel {
                name: "hook".into(),
                kind: ChannelKind::Webhook {
                    url,
                    secret: SecretRef::Inline(secret),
                },
            }],
            guard: GuardSettings {
                allow_hosts: vec![HostPattern::Ip([127, 0, 0, 1].into())],
                insecure_allow_networks: vec!["127.0.0.1/32".parse().expect("CIDR")],
                ..GuardSettings::default()
            },
            retries: 3,
            ..NotifySettings::default()
        };
        Worker::new(settings, metrics, Audit::default())
    }

    fn delivery() -> Delivery {
        Delivery {
            channel: "hook".into(),
            notice: Arc::new(RunNotice {
                event: gatehouse_policy::notify::NotifyEvent::Failed,
                job: "nightly".into(),
                run: 1,
                attempt: 1,
                status: crate::store::RunStatus::Failed,
                exit_code: Some(1),
                reason: None,
                finished_at: 0,
                log_tail: String::new(),
            }),
        }
    }

    fn count(metrics: &Metrics, outcome: &str) -> u64 {
        metrics
            .notifications
            .with_label_values(&["hook", outcome])
            .get()
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_delivered() {
        let (url, hits) = receiver(&[503, 429, 200]).await;
        let metrics = Metrics::new();
        worker(url, metrics.clone()).deliver(delivery()).await;
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert_eq!(count(&metrics, "delivered"), 1);
    }

    #[tokio::test]
    async fn a_client_error_is_not_retried() {
        let (url, hits) = receiver(&[403]).await;
        let metrics = Metrics::new();
        worker(url, metrics.clone()).deliver(delivery()).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(count(&metrics, "failed"), 1);
    }
}
