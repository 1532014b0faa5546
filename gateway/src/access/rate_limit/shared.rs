//! One quota for every gateway replica: the request tiers (client,
//! identity, route) counted in Redis, after this replica's own limiter let
//! the request through. The local limiter stays as a cheap pre-filter: a
//! request over one replica's quota is over the cluster's too, and costs
//! no round trip.
//!
//! The count is GCRA in one Lua script (one round trip per request, on
//! Redis's clock, so replicas' clocks do not matter): each key holds its
//! theoretical arrival time, expiring when it no longer limits anything.
//!
//! Redis that does not answer within the policy's timeout is *down*: the
//! caller applies `when_unavailable` (this replica's limits alone, or 503),
//! and one request a second probes it again until it answers. Each change
//! is returned as a [`Transition`] for the caller to log, count and audit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::{Config, ReconnectPolicy};
use fred::types::scripts::Script;

use gatehouse_policy::{Rate, SharedState, WhenUnavailable};

use super::{RateKey, Tier};

/// GCRA. KEYS[1]: the key. ARGV: the emission interval and the burst, in
/// microseconds and requests. Returns {allowed, remaining, µs until reset
/// (allowed) or until the next request may pass (refused)}.
const GCRA: &str = r#"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now + burst * interval - new_tat) / interval), new_tat - now}
"#;

/// While Redis is down, one request this often tries it again.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SharedStateError {
    #[error("the Redis URL in [shared_state] is not usable: {0}")]
    Config(String),
}

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

/// Redis stopped or started answering with this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Down { error: String },
    Up,
}

pub struct SharedLimits {
    client: Client,
    script: Script,
    timeout: Duration,
    pub when_unavailable: WhenUnavailable,
    up: AtomicBool,
    /// While down: milliseconds after `started` when the next probe may go.
    next_probe_ms: AtomicU64,
    started: Instant,
}

impl SharedLimits {
    /// A client that connects in the background and reconnects for ever:
    /// the gateway starts, and serves under `when_unavailable`, while Redis
    /// is down.
    pub fn connect(settings: &SharedState) -> Result<SharedLimits, SharedStateError> {
        let mut config = Config::from_url(&settings.redis_url)
            .map_err(|e| SharedStateError::Config(e.to_string()))?;
        config.fail_fast = false;
        if let Some(password) = &settings.password {
            let text = std::str::from_utf8(password.expose())
                .map_err(|_| SharedStateError::Config("the password is not UTF-8".to_owned()))?;
            config.password = Some(text.to_owned());
        }
        let client = fred::types::Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = settings.timeout.max(Duration::from_secs(1));
            })
            .with_performance_config(|p| p.default_command_timeout = settings.timeout)
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build()
            .map_err(|e| SharedStateError::Config(e.to_string()))?;
        // The connection's task runs on a runtime of its own: the gateway's
        // workers each have one (no work stealing) and any of them may
        // send it commands; it lives as long as the process.
        let _entered = redis_runtime()
            .map_err(|e| SharedStateError::Config(format!("cannot start the Redis thread: {e}")))?
            .enter();
        client.connect();
        Ok(SharedLimits {
            client,
            script: Script::from_lua(GCRA),
            timeout: settings.timeout,
            when_unavailable: settings.when_unavailable,
            // Assumed up until a call says otherwise, so the first failure
            // is reported as a transition.
            up: AtomicBool::new(true),
            next_probe_ms: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// Counts one request against `key`'s quota in `tier` (and `route`, for
    /// the route tier) across the cluster.
    pub async fn check(
        &self,
        tier: Tier,
        route: &str,
        key: &RateKey,
        rate: Rate,
    ) -> (SharedVerdict, Option<Transition>) {
        if !self.may_try() {
            return (SharedVerdict::Unavailable, None);
        }
        let redis_key = format!("gatehouse:rl:{}:{route}:{}", tier.as_str(), key.describe());
        let interval = u64::try_from((rate.per / rate.count.get()).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let args = vec![interval.to_string(), rate.count.get().to_string()];
        let call = self
            .script
            .evalsha_with_reload::<Vec<i64>, _, _>(&self.client, redis_key, args);
        let answer = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(answer)) if answer.len() == 3 => Ok(answer),
            Ok(Ok(answer)) => Err(format!("unexpected answer from the script: {answer:?}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )),
        };
        match answer {
            Ok(answer) => {
                let transition = (!self.up.swap(true, Ordering::Relaxed)).then_some(Transition::Up);
                let micros = Duration::from_micros(u64::try_from(answer[2]).unwrap_or(0));
                let verdict = if answer[0] == 1 {
                    SharedVerdict::Allowed {
                        remaining: u32::try_from(answer[1]).unwrap_or(0),
                        reset: micros,
                    }
                } else {
                    SharedVerdict::Limited {
                        retry_after: micros,
                    }
                };
                (verdict, transition)
            }
            Err(error) => {
                self.next_probe_ms.store(
                    self.millis_now() + millis(PROBE_INTERVAL),
                    Ordering::Relaxed,
                );
                let transition = self
                    .up
                    .swap(false, Ordering::Relaxed)
                    .then_some(Transition::Down { error });
                (SharedVerdict::Unavailable, transition)
            }
        }
    }

    /// Whether to ask Redis: always while it answers; while it does not,
    /// one request per [`PROBE_INTERVAL`].
    fn may_try(&self) -> bool {
        if self.up.load(Ordering::Relaxed) {
            return true;
        }
        let now = self.millis_now();
        let next = self.next_probe_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_probe_ms
                .compare_exchange(
                    next,
                    now + millis(PROBE_INTERVAL),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    fn millis_now(&self) -> u64 {
        millis(self.started.elapsed())
    }
}

/// One thread for the Redis connection, started on first use.
fn redis_runtime() -> std::io::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("redis")
        .enable_all()
        .build()?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
