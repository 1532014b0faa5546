//! Values that may be used once in the whole cluster: a login flow's
//! `state` completes one login, whichever replica the callback reaches.
//! Stored as a SHA-256, never as given, for as long as the value could
//! still be presented.

use std::time::Duration;

use fred::interfaces::KeysInterface;
use fred::types::{Expiration, SetOptions, Value};
use sha2::{Digest, Sha256};

use super::SharedState;

/// Whether a value was used before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    Yes,
    No,
    Unavailable,
}

impl SharedState {
    /// Marks `value` of `kind` used, for `lifetime`; says whether it was the
    /// first use (one round trip: `SET NX`).
    pub async fn first_use(&self, kind: &str, value: &str, lifetime: Duration) -> FirstUse {
        let key = format!(
            "gatehouse:once:{kind}:{}",
            hex::encode(Sha256::digest(value))
        );
        let millis = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
        let call = async {
            self.client
                .set::<Value, _, _>(
                    key,
                    "1",
                    Some(Expiration::PX(millis)),
                    Some(SetOptions::NX),
                    false,
                )
                .await
                .map_err(|e| e.to_string())
        };
        match self.call(call).await {
            Some(Value::Null) => FirstUse::No,
            Some(_) => FirstUse::Yes,
            None => FirstUse::Unavailable,
        }
    }
}
