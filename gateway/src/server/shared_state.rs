//! Connects the replica to `[shared_state]`: Redis's ups and downs become
//! a log line, the `gatehouse_shared_state_up` gauge and an audit record;
//! the cluster's lists (lockouts, logged-out sessions, users logged out
//! everywhere) are applied to this replica's own tables as they arrive.

use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use gatehouse_audit::{AuditEvent, EventKind, Outcome};
use gatehouse_policy::{Policy, WhenUnavailable};

use crate::admin::audit::Audit;
use crate::admin::metrics::Metrics;
use crate::identity::IdentityState;
use crate::shared_state::{instant_at, Listed, Origin, SharedState, Transition};
use crate::snapshot::Snapshot;

/// The shared state, following the cluster's lists, when the policy has
/// `[shared_state]`.
pub fn connect(
    policy: &Policy,
    metrics: &Arc<Metrics>,
    audit: &Audit,
    snapshot: &Arc<ArcSwap<Snapshot>>,
    identity: &IdentityState,
) -> Result<Option<Arc<SharedState>>> {
    let Some(settings) = &policy.shared_state else {
        return Ok(None);
    };
    let on_change = reporter(metrics.clone(), audit.clone(), settings.when_unavailable);
    let shared = Arc::new(
        SharedState::connect(settings, on_change)
            .context("connecting to Redis ([shared_state])")?,
    );
    metrics.shared_state_up.set(1);
    let apply = applier(snapshot.clone(), identity.clone(), audit.clone());
    shared
        .follow(settings, apply)
        .context("subscribing to the shared lists")?;
    Ok(Some(shared))
}

/// Redis going down or coming back: logged, counted and audited once.
fn reporter(
    metrics: Arc<Metrics>,
    audit: Audit,
    meanwhile: WhenUnavailable,
) -> impl Fn(Transition) + Send + Sync + 'static {
    let meanwhile = match meanwhile {
        WhenUnavailable::LocalLimits => "each replica applies its own limits",
        WhenUnavailable::Refuse => "requests under a rate limit are refused (503)",
    };
    move |transition| {
        let event = match transition {
            Transition::Down { error } => {
                tracing::error!(%error, meanwhile, "Redis ([shared_state]) does not answer");
                metrics.shared_state_up.set(0);
                AuditEvent::new(EventKind::SharedStateDown, Outcome::Failure)
                    .detail("error", error)
                    .detail("meanwhile", meanwhile)
            }
            Transition::Up => {
                tracing::info!("Redis ([shared_state]) answers again: the cluster's limits apply");
                metrics.shared_state_up.set(1);
                AuditEvent::new(EventKind::SharedStateUp, Outcome::Info)
            }
        };
        audit.record(event);
    }
}

/// One entry of the cluster's lists, into this replica's tables. A user
/// logged out everywhere is audited here as the news arrives (not when
/// loaded again after a reconnect): each replica's log shows it took
/// effect there.
fn applier(
    snapshot: Arc<ArcSwap<Snapshot>>,
    identity: IdentityState,
    audit: Audit,
) -> impl Fn(Listed, Origin) + Send + Sync + 'static {
    move |entry, origin| match entry {
        Listed::Lockout { network, until_ms } => {
            snapshot
                .load()
                .rate_limits
                .apply_lockout(network, instant_at(until_ms));
        }
        Listed::Session { sid, until_ms } => {
            let now = crate::identity::session::unix_now();
            identity
                .revocations
                .revoke(&sid, until_ms.div_ceil(1000), now);
        }
        Listed::UserSessions {
            subject,
            before,
            until_ms,
            by,
        } => {
            identity
                .revocations
                .revoke_user(&subject, before, until_ms.div_ceil(1000));
            if origin == Origin::Live {
                tracing::info!(user = %subject, "every session of the user ended");
                audit.record(
                    AuditEvent::new(EventKind::SessionsRevoked, Outcome::Success)
                        .actor(by.as_deref().unwrap_or("operator"), "cli")
                        .detail("user", subject)
                        .detail("issued_until", before),
                );
            }
        }
    }
}
