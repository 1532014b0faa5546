//! Prometheus metrics in a registry of our own, served on the admin port.

use std::sync::Arc;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// By job and outcome (the terminal status).
    pub runs: IntCounterVec,
    pub run_duration: HistogramVec,
    pub last_success: GaugeVec,
    pub running: IntGauge,
    pub queued: IntGauge,
    /// From the planned time to the container start request.
    pub schedule_jitter: HistogramVec,
    pub docker_errors: IntCounterVec,
    /// 1 while Docker is connected and answering, 0 while the scheduler
    /// is connecting (it may start before Docker) or the daemon is away.
    pub docker_up: IntGauge,
    /// Scheduled times that passed without a run of their own: the
    /// scheduler was down (or not yet connected to Docker) and the job does
    /// not catch up, or the time was older than the one caught up.
    pub missed_runs: IntCounterVec,
    pub api_denials: IntCounterVec,
    pub policy_reloads: IntCounterVec,
    pub audit_records: IntCounter,
    pub audit_healthy: IntGauge,
    /// Rotated audit files deleted by retention (`max_age`, `max_total_size`).
    pub audit_files_deleted: IntCounter,
    /// Live assertions held for the replay check; near the capacity,
    /// new requests get 503.
    pub assertions_remembered: IntGauge,
    /// Notification deliveries, by channel and outcome.
    pub notifications: IntCounterVec,
}

fn must<T>(metric: Result<T, prometheus::Error>) -> T {
    // The definitions are static; a failure here is a programming error
    // caught by every test that builds Metrics.
    metric.unwrap_or_else(|e| panic!("invalid static metric definition: {e}"))
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let runs = must(IntCounterVec::new(
            Opts::new(
                "gatehouse_scheduler_runs_total",
                "Finished runs, by job and outcome (succeeded, failed, timed_out, cancelled, skipped, lost)",
            ),
            &["job_name", "outcome"],
        ));
        let run_duration = must(HistogramVec::new(
            HistogramOpts::new(
                "gatehouse_scheduler_run_duration_seconds",
                "Time from container start to exit, by job",
            )
            .buckets(vec![
                0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
            ]),
            &["job_name"],
        ));
        let last_success = must(GaugeVec::new(
            Opts::new(
                "gatehouse_scheduler_last_success_timestamp_seconds",
                "Unix time of the job's last successful run",
            ),
            &["job_name"],
        ));
        let running = must(IntGauge::new(
            "gatehouse_scheduler_runs_running",
            "Runs whose container is running",
        ));
        let queued = must(IntGauge::new(
            "gatehouse_scheduler_runs_queued",
            "Runs waiting for a free slot (max_concurrent_runs)",
        ));
        let schedule_jitter = must(HistogramVec::new(
            HistogramOpts::new(
                "gatehouse_scheduler_schedule_jitter_seconds",
                "Delay from a run's planned time to its container start request, by job",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
            ]),
            &["job_name"],
        ));
        let docker_errors = must(IntCounterVec::new(
            Opts::new(
                "gatehouse_scheduler_docker_errors_total",
                "Docker API calls that failed, by operation",
            ),
            &["operation"],
        ));
        let docker_up = must(IntGauge::new(
            "gatehouse_scheduler_docker_up",
            "1 while the Docker daemon is connected and answering",
        ));
        let missed_runs = must(IntCounterVec::new(
            Opts::new(
                "gatehouse_scheduler_missed_runs_total",
                "Scheduled times that passed while the scheduler was down or not connected to Docker and were not run, by job",
            ),
            &["job_name"],
        ));
        let api_denials = must(IntCounterVec::new(
            Opts::new(
                "gatehouse_scheduler_api_denials_total",
                "API requests refused, by reason (unauthenticated, replayed, replay_cache_full, forbidden)",
            ),
            &["reason"],
        ));
        let policy_reloads = must(IntCounterVec::new(
            Opts::new(
                "gatehouse_scheduler_policy_reloads_total",
                "Policy reloads, by result",
            ),
            &["result"],
        ));
        let audit_records = must(IntCounter::new(
            "gatehouse_scheduler_audit_records_total",
            "Audit records written",
        ));
        let audit_healthy = must(IntGauge::new(
            "gatehouse_scheduler_audit_log_healthy",
            "1 while the audit log can be written",
        ));
        let audit_files_deleted = must(IntCounter::new(
            "gatehouse_scheduler_audit_files_deleted_total",
            "Rotated audit files deleted by retention (max_age, max_total_size)",
        ));
        let assertions_remembered = must(IntGauge::new(
            "gatehouse_scheduler_assertions_remembered",
            "Live gateway assertions held for the replay check (new ones are refused at 100000)",
        ));
        let notifications = must(IntCounterVec::new(
            Opts::new(
                "gatehouse_scheduler_notifications_total",
                "Notification deliveries, by channel and outcome (delivered, failed, refused by the SSRF guard, dropped on a full queue)",
            ),
            &["channel", "outcome"],
        ));
        for c in [
            Box::new(runs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(run_duration.clone()),
            Box::new(last_success.clone()),
            Box::new(running.clone()),
            Box::new(queued.clone()),
            Box::new(schedule_jitter.clone()),
            Box::new(docker_errors.clone()),
            Box::new(docker_up.clone()),
            Box::new(missed_runs.clone()),
            Box::new(api_denials.clone()),
            Box::new(policy_reloads.clone()),
            Box::new(audit_records.clone()),
            Box::new(audit_healthy.clone()),
            Box::new(audit_files_deleted.clone()),
            Box::new(assertions_remembered.clone()),
            Box::new(notifications.clone()),
        ] {
            must(registry.register(c));
        }
        Arc::new(Metrics {
            registry,
            runs,
            run_duration,
            last_success,
            running,
            queued,
            schedule_jitter,
            docker_errors,
            docker_up,
            missed_runs,
            api_denials,
            policy_reloads,
            audit_records,
            audit_healthy,
            audit_files_deleted,
            assertions_remembered,
            notifications,
        })
    }

    /// Makes every job's series exist from the start, so that dashboards
    /// and alerts see zeros rather than gaps.
    pub fn declare_job(&self, job: &str) {
        for outcome in [
            "succeeded",
            "failed",
            "timed_out",
            "cancelled",
            "skipped",
            "lost",
        ] {
            self.runs.with_label_values(&[job, outcome]);
        }
        self.run_duration.with_label_values(&[job]);
        self.missed_runs.with_label_values(&[job]);
        self.schedule_jitter.with_label_values(&[job]);
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
