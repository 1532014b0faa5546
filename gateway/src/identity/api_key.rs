//! API keys: `gh_` + 32 random bytes, stored in the policy only as SHA-256.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::SystemTime;

use base64::Engine;
use gatehouse_policy::{ApiKey, IdentityKind};
use sha2::{Digest, Sha256};

use super::{IdentityError, Principal};

pub const API_KEY_PREFIX: &str = "gh_";

pub(super) struct ApiKeys {
    by_hash: HashMap<[u8; 32], ApiKey>,
}

impl ApiKeys {
    pub(super) fn new(keys: &[ApiKey]) -> Self {
        ApiKeys {
            by_hash: keys.iter().map(|k| (k.sha256, k.clone())).collect(),
        }
    }

    /// Looks the key up by its hash: the lookup never compares the secret
    /// itself, so its timing says nothing about the stored keys.
    pub(super) fn verify(&self, key: &str, client_ip: IpAddr) -> Result<Principal, IdentityError> {
        if !key.starts_with(API_KEY_PREFIX) {
            return Err(IdentityError::Malformed);
        }
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let entry = self.by_hash.get(&digest).ok_or(IdentityError::Unknown)?;
        if entry.expires.is_some_and(|at| SystemTime::now() >= at) {
            return Err(IdentityError::Expired);
        }
        if !entry.allow.is_empty() && !entry.allow.iter().any(|net| net.contains(&client_ip)) {
            return Err(IdentityError::AddressNotAllowed);
        }
        Ok(Principal::new(
            format!("api_key:{}", entry.name),
            None,
            entry.roles.clone(),
            IdentityKind::ApiKey,
            entry.name.clone(),
        ))
    }
}

/// A fresh key and the hex SHA-256 to put in the policy.
pub fn new_api_key() -> anyhow::Result<(String, String)> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    let key = format!(
        "{API_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    Ok((key, hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(key: &str, expires: Option<SystemTime>, allow: &[&str]) -> ApiKey {
        ApiKey {
            name: "ci".into(),
            sha256: Sha256::digest(key.as_bytes()).into(),
            roles: ["operator".into()].into(),
            allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
            expires,
        }
    }

    #[test]
    fn right_key_yields_its_roles() {
        let (key, _) = new_api_key().unwrap();
        let keys = ApiKeys::new(&[entry(&key, None, &[])]);
        let principal = keys.verify(&key, "10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(principal.subject, "api_key:ci");
        assert!(principal.roles.contains("operator"));
    }

    #[test]
    fn wrong_expired_and_out_of_range_keys_are_refused() {
        let (key, _) = new_api_key().unwrap();
        let (other, _) = new_api_key().unwrap();
        let ip = "10.0.0.1".parse().unwrap();
        assert_eq!(
            ApiKeys::new(&[entry(&key, None, &[])])
                .verify(&other, ip)
                .unwrap_err(),
            IdentityError::Unknown
        );
        let past = SystemTime::now() - Duration::from_secs(1);
        assert_eq!(
            ApiKeys::new(&[entry(&key, Some(past), &[])])
                .verify(&key, ip)
                .unwrap_err(),
            IdentityError::Expired
        );
        let keys = ApiKeys::new(&[entry(&key, None, &["192.168.0.0/16"])]);
        assert_eq!(
            keys.verify(&key, ip).unwrap_err(),
            IdentityError::AddressNotAllowed
        );
    }

    #[test]
    fn new_keys_are_distinct_and_hash_to_what_the_policy_stores() {
        let (a, hash_a) = new_api_key().unwrap();
        let (b, _) = new_api_key().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(API_KEY_PREFIX) && a.len() == 46);
        assert_eq!(hash_a, hex::encode(Sha256::digest(a.as_bytes())));
    }
}
