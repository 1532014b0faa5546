//! The lists every replica must agree on: login lockouts, logged-out
//! sessions, and users whose every session was ended.
//!
//! Each list is a sorted set in Redis, scored by when its entries stop
//! mattering (Unix ms), and pruned as it is written. A write also
//! publishes the entry; every replica subscribes, and on each
//! (re)connection loads the lists whole, so a replica that was cut off or
//! started later catches up. The request path then checks only this
//! replica's own tables: no round trip. The price is the delivery time of
//! one pub/sub message (measured in the cluster test) between a logout on
//! one replica and its refusal on another.
//!
//! Login failures are counted in Redis (GCRA at the login tier's rate);
//! the failure that uses up an address's allowance starts the lockout in
//! the same script, so two replicas cannot both miss it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface, SortedSetsInterface};
use fred::types::scripts::Script;
use fred::types::sorted_sets::{ZRange, ZRangeBound, ZRangeKind};
use fred::types::Value;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use gatehouse_policy::{Rate, SharedState as Settings};

use super::limits::{gcra_count, interval_micros};
use super::{config, reconnect_policy, redis_runtime, SharedState, SharedStateError};

const CHANNEL: &str = "gatehouse:lists";
const LOCKOUTS: &str = "gatehouse:lockouts";
const SESSIONS: &str = "gatehouse:revoked-sessions";
const USERS: &str = "gatehouse:revoked-users";

/// Entries loaded per round trip when catching up.
const PAGE: i64 = 10_000;
/// Between tries to catch up, and to write entries that waited for Redis.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// KEYS[1]: the list. ARGV: score (Unix ms until which the entry
/// matters), member, the channel, the message. Adds the entry, drops the
/// list's dead ones, publishes; returns how many replicas heard it.
pub(super) const LIST_ADD: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'GT', ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], 0, 0, 'REV', 'WITHSCORES')[2]
if last then redis.call('PEXPIREAT', KEYS[1], last) end
return redis.call('PUBLISH', ARGV[3], ARGV[4])
"#;

/// KEYS[1]: the address's GCRA key at the login tier; KEYS[2]: the
/// lockouts list. ARGV: emission interval (µs), burst, lockout window
/// (ms), the address (member), the channel. Counts one failure; when it
/// uses up the allowance, locks the address out and publishes the entry.
/// Returns {locked, until (Unix ms)}.
pub(super) const LOGIN_FAILURE: &str = concat!(
    gcra_count!(),
    r#"
if allowed and remaining > 0 then return {0, 0} end
local until_ms = math.floor(now / 1000) + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], 'GT', until_ms, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', math.floor(now / 1000))
local last = redis.call('ZRANGE', KEYS[2], 0, 0, 'REV', 'WITHSCORES')[2]
if last then redis.call('PEXPIREAT', KEYS[2], last) end
redis.call('PUBLISH', ARGV[5], cjson.encode({list = 'lockouts', member = ARGV[4], until_ms = until_ms}))
return {1, until_ms}
"#
);
/// One entry of one list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// Logins from this network are refused until then (Unix ms).
    Lockout { network: IpNet, until_ms: u64 },
    /// This session is logged out; it would have expired by then anyway.
    Session { sid: String, until_ms: u64 },
    /// Every session of `subject` issued at or before `before` (Unix s) is
    /// ended; the last of them would have expired by `until_ms`. `by` is
    /// whoever asked (`logout-user --by`), for the audit record.
    UserSessions {
        subject: String,
        before: u64,
        until_ms: u64,
        by: Option<String>,
    },
}

/// How an entry reached this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Published just now (by this replica, another, or the CLI).
    Live,
    /// Loaded when (re)connecting: already known to the cluster.
    Loaded,
}

/// What is published on [`CHANNEL`].
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    list: String,
    member: String,
    until_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<String>,
}

impl Listed {
    fn list(&self) -> (&'static str, &'static str) {
        match self {
            Listed::Lockout { .. } => ("lockouts", LOCKOUTS),
            Listed::Session { .. } => ("sessions", SESSIONS),
            Listed::UserSessions { .. } => ("users", USERS),
        }
    }

    fn member(&self) -> String {
        match self {
            Listed::Lockout { network, .. } => network.to_string(),
            Listed::Session { sid, .. } => sid.clone(),
            Listed::UserSessions {
                subject, before, ..
            } => format!("{before}:{subject}"),
        }
    }

    fn until_ms(&self) -> u64 {
        match self {
            Listed::Lockout { until_ms, .. }
            | Listed::Session { until_ms, .. }
            | Listed::UserSessions { until_ms, .. } => *until_ms,
        }
    }

    fn message(&self) -> String {
        let by = match self {
            Listed::UserSessions { by, .. } => by.clone(),
            _ => None,
        };
        let message = Message {
            list: self.list().0.to_owned(),
            member: self.member(),
            until_ms: self.until_ms(),
            by,
        };
        serde_json::to_string(&message).unwrap_or_default()
    }

