//! The generic webhook: the notice as JSON, signed so the receiver can
//! tell it came from us and is fresh.
//!
//! Headers:
//! - `X-Gatehouse-Timestamp`: unix seconds when it was signed;
//! - `X-Gatehouse-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with
//!   the channel's secret, of `TIMESTAMP.BODY` (the timestamp, a dot, the
//!   exact body bytes). Receivers compare in constant time and refuse old
//!   timestamps, which stops replays;
//! - `X-Gatehouse-Event`: the event (`failed`, `recovered`, ...);
//! - `X-Gatehouse-Delivery`: `RUN.EVENT`, the same on every retry, so a
//!   receiver can drop duplicates.

use gatehouse_policy::notify::SecretRef;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};

use super::error::DeliveryError;
use super::guard::Guard;
use super::RunNotice;

/// `sha256=HEX` of `timestamp.body`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

pub async fn send(
    client: &reqwest::Client,
    guard: &Guard,
    url: &url::Url,
    secret: &SecretRef,
    notice: &RunNotice,
) -> Result<(), DeliveryError> {
    let secret = secret
        .read()
        .map_err(|e| DeliveryError::Secret(e.to_string()))?;
    let body = serde_json::to_vec(notice).map_err(|e| DeliveryError::Invalid(e.to_string()))?;
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let values = [
        ("x-gatehouse-timestamp", timestamp.to_string()),
        (
            "x-gatehouse-signature",
            signature(secret.expose(), timestamp, &body),
        ),
        ("x-gatehouse-event", notice.event.as_str().to_owned()),
        (
            "x-gatehouse-delivery",
            format!("{}.{}", notice.run, notice.event.as_str()),
        ),
    ];
    for (name, value) in values {
        let value =
            HeaderValue::from_str(&value).map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        headers.insert(name, value);
    }
    super::http::post(client, guard, url, headers, body).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 ("Jefe"), with the message split at the dot
        // the way the receiver rebuilds it.
        let signed = super::signature(b"Jefe", 0, b"");
        let expected = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe"),
            b"0.",
        );
        assert_eq!(signed, format!("sha256={}", hex::encode(expected.as_ref())));
        assert_ne!(
            super::signature(b"Jefe", 1, b"{}"),
            super::signature(b"Jefe", 1, b"{ }")
        );
    }
}
