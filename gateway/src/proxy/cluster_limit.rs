//! Stage 14, second half: the cluster's count of a request this replica's
//! limiter let through (`shared_state/limits.rs`), when the policy has
//! `[shared_state]`. Redis going down or coming back is reported by the
//! shared state itself (`server::shared_state`).

use gatehouse_policy::{Route, WhenUnavailable};

use super::refusal::{Reason, Refusal};
use super::Gateway;
use crate::access::rate_limit::{Allowance, Tier};
use crate::shared_state::SharedVerdict;
use crate::snapshot::Snapshot;

impl Gateway {
    pub(super) async fn cluster_limit(
        &self,
        snapshot: &Snapshot,
        route: &Route,
        allowance: Allowance,
    ) -> Result<Allowance, Box<Refusal>> {
        let Some(shared) = &self.shared_state else {
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
        let verdict =
            Box::pin(shared.check(allowance.tier, scope, &allowance.key, allowance.rate)).await;
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
}