    /// The entry a list holds as `member` scored `until_ms`; `None` for
    /// one this version cannot read (it is skipped, not trusted).
    fn parse(list: &str, member: &str, until_ms: u64, by: Option<String>) -> Option<Listed> {
        match list {
            "lockouts" => {
                let network = member
                    .parse::<IpNet>()
                    .or_else(|_| member.parse::<IpAddr>().map(IpNet::from))
                    .ok()?;
                Some(Listed::Lockout { network, until_ms })
            }
            "sessions" if !member.is_empty() => Some(Listed::Session {
                sid: member.to_owned(),
                until_ms,
            }),
            "users" => {
                let (before, subject) = member.split_once(':')?;
                Some(Listed::UserSessions {
                    subject: subject.to_owned(),
                    before: before.parse().ok()?,
                    until_ms,
                    by,
                })
            }
            _ => None,
        }
    }
}

/// How one failed login counted across the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginCount {
    Counted,
    /// This failure used up the allowance: locked out until then (Unix ms).
    LockedOut {
        until_ms: u64,
    },
    Unavailable,
}

impl SharedState {
    /// Writes `entry` and tells every replica, this one included. While
    /// Redis is down the entry is kept and written when it answers again
    /// (this replica has applied it to its own tables already).
    pub async fn publish(&self, entry: Listed) {
        let written = self
            .call(add(&self.client, &self.scripts.list_add, &entry))
            .await;
        if written.is_none() {
            self.keep_for_later(entry);
        }
    }

