//! Basic auth against argon2id or bcrypt hashes. Verification runs on the
//! blocking pool (it is deliberately slow), unknown users cost the same as
//! known ones, and every failure waits a little before answering.

use std::collections::HashMap;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use gatehouse_policy::{BasicUser, IdentityKind};

use super::{IdentityError, Principal};

/// Delay added to every failed login, to slow online guessing.
const FAILURE_DELAY: Duration = Duration::from_millis(300);

/// A valid argon2id hash of a random password, verified for unknown users
/// so their timing matches known ones.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bm90LWEtcmVhbC1zYWx0$2Yw3yKXH3X3nCVlXJ0Hq3PjY8dHkB2a3iKeE2sVf3nE";

pub(super) struct BasicUsers {
    users: HashMap<String, BasicUser>,
}

impl BasicUsers {
    pub(super) fn new(users: &[BasicUser]) -> Self {
        BasicUsers {
            users: users.iter().map(|u| (u.name.clone(), u.clone())).collect(),
        }
    }

    pub(super) async fn verify(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Principal, IdentityError> {
        let entry = self.users.get(user).cloned();
        let hash = entry
            .as_ref()
            .map(|e| e.password_hash.clone())
            .unwrap_or_else(|| DUMMY_HASH.to_owned());
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || password_matches(&hash, &password))
            .await
            .unwrap_or(false);
        match entry {
            Some(entry) if matches => Ok(Principal::new(
                entry.name.clone(),
                None,
                entry.roles.clone(),
                IdentityKind::Basic,
                entry.name,
            )),
            Some(_) => {
                tokio::time::sleep(FAILURE_DELAY).await;
                Err(IdentityError::WrongPassword)
            }
            None => {
                tokio::time::sleep(FAILURE_DELAY).await;
                Err(IdentityError::Unknown)
            }
        }
    }
}

/// Constant-time comparison is inside both libraries' verify functions.
fn password_matches(hash: &str, password: &str) -> bool {
    if hash.starts_with("$argon2") {
        PasswordHash::new(hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    } else {
        bcrypt::verify(password, hash).unwrap_or(false)
    }
}

/// An argon2id hash (OWASP parameters: 19 MiB, 2 passes) with a fresh salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(hash: String) -> BasicUsers {
        BasicUsers::new(&[BasicUser {
            name: "alice".into(),
            password_hash: hash,
            roles: ["admin".to_owned()].into(),
        }])
    }

    #[tokio::test]
    async fn argon2id_password_is_checked() {
        let users = users(hash_password("correct horse").unwrap());
        assert!(users.verify("alice", "correct horse").await.is_ok());
        assert_eq!(
            users.verify("alice", "wrong").await.unwrap_err(),
            IdentityError::WrongPassword
        );
        assert_eq!(
            users.verify("bob", "correct horse").await.unwrap_err(),
            IdentityError::Unknown
        );
    }

    #[tokio::test]
    async fn bcrypt_password_is_checked() {
        let users = users(bcrypt::hash("hunter2", 12).unwrap());
        assert!(users.verify("alice", "hunter2").await.is_ok());
        assert!(users.verify("alice", "hunter3").await.is_err());
    }

    #[test]
    fn dummy_hash_parses_so_unknown_users_cost_a_real_verification() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
