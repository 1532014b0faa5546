//! Logs: tracing, human or JSON, with Pingora's `log` records bridged in.
//!
//! Lines go to stderr through a writer thread: a request formats its
//! access-log line on its own thread and hands it over a bounded channel,
//! so no request waits on another's write or on the disk. When the writer
//! falls behind by [`BUFFERED_LINES`], lines are dropped rather than
//! stalling requests, and counted in `gatehouse_log_lines_dropped_total`
//! (the audit log, not this one, is the record that must not lose
//! entries). The writer batches what is queued into one write.
//!
//! Pingora reports a failed downstream TLS handshake only as an error log
//! line, with no hook for applications. [`HandshakeFailureCounter`] counts
//! those lines into `gatehouse_tls_handshake_failures_total`; an
//! integration test proves it still does after a Pingora upgrade.

use std::io::BufWriter;
use std::sync::{Arc, Mutex, OnceLock};

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::admin::metrics::Metrics;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Lines queued for the writer thread before new ones are dropped.
const BUFFERED_LINES: usize = 64 * 1024;

/// Flushes and stops the writer thread when taken (see [`flush`]).
static WRITER: OnceLock<Mutex<Option<WorkerGuard>>> = OnceLock::new();

/// Writes what is queued and stops the writer: call before the process
/// exits, which skips destructors. Later lines are dropped.
pub fn flush() {
    if let Some(guard) = WRITER.get().and_then(|w| w.lock().ok()?.take()) {
        drop(guard);
    }
}

pub fn init(format: LogFormat, metrics: Option<Arc<Metrics>>) {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("log-writer")
        .finish(BufWriter::new(std::io::stderr()));
    if WRITER.set(Mutex::new(Some(guard))).is_err() {
        // A second init (tests): the first writer stays.
        return;
    }
    if let Some(metrics) = &metrics {
        metrics.register(Box::new(DroppedLines::new(writer.error_counter())));
    }
    let filter = EnvFilter::try_from_env("GATEHOUSE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn"));
    // Filtered to errors, so it does not raise the log level Pingora's hot
    // path is checked against.
    let counter = metrics.map(|metrics| {
        HandshakeFailureCounter { metrics }
            .with_filter(tracing_subscriber::filter::LevelFilter::ERROR)
    });
    let registry = tracing_subscriber::registry().with(counter);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    // Colours for a terminal only: files and pipes get no
                    // escape codes.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(writer)
                    .with_filter(filter),
            )
            .try_init(),
    };
}

/// `gatehouse_log_lines_dropped_total`, read from the writer's own count
/// when scraped.
struct DroppedLines {
    desc: prometheus::core::Desc,
    dropped: ErrorCounter,
}

impl DroppedLines {
    fn new(dropped: ErrorCounter) -> Self {
        let desc = prometheus::core::Desc::new(
            "gatehouse_log_lines_dropped_total".into(),
            "Log lines dropped because the log writer fell behind".into(),
            Vec::new(),
            Default::default(),
        )
        .expect("static metric definition");
        DroppedLines { desc, dropped }
    }
}

impl prometheus::core::Collector for DroppedLines {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let counter = prometheus::IntCounter::with_opts(prometheus::Opts::new(
            self.desc.fq_name.clone(),
            self.desc.help.clone(),
        ))
        .expect("static metric definition");
        counter.inc_by(self.dropped.dropped_lines() as u64);
        counter.collect()
    }
}

pub struct HandshakeFailureCounter {
    metrics: Arc<Metrics>,
}

impl<S: Subscriber> Layer<S> for HandshakeFailureCounter {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // Bridged `log` records share one callsite whose target is "log";
        // the record's own target is in the normalised metadata.
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if !metadata
            .target()
            .starts_with("pingora_core::services::listening")
        {
            return;
        }
        let mut message = MessageText(String::new());
        event.record(&mut message);
        if message.0.starts_with("Downstream handshake") {
            self.metrics.tls_handshake_failures.inc();
        }
    }
}

struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_owned();
        }
    }
}
