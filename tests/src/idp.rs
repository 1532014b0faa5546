//! The test OpenID provider (`tests/idp/server.mjs`, panva's
//! oidc-provider on node) as a child process on a free port. One copy for
//! the gateway's and the scheduler's tests.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::header::{HeaderMap, LOCATION};

use crate::process::{wait_for_port, ChildProcess};

pub struct Idp {
    pub process: ChildProcess,
    pub issuer: String,
    _dir: tempfile::TempDir,
}

/// The one client the tests register with the provider: the gateway,
/// named `test-idp` in its policy.
pub const CLIENT_ID: &str = "gatehouse";
pub const CLIENT_SECRET: &str = "client-secret";

/// The gateway's `[[oidc]]` table for the test provider at `issuer`, as
/// the client [`Idp::start_for_gateway`] registers: `extra` lines go into
/// the table (e.g. `allowed_domains`), `claims` is the body of its
/// `[oidc.claims]`.
pub fn oidc_policy(issuer: &str, extra: &str, claims: &str) -> String {
    format!(
        r#"
[[oidc]]
name = "test-idp"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
scopes = ["openid", "email", "profile", "groups"]
{extra}
[oidc.claims]
{claims}
"#
    )
}

impl Idp {
    /// Starts with one client, the gateway at `origin` (its callback, and
    /// where logout returns), and `users` as [`Idp::start`] takes them.
    pub fn start_for_gateway(port: u16, origin: &str, users: serde_json::Value) -> Result<Idp> {
        let client = serde_json::json!([{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("{origin}/.gatehouse/callback")],
            "post_logout_redirect_uris": [format!("{origin}/")],
        }]);
        Idp::start(port, client, users)
    }

    /// Starts on `port` (chosen first, so the gateway's policy can name the
    /// issuer before the IdP, which needs the gateway's callback URL, runs).
    /// `clients` and `users` are the JSON `tests/idp/server.mjs` reads.
    pub fn start(port: u16, clients: serde_json::Value, users: serde_json::Value) -> Result<Idp> {
        let dir = tempfile::tempdir()?;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/idp/server.mjs");
        let modules = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/idp/node_modules/oidc-provider"
        );
        if !std::path::Path::new(modules).exists() {
            anyhow::bail!(
                "oidc-provider is not installed: run `npm ci` in tests/idp (tests/run does)"
            );
        }
        let mut command = Command::new("node");
        command
            .arg(script)
            .env("IDP_PORT", port.to_string())
            .env("IDP_CLIENTS", clients.to_string())
            .env("IDP_USERS", users.to_string());
        let process = ChildProcess::spawn(command, &dir.path().join("idp.log"))
            .context("node runs the IdP")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_port(addr, Duration::from_secs(20))
            .with_context(|| format!("--- idp log ---\n{}", process.log_text()))?;
        Ok(Idp {
            process,
            issuer: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        })
    }
}

/// The provider's side of a login, as a browser with `client`'s cookie jar
/// would do it: follow its redirects, submit its login and consent forms,
/// until it redirects to `gateway_origin`. Returns that callback URL.
pub async fn walk_provider(
    client: &reqwest::Client,
    issuer: &str,
    gateway_origin: &str,
    authorize_url: &str,
    user: &str,
) -> String {
    let mut url = authorize_url.to_owned();
    for _ in 0..12 {
        if url.starts_with(gateway_origin) {
            return url;
        }
        let response = client.get(&url).send().await.expect("provider answers");
        if response.status().is_redirection() {
            url = absolute(issuer, &location(response.headers()));
            continue;
        }
        let html = response.text().await.expect("provider page");
        let action = absolute(issuer, &form_action(&html));
        let form: Vec<(&str, &str)> = if html.contains("name=\"login\"") {
            vec![("prompt", "login"), ("login", user), ("password", "any")]
        } else {
            vec![("prompt", "consent")]
        };
        let posted = client
            .post(&action)
            .form(&form)
            .send()
            .await
            .expect("provider answers");
        assert!(
            posted.status().is_redirection(),
            "{}: {}",
            posted.status(),
            posted.text().await.unwrap_or_default()
        );
        url = absolute(issuer, &location(posted.headers()));
    }
    panic!("the provider never redirected back");
}

/// The `Location` header of a redirect.
pub fn location(headers: &HeaderMap) -> String {
    headers[LOCATION]
        .to_str()
        .expect("Location is ASCII")
        .to_owned()
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

fn form_action(html: &str) -> String {
    let start = html.find("action=\"").expect("a form") + "action=\"".len();
    html[start..]
        .split('"')
        .next()
        .expect("split yields at least one piece")
        .replace("&amp;", "&")
}
