//! Prometheus metrics, registered once in a registry of our own (not the
//! global default) so tests and the `/metrics` listener see exactly ours.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub denials: IntCounterVec,
    pub login_failures: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub tls_handshake_failures: IntCounter,
    pub proxy_protocol_refused: IntCounterVec,
    pub shared_state_up: IntGauge,
    pub shared_state_unavailable: IntCounter,
    pub policy_reloads: IntCounterVec,
    pub cert_expiry: GaugeVec,
    pub connections: IntGauge,
    pub connections_refused: IntCounter,
    pub requests_in_flight: IntGauge,
    pub rate_limited: IntCounterVec,
    pub rate_limit_keys: IntGaugeVec,
    pub audit_records: IntCounter,
    pub audit_write_failures: IntCounter,
    pub audit_records_dropped: IntCounter,
    pub audit_healthy: IntGauge,
    pub sessions_revoked: IntGauge,
    pub audit_files_deleted: IntCounter,
}

/// One route's series of the request metrics, kept with the route.
pub struct RouteSeries {
    ok: IntCounter,
    duration: Histogram,
}

impl Metrics {
    /// Registers every metric. `denial_reasons` are the stable names of
    /// every refusal reason (`proxy::refusal::Reason::all`), shown at 0
    /// from the start so alerts over any of them have a series to read.
    pub fn new<'a>(denial_reasons: impl IntoIterator<Item = &'a str>) -> Arc<Self> {
        let r = Registrar(Registry::new());
        let metrics = Metrics {
            requests: r.counter_vec(
                "gatehouse_requests_total",
                "Requests answered, by route and status",
                &["route", "status"],
            ),
            request_duration: r.histogram_vec(
                "gatehouse_request_duration_seconds",
                "Time from request head to the end of the response, by route",
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ],
                &["route"],
            ),
            denials: r.counter_vec(
                "gatehouse_denials_total",
                "Requests the gateway refused, by stable reason name",
                &["reason"],
            ),
            login_failures: r.counter_vec(
                "gatehouse_login_failures_total",
                "Failed logins (each one audited as login.failure), by method; \
                 `unknown` when the credential's kind could not be told",
                &["method"],
            ),
            upstream_errors: r.counter_vec(
                "gatehouse_upstream_errors_total",
                "Failures talking to an upstream, by route and kind",
                &["route", "kind"],
            ),
            tls_handshake_failures: r.counter(
                "gatehouse_tls_handshake_failures_total",
                "Downstream TLS handshakes that failed or timed out",
            ),
            proxy_protocol_refused: r.counter_vec(
                "gatehouse_proxy_protocol_refused_total",
                "Connections from a PROXY protocol peer dropped before TLS, by reason \
                 (missing, malformed, too_long, read, timeout)",
                &["reason"],
            ),
            policy_reloads: r.counter_vec(
                "gatehouse_policy_reloads_total",
                "Policy reload attempts, by outcome (accepted or rejected)",
                &["outcome"],
            ),
            cert_expiry: r.float_gauge_vec(
                "gatehouse_tls_cert_expiry_seconds",
                "Seconds until the leaf certificate in each file expires (negative once expired)",
                &["file"],
            ),
            shared_state_up: r.gauge(
                "gatehouse_shared_state_up",
                "1 while Redis ([shared_state]) answers, 0 while the gateway decides without it",
            ),
            shared_state_unavailable: r.counter(
                "gatehouse_shared_state_unavailable_total",
                "Requests whose cluster rate limit could not be counted in Redis \
                 (then when_unavailable applied)",
            ),
            connections: r.gauge(
                "gatehouse_downstream_connections",
                "Client connections open now",
            ),
            connections_refused: r.counter(
                "gatehouse_downstream_connections_refused_total",
                "Client connections closed at once because max_connections was reached",
            ),
            requests_in_flight: r.gauge(
                "gatehouse_requests_in_flight",
                "Requests the gateway is handling now",
            ),
            rate_limited: r.counter_vec(
                "gatehouse_rate_limited_total",
                "Requests refused with 429, by rate-limit tier and route",
                &["tier", "route"],
            ),
            rate_limit_keys: r.gauge_vec(
                "gatehouse_rate_limit_tracked_keys",
                "Keys (addresses, identities) each rate-limit tier tracks now",
                &["tier"],
            ),
            audit_records: r.counter("gatehouse_audit_records_total", "Audit records written"),
            audit_write_failures: r.counter(
                "gatehouse_audit_write_failures_total",
                "Failed writes, fsyncs or rotations of the audit log",
            ),
            audit_records_dropped: r.counter(
                "gatehouse_audit_records_dropped_total",
                "Audit records lost (on_audit_failure = continue, or the writer fell behind)",
            ),
            audit_healthy: r.gauge(
                "gatehouse_audit_log_healthy",
                "1 while the audit log is written without errors, 0 while it fails",
            ),
            sessions_revoked: r.gauge(
                "gatehouse_sessions_revoked",
                "Logged-out sessions whose cookies are refused until they would have expired",
            ),
            audit_files_deleted: r.counter(
                "gatehouse_audit_files_deleted_total",
                "Rotated audit files deleted by retention (max_age, max_total_size)",
            ),
            registry: r.0,
        };
        metrics.start_labelled_series_at_zero(denial_reasons);
        Arc::new(metrics)
    }

    /// Makes the reload outcomes, login failure methods and refusal
    /// reasons visible before the first event, so rates over them are 0,
    /// not absent.
    fn start_labelled_series_at_zero<'a>(&self, denial_reasons: impl IntoIterator<Item = &'a str>) {
        for outcome in ["accepted", "rejected"] {
            self.policy_reloads.with_label_values(&[outcome]);
        }
        for method in gatehouse_policy::IdentityKind::ALL {
            self.login_failures.with_label_values(&[method.as_str()]);
        }
        self.login_failures.with_label_values(&["unknown"]);
        for reason in denial_reasons {
            self.denials.with_label_values(&[reason]);
        }
    }

    /// Counts one answered request and its duration. A route's series
    /// are looked up once and kept with the route: `with_label_values`
    /// hashes the labels and takes a lock on every call.
    pub fn record_request(
        &self,
        route: Option<&crate::snapshot::PreparedRoute>,
        status: u16,
        elapsed: std::time::Duration,
    ) {
        let name = route.map_or("-", |r| r.route.name.as_str());
        let label = status_label(status);
        let seconds = elapsed.as_secs_f64();
        let Some(route) = route else {
            self.requests.with_label_values(&[name, label]).inc();
            self.request_duration
                .with_label_values(&[name])
                .observe(seconds);
            return;
        };
        let series = route.metrics.get_or_init(|| RouteSeries {
            ok: self.requests.with_label_values(&[name, "200"]),
            duration: self.request_duration.with_label_values(&[name]),
        });
        if status == 200 {
            series.ok.inc();
        } else {
            self.requests.with_label_values(&[name, label]).inc();
        }
        series.duration.observe(seconds);
    }

    /// Copies the rate-limit table sizes and the audit writer's counters
    /// into the registry; called on every scrape.
    pub fn refresh(
        &self,
        snapshot: &crate::snapshot::Snapshot,
        audit: &crate::admin::audit::Audit,
    ) {
        let rate_limits = &snapshot.rate_limits;
        self.sessions_revoked
            .set(i64::try_from(snapshot.authenticator.revoked_sessions()).unwrap_or(i64::MAX));
        for (tier, keys) in rate_limits.tracked_keys() {
            self.rate_limit_keys
                .with_label_values(&[tier.as_str()])
                .set(i64::try_from(keys).unwrap_or(i64::MAX));
        }
        let stats = audit.stats().unwrap_or_default();
        // Counters only move forward: add what the writer did since.
        for (counter, now) in [
            (&self.audit_records, stats.written),
            (&self.audit_write_failures, stats.write_failures),
            (&self.audit_records_dropped, stats.dropped),
            (&self.audit_files_deleted, stats.files_deleted),
        ] {
            counter.inc_by(now.saturating_sub(counter.get()));
        }
        self.audit_healthy.set(i64::from(audit.is_healthy()));
    }

    /// Records the certificates now in force; called at start and on reload.
    pub fn set_cert_expiries(&self, not_after: &[(std::path::PathBuf, i64)]) {
        self.cert_expiry.reset();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        for (file, at) in not_after {
            self.cert_expiry
                .with_label_values(&[&file.display().to_string()])
                .set((at - now) as f64);
        }
    }

    /// Adds a collector defined elsewhere (one that reads a value kept
    /// outside this registry when scraped).
    pub fn register(&self, collector: Box<dyn Collector>) {
        self.registry
            .register(collector)
            .expect("metric names are unique");
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Requests in flight, so SIGTERM can exit as soon as they are done instead
/// of always waiting the whole grace period. Backed by the
/// `gatehouse_requests_in_flight` gauge, so operators see the same number.
pub struct InFlight(prometheus::IntGauge);

impl InFlight {
    pub fn new(gauge: prometheus::IntGauge) -> Self {
        InFlight(gauge)
    }

    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.0.inc();
        InFlightGuard(self.clone())
    }

    pub fn count(&self) -> i64 {
        self.0.get()
    }
}

pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0 .0.dec();
    }
}

/// Creates each metric and registers it in one step, so no metric can be
/// defined and then forgotten. The definitions are static: a failure is a
/// programming error, caught by every test that builds `Metrics`.
struct Registrar(Registry);

impl Registrar {
    fn register<C: Collector + Clone + 'static>(&self, collector: C) -> C {
        self.0
            .register(Box::new(collector.clone()))
            .expect("metric names are unique");
        collector
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(name, help).expect("static metric definition"))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(name, help).expect("static metric definition"))
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(
            IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition"),
        )
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(
            IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition"),
        )
    }

    fn float_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.register(
            GaugeVec::new(Opts::new(name, help), labels).expect("static metric definition"),
        )
    }

    fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(HistogramVec::new(opts, labels).expect("static metric definition"))
    }
}

/// Status labels come from a fixed set so a hostile upstream cannot grow
/// the metric's cardinality.
pub fn status_label(status: u16) -> &'static str {
    const KNOWN: [(u16, &str); 20] = [
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (206, "206"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (308, "308"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (413, "413"),
        (429, "429"),
        (431, "431"),
        (500, "500"),
        (502, "502"),
        (504, "504"),
    ];
    KNOWN
        .iter()
        .find(|(code, _)| *code == status)
        .map(|(_, label)| *label)
        .unwrap_or(match status {
            0 => "none",
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusual_statuses_share_a_class_label() {
        assert_eq!(status_label(404), "404");
        assert_eq!(status_label(418), "4xx");
        assert_eq!(status_label(0), "none");
    }
}
