//! Stage 14, second half: the cluster's count of a request this replica's
//! limiter let through (`access/rate_limit/shared.rs`), when the policy has
//! `[shared_state]`. Redis going down or coming back is logged, audited
//! and shown in `gatehouse_shared_state_up`.

use gatehouse_audit::{AuditEvent, EventKind, Outcome};
use gatehouse_policy::{Route, WhenUnavailable};

use super::refusal::{Reason, Refusal};
use super::Gateway;
use crate::access::rate_limit::shared::{SharedVerdict, Transition};
use crate::access::rate_limit::{Allowance, Tier};
use crate::snapshot::Snapshot;

impl Gateway {
    pub(super) async fn cluster_limit(
        &self,
        snapshot: &Snapshot,
        route: &Route,
        allowance: Allowance,
    ) -> Result<Allowance, Box<Refusal>> {
        let Some(shared) = &self.shared_limits else {
            return Ok(allowance);
        };
        let scope = if allowance.tier == Tier::Route {
            route.name.as_str()
        } else {
            ""
        };
        // Boxed: the Redis call's future is kilobytes, and held inline it
        // made every request's `decide` future (boxed and moved by
        // Pingora) that much larger, with or without `[shared_state]`:
        // 8k more instructions of memcpy per request.
        let (verdict, transition) =
            Box::pin(shared.check(allowance.tier, scope, &allowance.key, allowance.rate)).await;
        if let Some(transition) = transition {
            self.shared_state_changed(transition, shared.when_unavailable);
        }
        match verdict {
            SharedVerdict::Allowed { remaining, reset } => Ok(Allowance {
                remaining: remaining.min(allowance.remaining),
                reset: reset.max(allowance.reset),
                ..allowance
            }),
            SharedVerdict::Limited { retry_after } => Err(Refusal::rate_limited(
                snapshot
                    .rate_limits
                    .refused_in_cluster(&allowance, retry_after),
            )),
            SharedVerdict::Unavailable => {
                self.metrics.shared_state_unavailable.inc();
                match shared.when_unavailable {
                    WhenUnavailable::LocalLimits => Ok(allowance),
                    WhenUnavailable::Refuse => Err(Reason::SharedStateUnavailable.into()),
                }
            }
        }
    }

    fn shared_state_changed(&self, transition: Transition, meanwhile: WhenUnavailable) {
        let meanwhile = match meanwhile {
            WhenUnavailable::LocalLimits => "each replica applies its own limits",
            WhenUnavailable::Refuse => "requests under a rate limit are refused (503)",
        };
        let event = match transition {
            Transition::Down { error } => {
                tracing::error!(%error, meanwhile, "Redis ([shared_state]) does not answer");
                self.metrics.shared_state_up.set(0);
                AuditEvent::new(EventKind::SharedStateDown, Outcome::Failure)
                    .detail("error", error)
                    .detail("meanwhile", meanwhile)
            }
            Transition::Up => {
                tracing::info!("Redis ([shared_state]) answers again: the cluster's limits apply");
                self.metrics.shared_state_up.set(1);
                AuditEvent::new(EventKind::SharedStateUp, Outcome::Info)
            }
        };
        self.audit.record(event);
    }
}
