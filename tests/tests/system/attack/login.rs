//! Real browser sessions for the topics that attack them: a gateway with
//! `[session]` and `[[oidc]]` in front of the real oidc-provider, and
//! logins driven over HTTP the way `oidc.rs` drives them.

use gatehouse_tests::{free_port, Idp};
use reqwest::header::SET_COOKIE;
use serde_json::json;

use super::*;
use gatehouse_tests::idp::{location, oidc_policy, walk_provider};

const SESSION_KEY: &str = "an-attack-suite-session-key-that-is-long-enough-0123";

pub fn sections(issuer: &str) -> String {
    format!(
        r#"{NO_RATE_LIMITS}
[roles]
operator = ["jobs:run", "jobs:view"]
viewer = ["jobs:view"]

[session]
keys = ["{SESSION_KEY}"]
idle_timeout = "10m"
lifetime = "1h"

{}"#,
        oidc_policy(
            issuer,
            "",
            r#"role_map = { ops = ["operator"] }
default_roles = ["viewer"]"#,
        )
    )
}

pub struct Sessions {
    pub target: Target,
    pub idp: Idp,
    /// Keeps the provider's cookies, as a browser would.
    pub browser: reqwest::Client,
}

impl Sessions {
    /// A gateway with sessions and `extra` sections (routes), and the IdP.
    pub async fn start(extra: &str) -> Result<Sessions, String> {
        Self::start_adjusted(extra, |sections| sections).await
    }

    /// Like [`Self::start`], with the session sections changed by `adjust`
    /// (a stricter login tier, say).
    pub async fn start_adjusted(
        extra: &str,
        adjust: impl FnOnce(String) -> String,
    ) -> Result<Sessions, String> {
        let port = free_port();
        let issuer = format!("http://127.0.0.1:{port}");
        let target = Target::start(&format!("{}{extra}", adjust(sections(&issuer)))).await?;
        let origin = target.gateway.origin();
        let idp = Idp::start_for_gateway(
            port,
            &origin,
            json!({
                "alice": {"email": "alice@example.com", "email_verified": true, "groups": ["ops"]},
                "bob": {"email": "bob@example.com", "email_verified": false, "groups": []},
            }),
        )
        .map_err(|e| format!("the test IdP: {e:#}"))?;
        let browser = target.gateway.client_with_cookies();
        Ok(Sessions {
            target,
            idp,
            browser,
        })
    }

    pub fn origin(&self) -> String {
        self.target.gateway.origin()
    }

    /// Starts a login with the raw query value `rd`: (authorize URL, flow
    /// cookie value).
    pub async fn begin(&self, rd: &str) -> Result<(String, String), String> {
        self.begin_with(&self.browser, rd).await
    }

    /// [`Self::begin`] in another browser (`client`, with its own jar).
    pub async fn begin_with(
        &self,
        client: &reqwest::Client,
        rd: &str,
    ) -> Result<(String, String), String> {
        let response = client
            .get(format!("{}/.gatehouse/login?rd={rd}", self.origin()))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != 302 {
            return Err(format!("login start answered {}", response.status()));
        }
        let flow = cookie(&response, "__Host-gatehouse-flow").ok_or("no flow cookie")?;
        Ok((location(response.headers()), flow))
    }

    /// A whole login as `user` in `client` that asked to return to `rd`;
    /// the gateway's answer to the callback.
    pub async fn complete_with(
        &self,
        client: &reqwest::Client,
        rd: &str,
        user: &str,
    ) -> Result<reqwest::Response, String> {
        let (authorize, _) = self.begin_with(client, rd).await?;
        let callback =
            walk_provider(client, &self.idp.issuer, &self.origin(), &authorize, user).await;
        client.get(callback).send().await.map_err(|e| e.to_string())
    }

    /// A fresh session cookie value for `user`.
    pub async fn session(&self, user: &str) -> Result<String, String> {
        self.session_with(&self.browser, user).await
    }

    /// [`Self::session`] in another browser.
    pub async fn session_with(
        &self,
        client: &reqwest::Client,
        user: &str,
    ) -> Result<String, String> {
        let done = self.complete_with(client, "/", user).await?;
        cookie(&done, "__Host-gatehouse")
            .ok_or_else(|| format!("no session cookie (callback answered {})", done.status()))
    }

    /// Logs `session` out (a raw request with its cookie).
    pub async fn logout(&self, session: &str) -> Result<(), String> {
        let logout = self
            .target
            .send_h1(
                &req("GET", "/.gatehouse/logout")
                    .h("Cookie", &format!("__Host-gatehouse={session}"))
                    .bytes(),
                None,
                "localhost",
            )
            .await?;
        match logout.status {
            302 => Ok(()),
            _ => Err(format!("logout answered {}", logout.summary())),
        }
    }

    /// A new browser: its own cookie jar, so logins can run side by side.
    pub fn new_browser(&self) -> reqwest::Client {
        self.target.gateway.client_with_cookies()
    }
}

/// The value a response sets for cookie `name`.
pub fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
        .filter(|value| !value.is_empty())
}
