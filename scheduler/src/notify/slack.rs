//! Slack-compatible incoming webhooks (Slack, Mattermost, Rocket.Chat):
//! `{"text": ...}`. The URL is the credential, so it comes from the
//! policy's secret mechanism and never appears in a log or error.

use gatehouse_policy::notify::SecretRef;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};

use super::error::DeliveryError;
use super::guard::Guard;
use super::RunNotice;

/// Bytes of output quoted in a message.
const QUOTED_OUTPUT: usize = 500;

/// Reads the URL and checks it like a URL written in the policy.
pub fn read_url(url: &SecretRef, guard: &Guard) -> Result<url::Url, DeliveryError> {
    let secret = url
        .read()
        .map_err(|e| DeliveryError::Secret(e.to_string()))?;
    let parsed = std::str::from_utf8(secret.expose())
        .ok()
        .and_then(|text| url::Url::parse(text.trim()).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| DeliveryError::Invalid("the Slack URL is not an http(s) URL".into()))?;
    guard.check_host(
        &parsed
            .host()
            .ok_or_else(|| DeliveryError::Invalid("the Slack URL has no host".into()))?,
    )?;
    Ok(parsed)
}

pub fn message(notice: &RunNotice) -> serde_json::Value {
    let mut text = notice.summary();
    let tail = notice
        .log_tail
        .char_indices()
        .rev()
        .nth(QUOTED_OUTPUT.saturating_sub(1))
        .map_or(notice.log_tail.as_str(), |(i, _)| &notice.log_tail[i..]);
    if !tail.trim().is_empty() {
        text.push_str("\n```\n");
        text.push_str(&tail.replace("```", "'''"));
        text.push_str("\n```");
    }
    serde_json::json!({ "text": text })
}

pub async fn send(
    client: &reqwest::Client,
    guard: &Guard,
    url: &SecretRef,
    notice: &RunNotice,
) -> Result<(), DeliveryError> {
    let url = read_url(url, guard)?;
    let body =
        serde_json::to_vec(&message(notice)).map_err(|e| DeliveryError::Invalid(e.to_string()))?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    super::http::post(client, guard, &url, headers, body).await
}
