//! Logs: tracing, human or JSON, with Pingora's `log` records bridged in.
//!
//! Pingora reports a failed downstream TLS handshake only as an error log
//! line, with no hook for applications. [`HandshakeFailureCounter`] counts
//! those lines into `gatehouse_tls_handshake_failures_total`; an
//! integration test proves it still does after a Pingora upgrade.

use std::sync::Arc;

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
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

pub fn init(format: LogFormat, metrics: Option<Arc<Metrics>>) {
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
                    .with_writer(std::io::stderr)
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
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
    };
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
