//! The signed `X-Gatehouse-Assertion` sent to upstreams: a short-lived
//! EdDSA JWT naming the caller, the request and (as audience) the route, so
//! an upstream such as the scheduler can prove a request came through us.
//! The public key is published as a JWKS. A route with its own
//! `assertion_key` gets HS256 assertions under that key instead
//! ([`AssertionMac`]): preparing the upstream request takes 2.2 µs instead
//! of 24.1 µs (bench/README.md), for an upstream that can hold a secret.
//!
//! Every assertion carries a random 128-bit `jti`, and the gateway signs a
//! new one for every proxied request, so an upstream can refuse any
//! assertion it has already accepted: one captured between the gateway and
//! the upstream (a plaintext hop, a log) is worth nothing afterwards.

use gatehouse_policy::RoleName;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::identity::Principal;

/// Where upstreams (and anyone) can fetch the gateway's public keys on the
/// public listener; the admin listener serves the same at `/jwks.json`.
pub const JWKS_PATH: &str = "/.well-known/gatehouse/jwks.json";

#[derive(Debug, thiserror::Error)]
pub enum AssertionKeyError {
    #[error("cannot read assertion key {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("assertion key {path} is not an Ed25519 PKCS#8 key")]
    NotEd25519 { path: String },
    #[error("no randomness to generate an assertion key")]
    NoRandomness,
}

/// Signs assertions as compact JWS (RFC 7515) with ring directly:
/// jsonwebtoken's `encode` re-derives the key pair from its PKCS#8 bytes on
/// every call, which doubled the cost of each signature. The key pair is
/// derived once here; the header, which never changes, is encoded once.
pub struct AssertionSigner {
    pair: Ed25519KeyPair,
    /// `base64url({"alg":"EdDSA","typ":"JWT","kid":...})`.
    encoded_header: String,
    jwks: String,
    issuer: String,
    lifetime: Duration,
    random: SystemRandom,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    roles: Vec<&'a str>,
    auth: &'a str,
    method: &'a str,
    path: &'a str,
}

impl AssertionSigner {
    /// Signs with the Ed25519 PKCS#8 PEM `key_file`, or a key generated
    /// now. The JWKS publishes its public key and those of `publish`
    /// (rotation: the next key before, the previous one after).
    pub fn new(
        key_file: Option<&Path>,
        publish: &[PathBuf],
        issuer: &str,
        lifetime: Duration,
    ) -> Result<Self, AssertionKeyError> {
        let pkcs8 = match key_file {
            Some(path) => read_pkcs8(path)?,
            None => Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| AssertionKeyError::NoRandomness)?
                .as_ref()
                .to_vec(),
        };
        let pair = key_pair(&pkcs8, key_file)?;
        let kid = key_id(pair.public_key().as_ref());
        let mut kids = vec![kid.clone()];
        let mut keys = vec![jwk(pair.public_key().as_ref(), &kid)];
        for path in publish {
            let other = key_pair(&read_pkcs8(path)?, Some(path))?;
            let public = other.public_key().as_ref();
            let other_kid = key_id(public);
            if !kids.contains(&other_kid) {
                keys.push(jwk(public, &other_kid));
                kids.push(other_kid);
            }
        }
        let jwks = serde_json::json!({ "keys": keys }).to_string();
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
        Ok(AssertionSigner {
            encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
            pair,
            jwks,
            issuer: issuer.to_owned(),
            lifetime,
            random: SystemRandom::new(),
        })
    }

    /// The JWKS document: the signing key first, then the published ones.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// An assertion for `principal`'s request of `method` to `path` through
    /// `route`: EdDSA under the gateway's key, or HS256 under `mac`, the
    /// route's own key.
    pub fn sign(
        &self,
        principal: &Principal,
        route: &str,
        mac: Option<&AssertionMac>,
        method: &str,
        path: &str,
    ) -> Option<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        // No randomness, no assertion: a predictable jti would let a
        // replay through, so the request fails instead.
        let mut id = [0u8; 16];
        self.random.fill(&mut id).ok()?;
        let jti = URL_SAFE_NO_PAD.encode(id);
        let claims = AssertionClaims {
            iss: &self.issuer,
            sub: &principal.subject,
            aud: route,
            iat: now,
            exp: now + self.lifetime.as_secs(),
            jti: &jti,
            email: principal.email.as_deref(),
            roles: principal.roles.iter().map(RoleName::as_str).collect(),
            auth: principal.kind.as_str(),
            method,
            path,
        };
        let payload = serde_json::to_vec(&claims).ok()?;
        // header.payload.signature, each part base64url without padding;
        // the signature covers the first two parts as written.
        let header = mac.map_or(&self.encoded_header, |m| &m.encoded_header);
        let mut token = String::with_capacity(header.len() + payload.len() * 2 + 90);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        match mac {
            None => {
                let signature = self.pair.sign(token.as_bytes());
                token.push('.');
                URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
            }
            Some(mac) => {
                let tag = hmac::sign(&mac.key, token.as_bytes());
                token.push('.');
                URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
            }
        }
        Some(token)
    }
}

