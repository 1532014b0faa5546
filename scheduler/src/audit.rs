//! The scheduler's side of the audit log. The format, hash chain and writer
//! are the shared `gatehouse_audit`; the scheduler writes its own
//! chain next to the gateway's (`audit.jsonl` → `audit.scheduler.jsonl`),
//! because two processes appending to one chain would break it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_audit::{AuditError, AuditEvent, AuditLog, AuditStats, EventKind, Outcome};
use gatehouse_policy::{AuditSettings, Policy};

use crate::auth::Caller;
use crate::store::{ReasonCode, Run, RunStatus, Trigger};

#[derive(Clone, Default)]
pub struct Audit {
    log: Option<Arc<AuditLog>>,
}

/// `dir/audit.jsonl` → `dir/audit.scheduler.jsonl`.
pub fn scheduler_audit_path(gateway_path: &Path) -> PathBuf {
    let stem = gateway_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audit".to_owned());
    let name = match gateway_path.extension() {
        Some(ext) => format!("{stem}.scheduler.{}", ext.to_string_lossy()),
        None => format!("{stem}.scheduler"),
    };
    gateway_path.with_file_name(name)
}

impl Audit {
    pub fn open(policy: &Policy) -> Result<Audit, AuditError> {
        let Some(settings) = &policy.audit else {
            tracing::warn!(
                "the policy has no [audit] section: job triggers and runs are not audited"
            );
            return Ok(Audit::default());
        };
        let settings = AuditSettings {
            path: scheduler_audit_path(&settings.path),
            ..settings.clone()
        };
        Ok(Audit {
            log: Some(Arc::new(AuditLog::open(&settings)?)),
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.log.as_ref().map(|l| l.settings().path.as_path())
    }

    pub fn record(&self, event: AuditEvent) {
        if let Some(log) = &self.log {
            log.record(event);
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.log.as_ref().is_none_or(|l| l.is_healthy())
    }

    /// The writer's counters (zeros without an `[audit]` section).
    pub fn stats(&self) -> AuditStats {
        self.log.as_ref().map(|l| l.stats()).unwrap_or_default()
    }

    pub fn close(&self) {
        if let Some(log) = &self.log {
            log.flush(Duration::from_secs(5));
            log.close();
        }
    }
}

fn with_caller(event: AuditEvent, caller: Option<&Caller>) -> AuditEvent {
    match caller {
        Some(c) => event.actor(c.subject.clone(), c.auth.clone()),
        None => event.actor("scheduler", "system"),
    }
}

pub fn trigger(job: &str, run: i64, caller: &Caller, outcome: Outcome) -> AuditEvent {
    with_caller(
        AuditEvent::new(EventKind::JobTrigger, outcome),
        Some(caller),
    )
    .detail("job", job)
    .detail("run", run)
}

pub fn trigger_denied(job: &str, caller: &Caller) -> AuditEvent {
    with_caller(
        AuditEvent::new(EventKind::JobTrigger, Outcome::Denied),
        Some(caller),
    )
    .detail("job", job)
}

/// A trigger refused because the scheduler cannot run anything now
/// (Docker is not connected); no run was recorded.
pub fn trigger_refused(job: &str, caller: &Caller, reason: &str) -> AuditEvent {
    with_caller(
        AuditEvent::new(EventKind::JobTrigger, Outcome::Failure),
        Some(caller),
    )
    .detail("job", job)
    .detail("reason", reason)
}

pub fn cancel(run: &Run, caller: &Caller, outcome: Outcome) -> AuditEvent {
    with_caller(AuditEvent::new(EventKind::JobCancel, outcome), Some(caller))
        .detail("job", run.job.clone())
        .detail("run", run.id)
}

fn run_event(
    kind: EventKind,
    outcome: Outcome,
    job: &str,
    run: i64,
    trigger: &Trigger,
) -> AuditEvent {
    let by = trigger.by().map(|b| Caller {
        subject: b.to_owned(),
        email: None,
        roles: Default::default(),
        auth: "gateway".to_owned(),
    });
    with_caller(AuditEvent::new(kind, outcome), by.as_ref())
        .detail("job", job)
        .detail("run", run)
        .detail("trigger", serde_json::to_value(trigger).unwrap_or_default())
}

pub fn run_started(
    job: &str,
    run: i64,
    trigger: &Trigger,
    container: &str,
    image: &str,
) -> AuditEvent {
    run_event(EventKind::RunStart, Outcome::Info, job, run, trigger)
        .detail("container", container)
        .detail("image", image)
}

/// A run refused before its container was created, and why.
pub fn run_refused(job: &str, run: i64, trigger: &Trigger, reason: &str) -> AuditEvent {
    run_event(EventKind::RunRefused, Outcome::Denied, job, run, trigger).detail("reason", reason)
}

/// How a restarted scheduler took over a run the previous process left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adoption {
    /// Its container is still running: supervised from here on.
    Supervise,
    /// Its container ended while no scheduler watched: recorded now.
    Record,
    /// It never started: started now, within its start window.
    Resume,
}

impl Adoption {
    pub fn as_str(self) -> &'static str {
        match self {
            Adoption::Supervise => "supervise",
            Adoption::Record => "record",
            Adoption::Resume => "resume",
        }
    }
}

/// `previous` is the status the previous process left the run in.
pub fn run_adopted(run: &Run, action: Adoption, container: Option<&str>) -> AuditEvent {
    let mut event = run_event(
        EventKind::RunAdopt,
        Outcome::Info,
        &run.job,
        run.id,
        &run.trigger,
    )
    .detail("action", action.as_str())
    .detail("previous_status", run.status.as_str());
    if let Some(container) = container {
        event = event.detail("container", container);
    }
    event
}

pub fn run_finished(
    job: &str,
    run: i64,
    trigger: &Trigger,
    status: RunStatus,
    exit_code: Option<i64>,
    reason: Option<&str>,
    code: Option<ReasonCode>,
) -> AuditEvent {
    let outcome = if status == RunStatus::Succeeded {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let kind = match status {
        RunStatus::Skipped => EventKind::RunSkip,
        RunStatus::Lost => EventKind::RunLost,
        _ => EventKind::RunFinish,
    };
    let mut event = run_event(kind, outcome, job, run, trigger).detail("status", status.as_str());
    if let Some(code) = exit_code {
        event = event.detail("exit_code", code);
    }
    if let Some(reason) = reason {
        event = event.detail("reason", reason);
    }
    if let Some(code) = code {
        event = event.detail("reason_code", code.as_str());
    }
    event
}

pub fn lifecycle(kind: EventKind, details: &[(&str, serde_json::Value)]) -> AuditEvent {
    details.iter().fold(
        with_caller(AuditEvent::new(kind, Outcome::Info), None),
        |e, (k, v)| e.detail(k, v.clone()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduler_writes_its_own_chain_beside_the_gateways() {
        assert_eq!(
            scheduler_audit_path(Path::new("/var/log/gh/audit.jsonl")),
            Path::new("/var/log/gh/audit.scheduler.jsonl")
        );
        assert_eq!(
            scheduler_audit_path(Path::new("audit")),
            Path::new("audit.scheduler")
        );
    }
}
