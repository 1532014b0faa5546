//! The HTTP client webhooks and Slack share: every connection's address
//! comes from the guard's resolver, no redirect is followed, no proxy from
//! the environment is used (it would connect for us, past the guard), one
//! timeout covers the whole attempt and the response is read up to a cap.

use std::sync::Arc;

use reqwest::header::HeaderMap;

use super::deliver::DeliveryError;
use super::guard::{Guard, GuardedResolver, ResolveError};

pub fn client(guard: &Guard) -> Result<reqwest::Client, reqwest::Error> {
    let settings = guard.settings();
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .user_agent(concat!("gatehouse-scheduler/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// POSTs `body`; succeeds on a 2xx answer. Errors never show the URL
/// (a Slack URL is a credential).
pub async fn post(
    client: &reqwest::Client,
    guard: &Guard,
    url: &url::Url,
    headers: HeaderMap,
    body: Vec<u8>,
) -> Result<(), DeliveryError> {
    // An IP literal never reaches the resolver: check it here.
    guard.check_url(url)?;
    let mut response = client
        .post(url.clone())
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(transport_error)?;
    let status = response.status();
    let cap = guard.settings().max_response;
    let mut read = 0u64;
    while read < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len() as u64,
            Ok(None) | Err(_) => break,
        }
    }
    if status.is_redirection() {
        return Err(DeliveryError::Redirect(status.as_u16()));
    }
    if !status.is_success() {
        return Err(DeliveryError::Status(status.as_u16()));
    }
    Ok(())
}

/// Finds the guard's refusal behind reqwest's error, if that is what it is.
fn transport_error(error: reqwest::Error) -> DeliveryError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(resolve) = e.downcast_ref::<ResolveError>() {
            return match resolve {
                ResolveError::Refused(refusal) => DeliveryError::Refused(refusal.clone()),
                other => DeliveryError::Transport(other.to_string()),
            };
        }
        source = e.source();
    }
    DeliveryError::Transport(describe(&error.without_url()))
}

fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
