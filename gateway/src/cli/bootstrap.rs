//! `gatehouse-gateway bootstrap`: the first start of a deployment.
//!
//! Creates, only where absent, the secrets a fresh stack needs before
//! anyone can log in: an admin password, of which only the argon2id hash is
//! stored (`[[basic_user]] password_hash_file`), a session sealing key
//! (`[session] keys_file`) and the Ed25519 key assertions to upstreams are
//! signed with (`[assertion] key_file`), kept so that a gateway restart
//! keeps its key and upstreams such as the scheduler keep verifying. The
//! password exists in plain text only in the returned [`Created`] value,
//! for the caller to show once.
//!
//! Every file is written to a temporary name first and then hard-linked into
//! place: a link never replaces an existing file, so two concurrent runs
//! cannot both win, and a crash mid-write never leaves a half-written secret
//! under the name the policy reads.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

use crate::identity;

/// The argon2id hash of the admin password, for `password_hash_file`.
pub const PASSWORD_HASH_FILE: &str = "admin-password.hash";
/// The session sealing key, for `[session] keys_file`.
pub const SESSION_KEY_FILE: &str = "session.key";
/// The assertion signing key (Ed25519, PKCS#8 PEM), for `[assertion] key_file`.
pub const ASSERTION_KEY_FILE: &str = "assertion.key";

/// Random bytes in a generated password: 192 bits, 32 base64url characters.
const PASSWORD_BYTES: usize = 24;
/// Random bytes in a session key (written hex-encoded: 64 characters, more
/// than the policy's 32-byte minimum).
const SESSION_KEY_BYTES: usize = 32;

/// What a bootstrap run did.
#[derive(Debug, Default)]
pub struct Created {
    /// The new admin password, when its hash was created by this run.
    pub password: Option<String>,
    /// Files this run created (full paths).
    pub files: Vec<PathBuf>,
}

/// Creates `dir` (0700) and whichever of its files are missing (0600).
/// Existing files are never read or changed.
pub fn bootstrap(dir: &Path) -> Result<Created> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    // A pre-existing directory (a fresh Docker volume is 0755) is narrowed:
    // nobody else may list or read the secrets in it.
    let mode = fs::metadata(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 700 {}", dir.display()))?;
    }

    let mut created = Created::default();
    let hash_path = dir.join(PASSWORD_HASH_FILE);
    if !hash_path.exists() {
        let password =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(PASSWORD_BYTES)?);
        let hash = identity::hash_password(&password)?;
        if write_new_private(&hash_path, format!("{hash}\n").as_bytes())? {
            created.password = Some(password);
            created.files.push(hash_path);
        }
    }
    let key_path = dir.join(SESSION_KEY_FILE);
    if !key_path.exists() {
        let key = hex::encode(random_bytes(SESSION_KEY_BYTES)?);
        if write_new_private(&key_path, format!("{key}\n").as_bytes())? {
            created.files.push(key_path);
        }
    }
    let assertion_path = dir.join(ASSERTION_KEY_FILE);
    if !assertion_path.exists() && write_new_assertion_key(&assertion_path)? {
        created.files.push(assertion_path);
    }
    Ok(created)
}

/// A new Ed25519 assertion key at `path` (PKCS#8 PEM, 0600), for a key
/// rotation; an existing file is never overwritten.
pub fn new_assertion_key(path: &Path) -> Result<()> {
    if !write_new_assertion_key(path)? {
        anyhow::bail!("{} exists; it was left as it is", path.display());
    }
    Ok(())
}

/// Generates an Ed25519 key and writes it to `path` unless a file is
/// there already (then false).
fn write_new_assertion_key(path: &Path) -> Result<bool> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .context("generating the assertion key")?;
    write_new_private(path, key.serialize_pem().as_bytes())
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    Ok(bytes)
}

