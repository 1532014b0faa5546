//! The request tiers (client, identity, route) counted in Redis, after
//! this replica's own limiter let the request through. The local limiter
//! stays as a cheap pre-filter: a request over one replica's quota is over
//! the cluster's too, and costs no round trip.
//!
//! The count is GCRA in one Lua script (one round trip per request, on
//! Redis's clock, so replicas' clocks do not matter): each key holds its
//! theoretical arrival time, expiring when it no longer limits anything.

use std::time::Duration;

use gatehouse_policy::Rate;

use super::SharedState;
use crate::access::rate_limit::{RateKey, Tier};

/// GCRA's count of one event, the start of both scripts that count.
/// KEYS[1]: the key. ARGV[1], ARGV[2]: the emission interval (µs) and the
/// burst. Leaves `allowed`, `remaining`, and the µs `now`, `allow_at` and
/// `new_tat` for the script's end.
macro_rules! gcra_count {
    () => {
        r#"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
local allowed = now >= allow_at
local remaining = 0
if allowed then
  redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000))
  remaining = math.floor((now + burst * interval - new_tat) / interval)
end
"#
    };
}
pub(super) use gcra_count;

/// GCRA. Returns {allowed, remaining, µs until reset (allowed) or until
/// the next request may pass (refused)}.
pub(super) const GCRA: &str = concat!(
    gcra_count!(),
    r#"
if not allowed then return {0, 0, allow_at - now} end
return {1, remaining, new_tat - now}
"#
);

/// What the cluster's count says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedVerdict {
    Allowed {
        remaining: u32,
        reset: Duration,
    },
    Limited {
        retry_after: Duration,
    },
    /// Redis did not answer (now, or lately): apply `when_unavailable`.
    Unavailable,
}

impl SharedState {
    /// Counts one request against `key`'s quota in `tier` (and `route`, for
    /// the route tier) across the cluster.
    pub async fn check(&self, tier: Tier, route: &str, key: &RateKey, rate: Rate) -> SharedVerdict {
        let redis_key = format!("gatehouse:rl:{}:{route}:{}", tier.as_str(), key.describe());
        let args = vec![
            interval_micros(rate).to_string(),
            rate.count.get().to_string(),
        ];
        let call = async {
            let answer = self
                .scripts
                .gcra
                .evalsha_with_reload::<Vec<i64>, _, _>(&self.client, redis_key, args)
                .await
                .map_err(|e| e.to_string())?;
            match answer[..] {
                [allowed, remaining, micros] => Ok((allowed, remaining, micros)),
                _ => Err(format!("unexpected answer from the script: {answer:?}")),
            }
        };
        let Some((allowed, remaining, micros)) = self.call(call).await else {
            return SharedVerdict::Unavailable;
        };
        let micros = Duration::from_micros(u64::try_from(micros).unwrap_or(0));
        if allowed == 1 {
            SharedVerdict::Allowed {
                remaining: u32::try_from(remaining).unwrap_or(0),
                reset: micros,
            }
        } else {
            SharedVerdict::Limited {
                retry_after: micros,
            }
        }
    }
}

/// GCRA's emission interval for `rate`, in microseconds (at least 1).
pub(super) fn interval_micros(rate: Rate) -> u64 {
    u64::try_from((rate.per / rate.count.get()).as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}
