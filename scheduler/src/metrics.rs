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

/// A metric's name and help text.
#[derive(Clone, Copy)]
struct Def {
    name: &'static str,
    help: &'static str,
}

impl Def {
    fn opts(self) -> Opts {
        Opts::new(self.name, self.help)
    }
}

const RUNS: Def = Def {
    name: "gatehouse_scheduler_runs_total",
    help:
        "Finished runs, by job and outcome (succeeded, failed, timed_out, cancelled, skipped, lost)",
};
const RUN_DURATION: Def = Def {
    name: "gatehouse_scheduler_run_duration_seconds",
    help: "Time from container start to exit, by job",
};
const RUN_DURATION_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
];
const LAST_SUCCESS: Def = Def {
    name: "gatehouse_scheduler_last_success_timestamp_seconds",
    help: "Unix time of the job's last successful run",
};
const RUNNING: Def = Def {
    name: "gatehouse_scheduler_runs_running",
    help: "Runs whose container is running",
};
const QUEUED: Def = Def {
    name: "gatehouse_scheduler_runs_queued",
    help: "Runs waiting for a free slot (max_concurrent_runs)",
};
const SCHEDULE_JITTER: Def = Def {
    name: "gatehouse_scheduler_schedule_jitter_seconds",
    help: "Delay from a run's planned time to its container start request, by job",
};
const SCHEDULE_JITTER_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];
const DOCKER_ERRORS: Def = Def {
    name: "gatehouse_scheduler_docker_errors_total",
    help: "Docker API calls that failed, by operation",
};
const DOCKER_UP: Def = Def {
    name: "gatehouse_scheduler_docker_up",
    help: "1 while the Docker daemon is connected and answering",
};
const MISSED_RUNS: Def = Def {
    name: "gatehouse_scheduler_missed_runs_total",
    help: "Scheduled times that passed while the scheduler was down or not connected to Docker and were not run, by job",
};
const API_DENIALS: Def = Def {
    name: "gatehouse_scheduler_api_denials_total",
    help:
        "API requests refused, by reason (unauthenticated, replayed, replay_cache_full, forbidden)",
};
const POLICY_RELOADS: Def = Def {
    name: "gatehouse_scheduler_policy_reloads_total",
    help: "Policy reloads, by result",
};
const AUDIT_RECORDS: Def = Def {
    name: "gatehouse_scheduler_audit_records_total",
    help: "Audit records written",
};
const AUDIT_HEALTHY: Def = Def {
    name: "gatehouse_scheduler_audit_log_healthy",
    help: "1 while the audit log can be written",
};
const AUDIT_FILES_DELETED: Def = Def {
    name: "gatehouse_scheduler_audit_files_deleted_total",
    help: "Rotated audit files deleted by retention (max_age, max_total_size)",
};
const ASSERTIONS_REMEMBERED: Def = Def {
    name: "gatehouse_scheduler_assertions_remembered",
    help: "Live gateway assertions held for the replay check (new ones are refused at 100000)",
};
const NOTIFICATIONS: Def = Def {
    name: "gatehouse_scheduler_notifications_total",
    help: "Notification deliveries, by channel and outcome (delivered, failed, refused by the SSRF guard, dropped on a full queue)",
};

/// Registers `metric` in `registry` and hands it back.
fn registered<T>(registry: &Registry, metric: Result<T, prometheus::Error>) -> T
where
    T: prometheus::core::Collector + Clone + 'static,
{
    let metric = must(metric);
    must(registry.register(Box::new(metric.clone())));
    metric
}

fn counters(registry: &Registry, def: Def, labels: &[&str]) -> IntCounterVec {
    registered(registry, IntCounterVec::new(def.opts(), labels))
}

fn counter(registry: &Registry, def: Def) -> IntCounter {
    registered(registry, IntCounter::new(def.name, def.help))
}

fn gauge(registry: &Registry, def: Def) -> IntGauge {
    registered(registry, IntGauge::new(def.name, def.help))
}

fn histograms(registry: &Registry, def: Def, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(def.name, def.help).buckets(buckets.to_vec());
    registered(registry, HistogramVec::new(opts, labels))
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        Arc::new(Metrics {
            runs: counters(&registry, RUNS, &["job_name", "outcome"]),
            run_duration: histograms(&registry, RUN_DURATION, RUN_DURATION_BUCKETS, &["job_name"]),
            last_success: registered(&registry, GaugeVec::new(LAST_SUCCESS.opts(), &["job_name"])),
            running: gauge(&registry, RUNNING),
            queued: gauge(&registry, QUEUED),
            schedule_jitter: histograms(
                &registry,
                SCHEDULE_JITTER,
                SCHEDULE_JITTER_BUCKETS,
                &["job_name"],
            ),
            docker_errors: counters(&registry, DOCKER_ERRORS, &["operation"]),
            docker_up: gauge(&registry, DOCKER_UP),
            missed_runs: counters(&registry, MISSED_RUNS, &["job_name"]),
            api_denials: counters(&registry, API_DENIALS, &["reason"]),
            policy_reloads: counters(&registry, POLICY_RELOADS, &["result"]),
            audit_records: counter(&registry, AUDIT_RECORDS),
            audit_healthy: gauge(&registry, AUDIT_HEALTHY),
            audit_files_deleted: counter(&registry, AUDIT_FILES_DELETED),
            assertions_remembered: gauge(&registry, ASSERTIONS_REMEMBERED),
            notifications: counters(&registry, NOTIFICATIONS, &["channel", "outcome"]),
            registry,
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
