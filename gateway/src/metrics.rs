//! Prometheus metrics, registered once in a registry of our own (not the
//! global default) so tests and the `/metrics` listener see exactly ours.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
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

impl Metrics {
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gatehouse_requests_total",
                "Requests answered, by route and status",
            ),
            &["route", "status"],
        )
        .expect("static metric definition");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "gatehouse_request_duration_seconds",
                "Time from request head to the end of the response, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route"],
        )
        .expect("static metric definition");
        let denials = IntCounterVec::new(
            Opts::new(
                "gatehouse_denials_total",
                "Requests the gateway refused, by stable reason name",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let login_failures = IntCounterVec::new(
            Opts::new(
                "gatehouse_login_failures_total",
                "Failed logins (each one audited as login.failure), by method; \
                 `unknown` when the credential's kind could not be told",
            ),
            &["method"],
        )
        .expect("static metric definition");
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "gatehouse_upstream_errors_total",
                "Failures talking to an upstream, by route and kind",
            ),
            &["route", "kind"],
        )
        .expect("static metric definition");
        let tls_handshake_failures = IntCounter::new(
            "gatehouse_tls_handshake_failures_total",
            "Downstream TLS handshakes that failed or timed out",
        )
        .expect("static metric definition");
        let policy_reloads = IntCounterVec::new(
            Opts::new(
                "gatehouse_policy_reloads_total",
                "Policy reload attempts, by outcome (accepted or rejected)",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let cert_expiry = GaugeVec::new(
            Opts::new(
                "gatehouse_tls_cert_expiry_seconds",
                "Seconds until the leaf certificate in each file expires (negative once expired)",
            ),
            &["file"],
        )
        .expect("static metric definition");
        let connections = IntGauge::new(
            "gatehouse_downstream_connections",
            "Client connections open now",
        )
        .expect("static metric definition");
        let connections_refused = IntCounter::new(
            "gatehouse_downstream_connections_refused_total",
            "Client connections closed at once because max_connections was reached",
        )
        .expect("static metric definition");
        let requests_in_flight = IntGauge::new(
            "gatehouse_requests_in_flight",
            "Requests the gateway is handling now",
        )
        .expect("static metric definition");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "gatehouse_rate_limited_total",
                "Requests refused with 429, by rate-limit tier and route",
            ),
            &["tier", "route"],
        )
        .expect("static metric definition");
        let rate_limit_keys = IntGaugeVec::new(
            Opts::new(
                "gatehouse_rate_limit_tracked_keys",
                "Keys (addresses, identities) each rate-limit tier tracks now",
            ),
            &["tier"],
        )
        .expect("static metric definition");
        let audit_records =
            IntCounter::new("gatehouse_audit_records_total", "Audit records written")
                .expect("static metric definition");
        let audit_write_failures = IntCounter::new(
            "gatehouse_audit_write_failures_total",
            "Failed writes, fsyncs or rotations of the audit log",
        )
        .expect("static metric definition");
        let audit_records_dropped = IntCounter::new(
            "gatehouse_audit_records_dropped_total",
            "Audit records lost (on_audit_failure = continue, or the writer fell behind)",
        )
        .expect("static metric definition");
        let audit_healthy = IntGauge::new(
            "gatehouse_audit_log_healthy",
            "1 while the audit log is written without errors, 0 while it fails",
        )
        .expect("static metric definition");
        let sessions_revoked = IntGauge::new(
            "gatehouse_sessions_revoked",
            "Logged-out sessions whose cookies are refused until they would have expired",
        )
        .expect("static metric definition");
        let audit_files_deleted = IntCounter::new(
            "gatehouse_audit_files_deleted_total",
            "Rotated audit files deleted by retention (max_age, max_total_size)",
        )
        .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sessions_revoked.clone()),
            Box::new(rate_limited.clone()),
            Box::new(rate_limit_keys.clone()),
            Box::new(audit_records.clone()),
            Box::new(audit_write_failures.clone()),
            Box::new(audit_records_dropped.clone()),
            Box::new(audit_healthy.clone()),
            Box::new(request_duration.clone()),
            Box::new(denials.clone()),
            Box::new(login_failures.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(tls_handshake_failures.clone()),
            Box::new(policy_reloads.clone()),
            Box::new(cert_expiry.clone()),
            Box::new(connections.clone()),
            Box::new(connections_refused.clone()),
            Box::new(requests_in_flight.clone()),
            Box::new(audit_files_deleted.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // Make the reload outcomes and the login failure methods visible
        // before the first event, so rates over them are 0, not absent.
        for outcome in ["accepted", "rejected"] {
            policy_reloads.with_label_values(&[outcome]);
        }
        for method in gatehouse_policy::IdentityKind::ALL {
            login_failures.with_label_values(&[method.as_str()]);
        }
        login_failures.with_label_values(&["unknown"]);
        // Every refusal reason, so alerts over any of them start from 0.
        for reason in crate::refusal::Reason::all() {
            denials.with_label_values(&[reason.as_str()]);
        }
        Arc::new(Metrics {
            registry,
            requests,
            request_duration,
            denials,
            login_failures,
            upstream_errors,
            tls_handshake_failures,
            policy_reloads,
            cert_expiry,
            connections,
            connections_refused,
            requests_in_flight,
            rate_limited,
            rate_limit_keys,
            audit_records,
            audit_write_failures,
            audit_records_dropped,
            audit_healthy,
            sessions_revoked,
            audit_files_deleted,
        })
    }

    /// Copies the rate-limit table sizes and the audit writer's counters
    /// into the registry; called on every scrape.
    pub fn refresh(&self, snapshot: &crate::snapshot::Snapshot, audit: &crate::audit::Audit) {
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
