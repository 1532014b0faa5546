//! The test OpenID provider (`tests/idp/server.mjs`, panva's
//! oidc-provider on node) as a child process on a free port. One copy for
//! the gateway's and the scheduler's tests.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{wait_for_port, ChildProcess};

pub struct Idp {
    pub process: ChildProcess,
    pub issuer: String,
    _dir: tempfile::TempDir,
}

impl Idp {
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
