//! The HTTP client webhooks and Slack share: every connection's address
//! comes from the guard's resolver, no redirect is followed, no proxy from
//! the environment is used (it would connect for us, past the guard), one
//! timeout covers the whole attempt and the response is read up to a cap.

use std::sync::Arc;

use reqwest::header::HeaderMap;

use super::error::DeliveryError;
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
        return Err(DeliveryError::Redirect(status));
    }
    if !status.is_success() {
        return Err(DeliveryError::Status(status));
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use gatehouse_policy::notify::{GuardSettings, HostPattern};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A guard that lets the test reach its own server on 127.0.0.1.
    fn loopback_guard(timeout: Duration, max_response: u64) -> Guard {
        Guard::new(GuardSettings {
            allow_hosts: vec![HostPattern::Ip([127, 0, 0, 1].into())],
            insecure_allow_networks: vec!["127.0.0.1/32".parse().expect("CIDR")],
            timeout,
            max_response,
        })
    }

    /// Serves one connection with `answer` after reading the request head.
    async fn serve_once(
        answer: impl FnOnce(tokio::net::TcpStream) -> tokio::task::JoinHandle<()> + Send + 'static,
    ) -> url::Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                let _ = answer(stream).await;
            }
        });
        url::Url::parse(&format!("http://{addr}/hook")).expect("url")
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_times_out() {
        let url = serve_once(|stream| {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(stream);
            })
        })
        .await;
        let guard = loopback_guard(Duration::from_secs(1), 1024);
        let started = Instant::now();
        let result = post(
            &client(&guard).expect("client"),
            &guard,
            &url,
            HeaderMap::new(),
            b"{}".to_vec(),
        )
        .await;
        assert!(
            matches!(result, Err(DeliveryError::Transport(ref e)) if e.contains("timed out")),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_endless_answer_is_read_only_up_to_the_cap() {
        let url = serve_once(|mut stream| {
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")
                    .await;
                let chunk = vec![b'x'; 16 * 1024];
                // Until the client hangs up.
                while stream.write_all(&chunk).await.is_ok() {}
            })
        })
        .await;
        // Read to its end, the answer would last until the timeout; the
        // cap ends the attempt long before.
        let guard = loopback_guard(Duration::from_secs(5), 64 * 1024);
        let started = Instant::now();
        let result = post(
            &client(&guard).expect("client"),
            &guard,
            &url,
            HeaderMap::new(),
            b"{}".to_vec(),
        )
        .await;
        assert!(started.elapsed() < Duration::from_millis(2500));
        assert!(result.is_ok(), "{result:?}");
    }
}
