//! Who is calling: every API request must carry the gateway's signed
//! `X-Gatehouse-Assertion` (an EdDSA JWT), verified against the key the
//! gateway publishes. Without one the answer is 401, even from localhost:
//! being able to reach the port proves nothing.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

pub const ASSERTION_HEADER: &str = "x-gatehouse-assertion";

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub email: Option<String>,
    pub roles: BTreeSet<String>,
    /// How the gateway identified them: oidc, jwt, api_key or basic.
    pub auth: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no gateway assertion")]
    Missing,
    #[error("the gateway's keys are not loaded yet")]
    KeysUnavailable,
    #[error("the assertion is not valid")]
    Invalid,
    #[error("the assertion was issued for another request")]
    WrongRequest,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    auth: String,
    method: String,
    path: String,
}

/// Checks assertions; the key set is refreshed in the background.
pub struct Verifier {
    keys: RwLock<Option<Arc<JwkSet>>>,
    validation: Validation,
}

impl Verifier {
    pub fn new(issuer: &str, audiences: &[String]) -> Verifier {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // The gateway and the scheduler share a host or a network; a few
        // seconds cover clock steps between containers.
        validation.leeway = 5;
        Verifier {
            keys: RwLock::new(None),
            validation,
        }
    }

    pub fn set_keys(&self, keys: JwkSet) {
        if let Ok(mut slot) = self.keys.write() {
            *slot = Some(Arc::new(keys));
        }
    }

    pub fn has_keys(&self) -> bool {
        self.keys.read().map(|k| k.is_some()).unwrap_or(false)
    }

    /// Verifies `token` for a request of `method` to `path` (the path as
    /// received, without the query). An assertion is bound to the request
    /// it was issued for, so one captured for a GET cannot start a run.
    pub fn verify(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
    ) -> Result<Caller, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let keys = self
            .keys
            .read()
            .ok()
            .and_then(|k| k.clone())
            .ok_or(AuthError::KeysUnavailable)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid);
        }
        let jwk = match &header.kid {
            Some(kid) => keys.find(kid),
            None => keys.keys.first(),
        }
        .ok_or(AuthError::Invalid)?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| AuthError::Invalid)?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(|_| AuthError::Invalid)?;
        let claims = data.claims;
        let asserted_path = claims.path.split('?').next().unwrap_or_default();
        if !claims.method.eq_ignore_ascii_case(method) || asserted_path != path {
            return Err(AuthError::WrongRequest);
        }
        Ok(Caller {
            subject: claims.sub,
            email: claims.email,
            roles: claims.roles.into_iter().collect(),
            auth: claims.auth,
        })
    }
}

/// Fetches the gateway's JWKS until it succeeds, then refreshes it every
/// `refresh`, so a gateway key rotation reaches the scheduler.
pub async fn keep_keys_fresh(verifier: Arc<Verifier>, url: url::Url, refresh: Duration) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client for the gateway's keys");
            return;
        }
    };
    let mut delay = Duration::from_millis(200);
    loop {
        match fetch(&client, &url).await {
            Ok(keys) => {
                let first = !verifier.has_keys();
                verifier.set_keys(keys);
                if first {
                    tracing::info!(%url, "loaded the gateway's assertion keys");
                }
                delay = Duration::from_millis(200);
                tokio::time::sleep(refresh).await;
            }
            Err(e) => {
                tracing::warn!(%url, error = %e, retry_in = ?delay, "cannot fetch the gateway's assertion keys");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn fetch(client: &reqwest::Client, url: &url::Url) -> anyhow::Result<JwkSet> {
    let response = client.get(url.clone()).send().await?.error_for_status()?;
    let keys: JwkSet = response.json().await?;
    anyhow::ensure!(!keys.keys.is_empty(), "the key set is empty");
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    // A fixed Ed25519 key (PKCS#8) for signing test assertions.
    fn signing_pair() -> (EncodingKey, JwkSet) {
        let pkcs8 = ring_free_test_key();
        let key = EncodingKey::from_ed_der(&pkcs8.0);
        let jwks: JwkSet = serde_json::from_value(serde_json::json!({
            "keys": [{"kty": "OKP", "crv": "Ed25519", "x": pkcs8.1, "kid": "k1", "alg": "EdDSA", "use": "sig"}]
        }))
        .expect("jwks");
        (key, jwks)
    }

    /// RFC 8032 test vector 1, as PKCS#8 DER and the JWK `x`.
    fn ring_free_test_key() -> (Vec<u8>, &'static str) {
        let seed = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ];
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        (der, "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
    }

    fn token(key: &EncodingKey, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, key).expect("sign")
    }

    fn claims(method: &str, path: &str, aud: &str, exp_in: i64) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({
            "iss": "https://gw.test", "sub": "alice", "aud": aud, "iat": now, "exp": now + exp_in,
            "roles": ["operator"], "auth": "oidc", "method": method, "path": path
        })
    }

    fn verifier() -> (EncodingKey, Verifier) {
        let (key, jwks) = signing_pair();
        let v = Verifier::new("https://gw.test", &["jobs".to_owned()]);
        v.set_keys(jwks);
        (key, v)
    }

    #[test]
    fn a_gateway_assertion_names_the_caller() {
        let (key, v) = verifier();
        let t = token(&key, claims("POST", "/api/jobs/a/run", "jobs", 60));
        let caller = v
            .verify(Some(&t), "POST", "/api/jobs/a/run")
            .expect("valid");
        assert_eq!(caller.subject, "alice");
        assert!(caller.roles.contains("operator"));
    }

    #[test]
    fn assertions_are_refused_when_missing_expired_foreign_or_for_another_request() {
        let (key, v) = verifier();
        assert_eq!(v.verify(None, "GET", "/api/jobs"), Err(AuthError::Missing));
        let expired = token(&key, claims("GET", "/api/jobs", "jobs", -60));
        assert_eq!(
            v.verify(Some(&expired), "GET", "/api/jobs"),
            Err(AuthError::Invalid)
        );
        let other_route = token(&key, claims("GET", "/api/jobs", "app", 60));
        assert_eq!(
            v.verify(Some(&other_route), "GET", "/api/jobs"),
            Err(AuthError::Invalid)
        );
        let get = token(&key, claims("GET", "/api/jobs/a", "jobs", 60));
        assert_eq!(
            v.verify(Some(&get), "POST", "/api/jobs/a/run"),
            Err(AuthError::WrongRequest)
        );
        let mut tampered = token(&key, claims("GET", "/api/jobs", "jobs", 60));
        tampered.insert(tampered.len() - 3, 'A');
        assert!(v.verify(Some(&tampered), "GET", "/api/jobs").is_err());
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("GET", "/api/jobs", "jobs", 60),
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .expect("hs");
        assert_eq!(
            v.verify(Some(&hs), "GET", "/api/jobs"),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn nothing_verifies_before_the_keys_are_loaded() {
        let (key, _) = verifier();
        let v = Verifier::new("https://gw.test", &["jobs".to_owned()]);
        let t = token(&key, claims("GET", "/api/jobs", "jobs", 60));
        assert_eq!(
            v.verify(Some(&t), "GET", "/api/jobs"),
            Err(AuthError::KeysUnavailable)
        );
    }
}