/// Writes `contents` to `path` with mode 0600 unless `path` exists.
/// Returns false when another writer got there first.
fn write_new_private(path: &Path, contents: &[u8]) -> Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("creating {}", temp.display()))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", temp.display()))?;
        match fs::hard_link(&temp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
        }
    })();
    let _ = fs::remove_file(&temp);
    let linked = result?;
    // Make the new directory entry durable too.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(linked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn first_run_creates_a_hash_that_verifies_and_a_key() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("bootstrap");
        let created = bootstrap(&dir).unwrap();
        let password = created.password.expect("a new password");
        assert_eq!(password.len(), 32);
        assert_eq!(created.files.len(), 3);

        let hash = fs::read_to_string(dir.join(PASSWORD_HASH_FILE)).unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains(&password));
        let parsed = argon2::PasswordHash::new(hash.trim()).unwrap();
        argon2::PasswordVerifier::verify_password(
            &argon2::Argon2::default(),
            password.as_bytes(),
            &parsed,
        )
        .expect("the stored hash verifies the printed password");

        let key = fs::read_to_string(dir.join(SESSION_KEY_FILE)).unwrap();
        assert_eq!(key.trim().len(), 64);
        assert!(hex::decode(key.trim()).is_ok());

        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(PASSWORD_HASH_FILE)), 0o600);
        assert_eq!(mode(&dir.join(SESSION_KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.join(ASSERTION_KEY_FILE)), 0o600);
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 3);
    }

    #[test]
    fn second_run_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        bootstrap(dir.path()).unwrap();
        let hash = fs::read(dir.path().join(PASSWORD_HASH_FILE)).unwrap();
        let key = fs::read(dir.path().join(SESSION_KEY_FILE)).unwrap();
        let signing = fs::read(dir.path().join(ASSERTION_KEY_FILE)).unwrap();

        let again = bootstrap(dir.path()).unwrap();
        assert!(again.password.is_none());
        assert!(again.files.is_empty());
        assert_eq!(fs::read(dir.path().join(PASSWORD_HASH_FILE)).unwrap(), hash);
        assert_eq!(fs::read(dir.path().join(SESSION_KEY_FILE)).unwrap(), key);
        assert_eq!(
            fs::read(dir.path().join(ASSERTION_KEY_FILE)).unwrap(),
            signing
        );
    }

    /// What keeps the scheduler verifying across a gateway restart: two
    /// gateways reading the bootstrap key publish the same key set.
    #[test]
    fn the_assertion_key_loads_and_keeps_the_published_key_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        bootstrap(dir.path()).unwrap();
        let path = dir.path().join(ASSERTION_KEY_FILE);
        let lifetime = std::time::Duration::from_secs(60);
        let first = crate::identity::assertion::AssertionSigner::new(
            Some(&path),
            &[],
            "https://gw.test",
            lifetime,
        )
        .expect("the bootstrap key is an Ed25519 PKCS#8 key");
        let second = crate::identity::assertion::AssertionSigner::new(
            Some(&path),
            &[],
            "https://gw.test",
            lifetime,
        )
        .unwrap();
        assert_eq!(first.jwks(), second.jwks());
        let generated = crate::identity::assertion::AssertionSigner::new(
            None,
            &[],
            "https://gw.test",
            lifetime,
        )
        .unwrap();
        assert_ne!(first.jwks(), generated.jwks());
    }

    #[test]
    fn open_directory_is_narrowed_and_a_missing_file_alone_is_added() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.path().join(SESSION_KEY_FILE), "kept\n").unwrap();

        let created = bootstrap(dir.path()).unwrap();
        assert!(created.password.is_some());
        assert_eq!(
            created.files,
            vec![
                dir.path().join(PASSWORD_HASH_FILE),
                dir.path().join(ASSERTION_KEY_FILE)
            ]
        );
        assert_eq!(
            fs::read_to_string(dir.path().join(SESSION_KEY_FILE)).unwrap(),
            "kept\n"
        );
        assert_eq!(mode(dir.path()), 0o700);
    }

    #[test]
    fn an_existing_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        fs::write(&path, "first").unwrap();
        assert!(!write_new_private(&path, b"second").unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "first");
    }
}
