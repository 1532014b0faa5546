//! Logs: tracing, human or JSON, with Pingora's `log` records bridged in,
//! and the access log ([`super::access_log`]), which formats its own lines.
//!
//! Every line goes to stderr through [`LogSink`]: appended to a buffer of
//! the writing thread and written by one writer thread, so no request
//! waits on another's write or on the disk. When the output stalls, lines
//! are dropped rather than stalling requests, and counted in
//! `gatehouse_log_lines_dropped_total` (the audit log, not this one, is
//! the record that must not lose entries).
//!
//! Pingora reports a failed downstream TLS handshake only as an error log
//! line, with no hook for applications. [`HandshakeFailureCounter`] counts
//! those lines into `gatehouse_tls_handshake_failures_total`; an
//! integration test proves it still does after a Pingora upgrade.

use std::io::Write;
use std::sync::{Arc, OnceLock};

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::log_sink::LogSink;
use crate::admin::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// The format and the sink chosen by [`init`], for the access log.
static OUTPUT: OnceLock<(LogFormat, LogSink)> = OnceLock::new();

/// Where the access log writes, once [`init`] has run.
pub fn access_output() -> Option<(LogFormat, &'static LogSink)> {
    OUTPUT.get().map(|(format, sink)| (*format, sink))
}

/// Writes what is buffered and stops the writer: call before the process
/// exits, which skips destructors. Later lines are dropped.
pub fn flush() {
    if let Some((_, sink)) = OUTPUT.get() {
        sink.stop();
    }
}

pub fn init(format: LogFormat, metrics: Option<Arc<Metrics>>) {
    if OUTPUT.get().is_some() {
        // A second init (tests): the first writer stays.
        return;
    }
    let sink = match LogSink::start(Box::new(std::io::stderr())) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("cannot start the log writer thread: {e}; logging to stderr directly");
            return init_subscriber(format, metrics, std::io::stderr);
        }
    };
    if OUTPUT.set((format, sink.clone())).is_err() {
        return;
    }
    if let Some(metrics) = &metrics {
        metrics.register(Box::new(DroppedLines::new(sink.clone())));
    }
    init_subscriber(format, metrics, sink);
}

fn init_subscriber<W>(format: LogFormat, metrics: Option<Arc<Metrics>>, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_env("GATEHOUSE_LOG").unwrap_or_else(|_| {
        // Pingora's connection pool logs an ERROR ("failed to acquire
        // reusable stream") when it loses a race with its own idle watcher
        // on another thread and opens a new upstream connection instead:
        // about one request in ten under load, on a healthy system
        // (bench/README.md, "What Pingora itself costs"). Nothing there is
        // actionable, so its module stays quiet by default.
        EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn,pingora_core::connectors=off")
    });
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

/// tracing's fmt layer writes each event through one of these; the event
/// reaches the thread's buffer whole, when the writer is dropped, and
/// wakes the log writer (events other than access lines are rare and
/// often the ones someone is waiting to read).
pub struct EventWriter<'a> {
    sink: &'a LogSink,
    bytes: Vec<u8>,
}

impl Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter<'_> {
    fn drop(&mut self) {
        if !self.bytes.is_empty() {
            self.sink.append_urgent(&self.bytes);
        }
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            sink: self,
            bytes: Vec::new(),
        }
    }
}

/// `gatehouse_log_lines_dropped_total`, read from the sink's own count
/// when scraped.
struct DroppedLines {
    desc: prometheus::core::Desc,
    sink: LogSink,
}

impl DroppedLines {
    fn new(sink: LogSink) -> Self {
        let desc = prometheus::core::Desc::new(
            "gatehouse_log_lines_dropped_total".into(),
            "Log lines dropped because the log writer fell behind".into(),
            Vec::new(),
            Default::default(),
        )
        .expect("static metric definition");
        DroppedLines { desc, sink }
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
        counter.inc_by(self.sink.dropped());
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
