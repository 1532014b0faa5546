//! What gateway replicas share through Redis when the policy has
//! `[shared_state]`:
//!
//! - the request tiers' quotas, counted per request ([`limits`]);
//! - login failures, counted per failure, and the lockouts they start;
//!   logged-out sessions; users whose every session was ended
//!   ([`lists`]): written through to Redis and pushed to every replica's
//!   own tables over pub/sub, so checking them costs no round trip;
//! - OIDC login flows, each of which completes once ([`once`]).
//!
//! One request makes at most one round trip: the quota's. The rest are on
//! rare paths (a failed login, a logout, a callback).
//!
//! Redis that does not answer within the policy's timeout is *down*: the
//! caller applies `when_unavailable` (this replica's state alone, or 503),
//! and one call a second probes it again until it answers. Each change is
//! reported once, through the `on_change` the server gives (log, metric,
//! audit record).

pub mod limits;
pub mod lists;
pub mod once;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::{Config, ReconnectPolicy};
use fred::types::scripts::Script;

use gatehouse_policy::{SharedState as Settings, WhenUnavailable};

pub use limits::SharedVerdict;
pub use lists::{Listed, Origin};

/// While Redis is down, one call this often tries it again.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SharedStateError {
    #[error("the Redis URL in [shared_state] is not usable: {0}")]
    Config(String),
    #[error("cannot start the Redis thread: {0}")]
    Runtime(std::io::Error),
}

/// Redis stopped or started answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Down { error: String },
    Up,
}

type OnChange = Box<dyn Fn(Transition) + Send + Sync>;

pub struct SharedState {
    client: Client,
    timeout: Duration,
    pub when_unavailable: WhenUnavailable,
    scripts: Scripts,
    health: Health,
    /// Entries written while Redis was down, written again when it answers.
    pending: Mutex<Vec<Listed>>,
}

struct Scripts {
    gcra: Script,
    login_failure: Script,
    list_add: Script,
}

impl SharedState {
    /// A client that connects in the background and reconnects for ever:
    /// the gateway starts, and serves under `when_unavailable`, while Redis
    /// is down. `on_change` hears of every [`Transition`].
    pub fn connect(
        settings: &Settings,
        on_change: impl Fn(Transition) + Send + Sync + 'static,
    ) -> Result<SharedState, SharedStateError> {
        let client = client(settings)?;
        // The connection's task runs on a runtime of its own: the gateway's
        // workers each have one (no work stealing) and any of them may
        // send it commands; it lives as long as the process.
        let _entered = redis_runtime().map_err(SharedStateError::Runtime)?.enter();
        client.connect();
        Ok(SharedState {
            client,
            timeout: settings.timeout,
            when_unavailable: settings.when_unavailable,
            scripts: Scripts {
                gcra: Script::from_lua(limits::GCRA),
                login_failure: Script::from_lua(lists::LOGIN_FAILURE),
                list_add: Script::from_lua(lists::LIST_ADD),
            },
            health: Health {
                // Assumed up until a call says otherwise, so the first
                // failure is reported as a transition.
                up: AtomicBool::new(true),
                next_probe_ms: AtomicU64::new(0),
                started: Instant::now(),
                on_change: Box::new(on_change),
            },
            pending: Mutex::new(Vec::new()),
        })
    }

    /// Runs one Redis call within the timeout. `None` when Redis is down
    /// (now, or lately and this is not the call that probes it).
    async fn call<T>(&self, call: impl Future<Output = Result<T, String>>) -> Option<T> {
        if !self.health.may_try() {
            return None;
        }
        self.attempt(call).await
    }

    /// Like [`Self::call`], whether or not Redis was down lately: for
    /// writes that wait for it to come back.
    async fn attempt<T>(&self, call: impl Future<Output = Result<T, String>>) -> Option<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(answer)) => {
                self.health.answered();
                Some(answer)
            }
            Ok(Err(error)) => {
                self.health.failed(error);
                None
            }
            Err(_) => {
                self.health.failed(format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ));
                None
            }
        }
    }
}

/// A client for `settings`, not connected yet.
fn client(settings: &Settings) -> Result<Client, SharedStateError> {
    let config = config(settings)?;
    fred::types::Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = settings.timeout.max(Duration::from_secs(1));
        })
        .with_performance_config(|p| p.default_command_timeout = settings.timeout)
        .set_policy(reconnect_policy())
        .build()
        .map_err(|e| SharedStateError::Config(e.to_string()))
}

fn config(settings: &Settings) -> Result<Config, SharedStateError> {
    let mut config = Config::from_url(&settings.redis_url)
        .map_err(|e| SharedStateError::Config(e.to_string()))?;
    config.fail_fast = false;
    if let Some(password) = &settings.password {
        let text = std::str::from_utf8(password.expose())
            .map_err(|_| SharedStateError::Config("the password is not UTF-8".to_owned()))?;
        config.password = Some(text.to_owned());
    }
    Ok(config)
}

/// Reconnect for ever, 100 ms doubling up to 2 s between tries.
fn reconnect_policy() -> ReconnectPolicy {
    ReconnectPolicy::new_exponential(0, 100, 2_000, 2)
}

/// Whether Redis answers, and when to probe it while it does not.
struct Health {
    up: AtomicBool,
    /// While down: milliseconds after `started` when the next probe may go.
    next_probe_ms: AtomicU64,
    started: Instant,
    on_change: OnChange,
}

impl Health {
    /// Whether to ask Redis: always while it answers; while it does not,
    /// one call per [`PROBE_INTERVAL`].
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

    fn answered(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            (self.on_change)(Transition::Up);
        }
    }

    fn failed(&self, error: String) {
        self.next_probe_ms.store(
            self.millis_now() + millis(PROBE_INTERVAL),
            Ordering::Relaxed,
        );
        if self.up.swap(false, Ordering::Relaxed) {
            (self.on_change)(Transition::Down { error });
        }
    }

    fn millis_now(&self) -> u64 {
        millis(self.started.elapsed())
    }
}

/// One thread for the Redis connections, started on first use.
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

/// The instant of a Unix time in milliseconds (from Redis, or another
/// replica): now plus what is left until it, so clocks only need to agree
/// roughly.
pub fn instant_at(unix_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(unix_ms.saturating_sub(self::unix_ms()))
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