    fn keep_for_later(&self, entry: Listed) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.push(entry);
    }

    /// Counts a failed login from `network` at the login tier's `rate`.
    /// The failure that uses up the allowance locks the network out for
    /// `rate.per` on every replica.
    pub async fn login_failed(&self, network: IpNet, rate: Rate) -> LoginCount {
        let args = vec![
            interval_micros(rate).to_string(),
            rate.count.get().to_string(),
            super::millis(rate.per).to_string(),
            network.to_string(),
            CHANNEL.to_owned(),
        ];
        let keys = vec![
            format!("gatehouse:rl:login::{network}"),
            LOCKOUTS.to_owned(),
        ];
        let call = async {
            let answer = self
                .scripts
                .login_failure
                .evalsha_with_reload::<Vec<i64>, _, _>(&self.client, keys, args)
                .await
                .map_err(|e| e.to_string())?;
            match answer[..] {
                [locked, until] => Ok((locked == 1, u64::try_from(until).unwrap_or(0))),
                _ => Err(format!("unexpected answer from the script: {answer:?}")),
            }
        };
        match self.call(call).await {
            Some((true, until_ms)) => LoginCount::LockedOut { until_ms },
            Some((false, _)) => LoginCount::Counted,
            None => LoginCount::Unavailable,
        }
    }

    /// Keeps this replica's tables in step with the cluster's lists: on
    /// every (re)connection it subscribes and loads each list whole, then
    /// applies each entry published. Runs as long as the process.
    pub fn follow(
        self: &Arc<Self>,
        settings: &Settings,
        apply: impl Fn(Listed, Origin) + Send + Sync + 'static,
    ) -> Result<(), SharedStateError> {
        let subscriber = fred::types::Builder::from_config(config(settings)?)
            .set_policy(reconnect_policy())
            .build_subscriber_client()
            .map_err(|e| SharedStateError::Config(e.to_string()))?;
        let runtime = redis_runtime().map_err(SharedStateError::Runtime)?;
        let apply = Arc::new(apply);
        let mut connected = subscriber.reconnect_rx();
        let mut messages = subscriber.message_rx();
        let _entered = runtime.enter();
        subscriber.connect();

        // Entries that waited for Redis go as soon as it answers, whether
        // or not the subscriber noticed it was gone.
        let shared = self.clone();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(RETRY_MAX).await;
                if shared.has_pending() {
                    shared.write_pending().await;
                }
            }
        });
        let shared = self.clone();
        let on_connect = apply.clone();
        let follower = subscriber.clone();
        runtime.spawn(async move {
            while connected.recv().await.is_ok() {
                shared.caught_up(&follower, &*on_connect).await;
            }
        });
        let shared = self.clone();
        runtime.spawn(async move {
            loop {
                match messages.recv().await {
                    Ok(message) => {
                        if let Some(entry) = received(&message.value) {
                            apply(entry, Origin::Live);
                        }
                    }
                    // Messages were lost to a slow consumer: load the lists.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        shared.caught_up(&subscriber, &*apply).await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(())
    }

    /// After a (re)connection: subscribe, then load every list (subscribed
    /// first, so nothing written meanwhile is missed). Retried until it
    /// works: the subscriber may be back before the client that loads.
    async fn caught_up(
        &self,
        subscriber: &SubscriberClient,
        apply: &(dyn Fn(Listed, Origin) + Send + Sync),
    ) {
        let mut pause = RETRY_FIRST;
        loop {
            match self.catch_up(subscriber, apply).await {
                Ok(()) => return,
                Err(error) => tracing::warn!(%error, "cannot load the shared lists yet; retrying"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    async fn catch_up(
        &self,
        subscriber: &SubscriberClient,
        apply: &(dyn Fn(Listed, Origin) + Send + Sync),
    ) -> Result<(), String> {
        subscriber
            .subscribe(CHANNEL)
            .await
            .map_err(|e| format!("subscribing: {e}"))?;
        self.write_pending().await;
        for (list, key) in [
            ("lockouts", LOCKOUTS),
            ("sessions", SESSIONS),
            ("users", USERS),
        ] {
            load(&self.client, list, key, apply)
                .await
                .map_err(|e| format!("loading {list}: {e}"))?;
        }
        Ok(())
    }

    /// Writes the entries that waited for Redis; those it still cannot
    /// write wait for the next try.
    async fn write_pending(&self) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for entry in pending {
            // Not through `publish`: Redis may still count as down here
            // until a request probes it, and these must go now.
            let written = self
                .attempt(add(&self.client, &self.scripts.list_add, &entry))
                .await;
            if written.is_none() {
                self.keep_for_later(entry);
            }
        }
    }

    fn has_pending(&self) -> bool {
        !self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// Adds `entry` to its list and publishes it (one round trip).
async fn add(client: &Client, script: &Script, entry: &Listed) -> Result<i64, String> {
    let args = vec![
        entry.until_ms().to_string(),
        entry.member(),
        CHANNEL.to_owned(),
        entry.message(),
    ];
    script
        .evalsha_with_reload::<i64, _, _>(client, entry.list().1, args)
        .await
        .map_err(|e| e.to_string())
}

/// Applies every live entry of one list, a page at a time.
async fn load(
    client: &Client,
    list: &str,
    key: &str,
    apply: &(dyn Fn(Listed, Origin) + Send + Sync),
) -> Result<(), fred::error::Error> {
    let now = super::unix_ms();
    let mut offset = 0;
    loop {
        let page: Vec<(String, f64)> = client
            .zrange(
                key,
                ZRange {
                    kind: ZRangeKind::Exclusive,
                    range: ZRangeBound::Score(now as f64),
                },
                ZRange {
                    kind: ZRangeKind::Inclusive,
                    range: ZRangeBound::InfiniteScore,
                },
                Some(fred::types::sorted_sets::ZSort::ByScore),
                false,
                Some((offset, PAGE)),
                true,
            )
            .await?;
        let count = page.len();
        for (member, score) in page {
            if let Some(entry) = Listed::parse(list, &member, score as u64, None) {
                apply(entry, Origin::Loaded);
            }
        }
        if i64::try_from(count).unwrap_or(0) < PAGE {
            return Ok(());
        }
        offset += PAGE;
    }
}

/// The entry a published message carries.
fn received(value: &Value) -> Option<Listed> {
    let text = value.as_str()?;
    let message: Message = serde_json::from_str(&text).ok()?;
    Listed::parse(&message.list, &message.member, message.until_ms, message.by)
}

/// For the `logout-user` command: writes `entry` with a connection of its
/// own and returns how many replicas heard it.
pub async fn publish_once(settings: &Settings, entry: &Listed) -> Result<i64, String> {
    let client = super::client(settings).map_err(|e| e.to_string())?;
    client.init().await.map_err(|e| e.to_string())?;
    let script = Script::from_lua(LIST_ADD);
    let heard = add(&client, &script, entry).await;
    let _ = client.quit().await;
    heard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_the_round_trip_through_a_message() {
        let entries = [
            Listed::Lockout {
                network: "203.0.113.9/32".parse().unwrap(),
                until_ms: 5,
            },
            Listed::Lockout {
                network: "2001:db8::/64".parse().unwrap(),
                until_ms: 6,
            },
            Listed::Session {
                sid: "c2lk".to_owned(),
                until_ms: 7,
            },
            Listed::UserSessions {
                subject: "oidc:idp:a:b c".to_owned(),
                before: 1_700_000_000,
                until_ms: 8,
                by: Some("ops".to_owned()),
            },
        ];
        for entry in entries {
            let value = Value::String(entry.message().into());
            assert_eq!(received(&value), Some(entry));
        }
    }

    #[test]
    fn unreadable_entries_are_skipped() {
        assert_eq!(Listed::parse("lockouts", "not an address", 1, None), None);
        assert_eq!(Listed::parse("users", "no-colon", 1, None), None);
        assert_eq!(Listed::parse("sessions", "", 1, None), None);
        assert_eq!(Listed::parse("other", "x", 1, None), None);
        assert_eq!(received(&Value::String("{".into())), None);
    }
}
