//! Secrets the policy refers to without holding them in plain text.
//!
//! A secret key `foo` may be written three ways:
//! - `foo = "${FOO}"`: the whole value names an environment variable;
//! - `foo_file = "/run/secrets/foo"`: read from a file (trailing newline trimmed);
//! - `foo = "literal"`: inline, for tests and local development only.
//!
//! Exactly one of `foo` and `foo_file` may be present.

use std::fmt;
use std::path::Path;

/// Secret bytes. `Debug` and `Display` never show them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("set either `{key}` or `{key}_file`, not both")]
    BothGiven { key: String },
    #[error("environment variable `{var}` is not set")]
    MissingEnv { var: String },
    #[error("cannot read secret file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the secret is empty")]
    Empty,
}

/// Where a secret comes from, before it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource<'a> {
    Inline(&'a str),
    Env(&'a str),
    File(&'a Path),
}

impl<'a> SecretSource<'a> {
    /// Chooses the source from the pair of keys `foo` and `foo_file`.
    pub fn from_keys(
        key: &str,
        value: Option<&'a str>,
        file: Option<&'a Path>,
    ) -> Result<Option<Self>, SecretError> {
        match (value, file) {
            (Some(_), Some(_)) => Err(SecretError::BothGiven {
                key: key.to_owned(),
            }),
            (None, None) => Ok(None),
            (None, Some(path)) => Ok(Some(SecretSource::File(path))),
            (Some(value), None) => Ok(Some(
                match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                    Some(var) => SecretSource::Env(var),
                    None => SecretSource::Inline(value),
                },
            )),
        }
    }

    /// Reads the secret. `env` is passed in so tests need not touch the
    /// process environment.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Secret, SecretError> {
        let bytes: Vec<u8> = match self {
            SecretSource::Inline(v) => v.as_bytes().to_vec(),
            SecretSource::Env(var) => env(var)
                .ok_or_else(|| SecretError::MissingEnv {
                    var: (*var).to_owned(),
                })?
                .into_bytes(),
            SecretSource::File(path) => {
                let mut bytes = std::fs::read(path).map_err(|e| SecretError::Unreadable {
                    path: path.display().to_string(),
                    reason: e.kind().to_string(),
                })?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                bytes
            }
        };
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret(bytes.into_boxed_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = SecretSource::Inline("hunter2").resolve(no_env).unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), b"hunter2");
    }

    #[test]
    fn env_reference_reads_the_variable() {
        let source = SecretSource::from_keys("k", Some("${SESSION_KEY}"), None)
            .unwrap()
            .unwrap();
        assert_eq!(source, SecretSource::Env("SESSION_KEY"));
        let secret = source
            .resolve(|v| (v == "SESSION_KEY").then(|| "abc".to_owned()))
            .unwrap();
        assert_eq!(secret.expose(), b"abc");
    }

    #[test]
    fn missing_env_variable_is_an_error() {
        let err = SecretSource::Env("NOPE").resolve(no_env).unwrap_err();
        assert_eq!(err, SecretError::MissingEnv { var: "NOPE".into() });
    }

    #[test]
    fn file_reference_trims_the_trailing_newline() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "s3cret").unwrap();
        let secret = SecretSource::File(file.path()).resolve(no_env).unwrap();
        assert_eq!(secret.expose(), b"s3cret");
    }

    #[test]
    fn both_value_and_file_is_an_error() {
        let err = SecretSource::from_keys("k", Some("x"), Some(Path::new("/f"))).unwrap_err();
        assert_eq!(err, SecretError::BothGiven { key: "k".into() });
    }

    #[test]
    fn empty_secret_is_an_error() {
        assert_eq!(
            SecretSource::Inline("").resolve(no_env).unwrap_err(),
            SecretError::Empty
        );
    }
}