/// One route's HS256 key, and the header naming it: `kid` is the route's
/// name, so an upstream with several routes' keys knows which to check.
pub struct AssertionMac {
    key: hmac::Key,
    /// `base64url({"alg":"HS256","typ":"JWT","kid":ROUTE})`.
    encoded_header: String,
}

impl AssertionMac {
    pub fn new(route: &str, key: &[u8]) -> Self {
        let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": route});
        AssertionMac {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
        }
    }
}

fn read_pkcs8(path: &Path) -> Result<Vec<u8>, AssertionKeyError> {
    let der = PrivateKeyDer::from_pem_file(path).map_err(|e| AssertionKeyError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(der.secret_der().to_vec())
}

fn key_pair(pkcs8: &[u8], path: Option<&Path>) -> Result<Ed25519KeyPair, AssertionKeyError> {
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| AssertionKeyError::NotEd25519 {
        path: path.map(|p| p.display().to_string()).unwrap_or_default(),
    })
}

/// The key id: the first 8 bytes of the public key's SHA-256, in hex.
fn key_id(public: &[u8]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

fn jwk(public: &[u8], kid: &str) -> serde_json::Value {
    serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(public),
        "kid": kid, "alg": "EdDSA", "use": "sig"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    #[test]
    fn assertion_verifies_with_the_published_jwks() {
        let signer =
            AssertionSigner::new(None, &[], "https://gw.test", Duration::from_secs(60)).unwrap();
        let principal = Principal::hypothetical(
            ["viewer".into()].into(),
            gatehouse_policy::IdentityKind::ApiKey,
        );
        let token = signer
            .sign(&principal, "jobs", None, "GET", "/jobs/1")
            .unwrap();

        let jwks: JwkSet = serde_json::from_str(signer.jwks()).unwrap();
        let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["jobs"]);
        validation.set_issuer(&["https://gw.test"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
        // Upstreams pick the key by the header's kid.
        assert_eq!(data.header.kid, jwks.keys[0].common.key_id);
        assert_eq!(data.header.alg, Algorithm::EdDSA);
        assert_eq!(data.claims["roles"], serde_json::json!(["viewer"]));
        assert_eq!(data.claims["path"], "/jobs/1");

        let mut wrong_audience = validation.clone();
        wrong_audience.set_audience(&["other-route"]);
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &key, &wrong_audience).is_err());
    }

    #[test]
    fn every_assertion_carries_a_fresh_128_bit_jti() {
        let signer =
            AssertionSigner::new(None, &[], "https://gw.test", Duration::from_secs(60)).unwrap();
        let principal = Principal::hypothetical(
            ["viewer".into()].into(),
            gatehouse_policy::IdentityKind::ApiKey,
        );
        let jwks: JwkSet = serde_json::from_str(signer.jwks()).unwrap();
        let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["jobs"]);
        let jti = |token: String| {
            let data =
                jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
            data.claims["jti"].as_str().unwrap().to_owned()
        };
        // The same request, signed twice: two different assertions.
        let first = jti(signer
            .sign(&principal, "jobs", None, "GET", "/jobs/1")
            .unwrap());
        let second = jti(signer
            .sign(&principal, "jobs", None, "GET", "/jobs/1")
            .unwrap());
        assert_ne!(first, second);
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&first)
            .unwrap();
        assert_eq!(bytes.len(), 16, "{first}");
    }

    /// A keyed route's assertions are HS256 under its key, name the route
    /// as their key id, and carry the same claims; the gateway's key does
    /// not verify them, nor does another route's.
    #[test]
    fn a_keyed_route_gets_hs256_under_its_own_key() {
        let signer =
            AssertionSigner::new(None, &[], "https://gw.test", Duration::from_secs(60)).unwrap();
        let principal = Principal::hypothetical(
            ["viewer".into()].into(),
            gatehouse_policy::IdentityKind::ApiKey,
        );
        let secret = [7u8; 32];
        let mac = AssertionMac::new("jobs", &secret);
        let token = signer
            .sign(&principal, "jobs", Some(&mac), "POST", "/jobs/1/run")
            .unwrap();

        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&["jobs"]);
        validation.set_issuer(&["https://gw.test"]);
        let key = DecodingKey::from_secret(&secret);
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
        assert_eq!(data.header.alg, Algorithm::HS256);
        assert_eq!(data.header.kid.as_deref(), Some("jobs"));
        assert_eq!(data.claims["method"], "POST");
        assert_eq!(data.claims["path"], "/jobs/1/run");
        assert_eq!(data.claims["roles"], serde_json::json!(["viewer"]));
        assert_eq!(data.claims["jti"].as_str().unwrap().len(), 22);

        let other_key = DecodingKey::from_secret(&[8u8; 32]);
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&token, &other_key, &validation).is_err()
        );
        let jwks: JwkSet = serde_json::from_str(signer.jwks()).unwrap();
        let gateway_key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
        let mut eddsa = validation.clone();
        eddsa.algorithms = vec![Algorithm::EdDSA];
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &gateway_key, &eddsa).is_err());
    }

    fn key_file(dir: &Path, name: &str) -> PathBuf {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, key.serialize_pem()).unwrap();
        path
    }

    fn kids(signer: &AssertionSigner) -> Vec<String> {
        let jwks: JwkSet = serde_json::from_str(signer.jwks()).unwrap();
        jwks.keys
            .iter()
            .map(|k| k.common.key_id.clone().unwrap())
            .collect()
    }

    /// Mid-rotation, replicas sign with different keys but publish the same
    /// set, so an upstream that fetched the JWKS from one replica verifies
    /// what another signed.
    #[test]
    fn replicas_mid_rotation_publish_both_keys_and_verify_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let old = key_file(dir.path(), "old.pem");
        let new = key_file(dir.path(), "new.pem");
        let lifetime = Duration::from_secs(60);
        let not_yet = AssertionSigner::new(
            Some(&old),
            std::slice::from_ref(&new),
            "https://gw.test",
            lifetime,
        )
        .unwrap();
        let rotated = AssertionSigner::new(
            Some(&new),
            std::slice::from_ref(&old),
            "https://gw.test",
            lifetime,
        )
        .unwrap();
        let (a, b) = (kids(&not_yet), kids(&rotated));
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].as_str(), a[1].as_str()),
            (b[1].as_str(), b[0].as_str())
        );

        let principal = Principal::hypothetical(
            ["viewer".into()].into(),
            gatehouse_policy::IdentityKind::ApiKey,
        );
        let token = rotated
            .sign(&principal, "jobs", None, "GET", "/jobs/1")
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(
            header.kid.as_deref(),
            Some(b[0].as_str()),
            "signed with the new key"
        );
        let jwks: JwkSet = serde_json::from_str(not_yet.jwks()).unwrap();
        let key = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("published by the other replica");
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["jobs"]);
        let key = DecodingKey::from_jwk(key).unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).is_ok());
    }

    #[test]
    fn a_published_key_is_listed_once_and_must_be_ed25519() {
        let dir = tempfile::tempdir().unwrap();
        let current = key_file(dir.path(), "current.pem");
        let lifetime = Duration::from_secs(60);
        let signer = AssertionSigner::new(
            Some(&current),
            std::slice::from_ref(&current),
            "https://gw.test",
            lifetime,
        )
        .unwrap();
        assert_eq!(kids(&signer).len(), 1);

        let p256 = dir.path().join("p256.pem");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        std::fs::write(&p256, key.serialize_pem()).unwrap();
        let refused = AssertionSigner::new(
            Some(&current),
            std::slice::from_ref(&p256),
            "https://gw.test",
            lifetime,
        )
        .err()
        .expect("refused");
        assert!(
            matches!(&refused, AssertionKeyError::NotEd25519 { path } if path == &p256.display().to_string()),
            "{refused}"
        );
    }
}
