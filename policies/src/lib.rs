//! `gatehouse-policy`: the one place that knows the Gatehouse policy file.
//!
//! [`load`] reads a TOML file and returns a validated [`Policy`] or a
//! [`PolicyError`] listing every problem with its file, line and column.
//! The pipeline is the folder tree: the file is read into `raw/` (serde
//! structs, every key spanned), `convert/` validates it section by section,
//! and the result is the typed model ([`model`], [`identity`], [`scheduler`],
//! [`notify`], [`cron`] for job fire times). The gateway and the scheduler
//! consume only those types; the raw serde structs stay private.
//!
//! What this crate is not: a runtime. Architecture invariant: it does no
//! IO except reading the policy file and, on request, secret files (and the
//! process environment for `${VAR}` secrets). It opens no socket, spawns no
//! thread and writes no file. The audit log is `gatehouse-audit`, the
//! health probe `gatehouse-healthcheck`; certificates and keys are loaded
//! by the programs, which report their own errors with the path.

mod convert;
pub mod cron;
mod error;
pub mod identity;
pub mod model;
pub mod notify;
mod raw;
pub mod scheduler;
pub mod secret;
pub mod weakening;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use convert::job::{is_env_name, validate_image_reference};
pub use error::{PolicyError, Problem};
pub use identity::*;
pub use model::*;

/// Reads and validates the policy at `path`. Relative file paths inside it
/// resolve against the file's own directory.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Validates policy text as if it had been read from `path`, resolving
/// `${VAR}` secrets from the process environment.
pub fn parse(path: &Path, text: &str) -> Result<Policy, PolicyError> {
    parse_with_env(path, text, &|var| std::env::var(var).ok())
}

/// Like [`parse`], with the environment given explicitly (for tests).
pub fn parse_with_env(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Policy, PolicyError> {
    let invalid = |problems| PolicyError::Invalid {
        path: path.to_path_buf(),
        source_text: text.to_owned(),
        problems,
    };
    let raw: raw::RawPolicy = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let mut problems = error::Problems::new(text);
            problems.add_hint(e.span(), e.message().to_owned(), syntax_hint(e.message()));
            return Err(invalid(problems.into_vec()));
        }
    };
    let origin = PolicyOrigin {
        path: path.to_path_buf(),
        sha256: hex::encode(Sha256::digest(text.as_bytes())),
    };
    let mut converter = convert::context::Converter {
        problems: error::Problems::new(text),
        env,
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    match converter.policy(raw, origin) {
        Some(policy) if converter.problems.is_empty() => Ok(policy),
        _ => Err(invalid(converter.problems.into_vec())),
    }
}

/// Policy fragments for the tests and benchmarks of crates built on this one.
#[doc(hidden)]
/// The policy head scheduler tests share, up to `[scheduler]`: listeners,
/// a certificate, roles `operator` and `viewer`, an API key and the route
/// to a scheduler on 127.0.0.1:9100. A macro, so tests can `concat!` it
/// with their own sections into one literal (their line numbers stay
/// where the text says).
#[doc(hidden)]
#[macro_export]
macro_rules! scheduler_test_head {
    () => {
        r#"
[listen]
https = "127.0.0.1:8443"
admin = "127.0.0.1:9090"
public_origin = "https://localhost:8443"

[[tls.cert]]
hosts = ["localhost"]
cert = "server.pem"
key = "server-key.pem"

[roles]
operator = []
viewer = []

[[api_key]]
name = "ci"
sha256 = "abababababababababababababababababababababababababababababababab"
roles = ["operator"]

[[route]]
name = "jobs"
path = "/"
upstream = "http://127.0.0.1:9100"
roles = ["operator", "viewer"]
"#
    };
}

pub mod testing {
    /// The rate limits a policy gets when it sets none.
    pub fn rate_limits() -> crate::RateLimits {
        crate::parse(std::path::Path::new("defaults.toml"), LISTEN_AND_TLS)
            .map(|policy| policy.rate_limits)
            .unwrap_or_else(|e| panic!("the minimal policy must parse: {e}"))
    }

    /// `[listen]` and one `[[tls.cert]]`: the head every policy needs.
    pub const LISTEN_AND_TLS: &str = r#"
[listen]
https = "127.0.0.1:8443"
public_origin = "https://localhost:8443"
[[tls.cert]]
hosts = ["localhost"]
cert = "c.pem"
key = "k.pem"
"#;
}

fn syntax_hint(message: &str) -> &'static str {
    if message.contains("unknown field") {
        "check the spelling; policies/examples/ shows every key"
    } else if message.contains("missing field") {
        "this key is required"
    } else {
        "see policies/examples/ for the expected shape"
    }
}

#[cfg(test)]
mod tests;
