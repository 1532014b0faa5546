//! Each login flow completes once: its callback is remembered (by the
//! flow's `state`) until the flow cookie would have expired, here and,
//! with `[shared_state]`, in Redis for every replica. Checked before the
//! code goes to the provider, so a copied flow cookie and code replayed
//! anywhere never reach it.

use std::time::Instant;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use gatehouse_policy::WhenUnavailable;

use super::{LoginRefusal, OidcClients, FLOW_LIFETIME};
use crate::shared_state::once::FirstUse;

/// Past this many completed flows remembered, expired ones are dropped.
const SWEEP_AT: usize = 10_000;
/// And past this many live ones (a flood of minted flows, each costing a
/// request under the rate limits), new ones are not remembered here: the
/// provider's single-use codes and Redis (when shared) still stand.
const MAX_REMEMBERED: usize = 100_000;

/// This replica's completed flows: `state` → when it may be forgotten.
#[derive(Default)]
pub(super) struct CompletedFlows(DashMap<String, Instant>);

impl CompletedFlows {
    /// Whether `state` completes here for the first time (and remembers it).
    fn first_here(&self, state: &str) -> bool {
        let now = Instant::now();
        if self.0.len() >= SWEEP_AT {
            self.0.retain(|_, until| *until > now);
        }
        // Measured before the entry is taken: `len` locks every shard.
        let room = self.0.len() < MAX_REMEMBERED;
        match self.0.entry(state.to_owned()) {
            Entry::Occupied(entry) if *entry.get() > now => false,
            Entry::Occupied(mut entry) => {
                entry.insert(now + FLOW_LIFETIME);
                true
            }
            Entry::Vacant(entry) => {
                if room {
                    entry.insert(now + FLOW_LIFETIME);
                }
                true
            }
        }
    }
}

impl OidcClients {
    /// Refuses a flow whose callback came before, here or on any replica.
    pub(super) async fn first_completion(&self, state: &str) -> Result<(), LoginRefusal> {
        if !self.completed.first_here(state) {
            return Err(LoginRefusal::FlowReused);
        }
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        match Box::pin(shared.first_use("flow", state, FLOW_LIFETIME)).await {
            FirstUse::Yes => Ok(()),
            FirstUse::No => Err(LoginRefusal::FlowReused),
            FirstUse::Unavailable => match shared.when_unavailable {
                WhenUnavailable::LocalLimits => Ok(()),
                WhenUnavailable::Refuse => Err(LoginRefusal::SharedStateUnavailable),
            },
        }
    }
}
