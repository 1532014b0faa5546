//! JWT bearer tokens from the issuers the policy names.
//!
//! The issuer is chosen by the token's (unverified) `iss`, then everything
//! is checked against that issuer's own settings: its algorithm allowlist
//! (never `none`; the key's type must fit the algorithm), its keys, its
//! audiences, `exp` and `nbf` with its leeway. Keys come only from the
//! policy: header fields that point elsewhere (`jku`, `x5u`, `jwk`, `x5c`)
//! are never followed, and a token that marks an extension as critical
//! (`crit`) is refused, since the gateway implements none (RFC 7515
//! §4.1.11).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use gatehouse_policy::{IdentityKind, JwtAlgorithm, JwtIssuer, JwtKeys};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::Digest;

use super::claims::roles_from;
use super::{IdentityError, Principal};

const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("cannot load JWT public key {path}: {reason}")]
pub struct KeyLoadError {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFamily {
    Rsa,
    Ec,
    Ed,
    Hmac,
}

fn family(alg: Algorithm) -> KeyFamily {
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => KeyFamily::Rsa,
        Algorithm::ES256 | Algorithm::ES384 => KeyFamily::Ec,
        Algorithm::EdDSA => KeyFamily::Ed,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => KeyFamily::Hmac,
    }
}

fn algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Rs384 => Algorithm::RS384,
        JwtAlgorithm::Rs512 => Algorithm::RS512,
        JwtAlgorithm::Ps256 => Algorithm::PS256,
        JwtAlgorithm::Es256 => Algorithm::ES256,
        JwtAlgorithm::Es384 => Algorithm::ES384,
        JwtAlgorithm::EdDsa => Algorithm::EdDSA,
        JwtAlgorithm::Hs256 => Algorithm::HS256,
    }
}

enum Keys {
    Static(Vec<(KeyFamily, DecodingKey)>),
    Jwks { url: String, cooldown: Duration },
}

struct Issuer {
    config: JwtIssuer,
    algorithms: Vec<Algorithm>,
    keys: Keys,
}

pub(super) struct JwtVerifier {
    issuers: HashMap<String, Issuer>,
    jwks: Arc<JwksCache>,
    /// Tokens already verified, by SHA-256 of the token, until their `exp`.
    /// A token is immutable and its checks only depend on time and on this
    /// policy (a reload builds a new, empty cache), so this is safe.
    verified: std::sync::Mutex<HashMap<[u8; 32], (Principal, u64)>>,
}

/// Bound on cached verified tokens; past it the cache starts over.
const VERIFIED_CACHE_ENTRIES: usize = 10_000;

impl JwtVerifier {
    pub(super) fn new(configs: &[JwtIssuer], jwks: Arc<JwksCache>) -> Result<Self, KeyLoadError> {
        let mut issuers = HashMap::new();
        for config in configs {
            let keys = match &config.keys {
                JwtKeys::Hs256 { secret } => Keys::Static(vec![(
                    KeyFamily::Hmac,
                    DecodingKey::from_secret(secret.expose()),
                )]),
                JwtKeys::Static { files } => Keys::Static(
                    files
                        .iter()
                        .map(load_public_key)
                        .collect::<Result<_, _>>()?,
                ),
                JwtKeys::Jwks {
                    url,
                    refetch_cooldown,
                } => Keys::Jwks {
                    url: url.clone(),
                    cooldown: *refetch_cooldown,
                },
            };
            issuers.insert(
                config.issuer.clone(),
                Issuer {
                    algorithms: config.algorithms.iter().map(|a| algorithm(*a)).collect(),
                    config: config.clone(),
                    keys,
                },
            );
        }
        Ok(JwtVerifier {
            issuers,
            jwks,
            verified: std::sync::Mutex::new(HashMap::new()),
        })
    }

    pub(super) async fn verify(&self, token: &str) -> Result<Principal, IdentityError> {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = super::session::unix_now();
        if let Some((principal, exp)) = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&digest)
        {
            if *exp > now {
                return Ok(principal.clone());
            }
        }
        let (principal, exp) = self.verify_uncached(token).await?;
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_CACHE_ENTRIES {
            cache.retain(|_, (_, e)| *e > now);
            if cache.len() >= VERIFIED_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(digest, (principal.clone(), exp));
        Ok(principal)
    }

    async fn verify_uncached(&self, token: &str) -> Result<(Principal, u64), IdentityError> {
        let header = TokenHeader::parse(token)?;
        let issuer_name = unverified_issuer(token)?;
        let issuer = self
            .issuers
            .get(&issuer_name)
            .ok_or(IdentityError::Unknown)?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(IdentityError::Invalid);
        }
        let want = family(header.alg);
        let candidates: Vec<DecodingKey> = match &issuer.keys {
            Keys::Static(keys) => keys
                .iter()
                .filter(|(f, _)| *f == want)
                .map(|(_, k)| k.clone())
                .collect(),
            Keys::Jwks { url, cooldown } => {
                self.jwks
                    .keys_for(url, header.kid.as_deref(), want, *cooldown)
                    .await?
            }
        };
        if candidates.is_empty() {
            return Err(IdentityError::Unknown);
        }

        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[issuer.config.issuer.as_str()]);
        validation.set_audience(&issuer.config.audiences.iter().collect::<Vec<_>>());
        validation.leeway = issuer.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);

        let mut last = IdentityError::Invalid;
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token, &key, &validation) {
                Ok(data) => {
                    let exp = data
                        .claims
                        .get("exp")
                        .and_then(Value::as_u64)
                        .ok_or(IdentityError::Invalid)?;
                    return Ok((principal(&data.claims, &issuer.config)?, exp));
                }
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => return Err(IdentityError::Expired),
                        ErrorKind::ImmatureSignature => return Err(IdentityError::NotYetValid),
                        ErrorKind::InvalidSignature => IdentityError::Invalid,
                        _ => IdentityError::Invalid,
                    }
                }
            }
        }
        Err(last)
    }
}

/// What the gateway reads from a token's header before verifying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

#[derive(serde::Deserialize)]
struct RawHeader {
    alg: Algorithm,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl TokenHeader {
    /// Parses the header of a compact JWS. Refuses anything but three
    /// dot-separated parts, an algorithm other than the known signing ones
    /// (so `none`), and any `crit` header.
    pub fn parse(token: &str) -> Result<TokenHeader, IdentityError> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(IdentityError::Malformed);
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| IdentityError::Malformed)?;
        // serde_json skips the fields a struct ignores without checking
        // them (invalid UTF-8, numbers out of range), so the whole header
        // is first read as a JSON value, which checks every byte; then as
        // the struct, which refuses a repeated `alg`, `kid` or `crit`
        // where a value would keep the last one.
        serde_json::from_slice::<Value>(&bytes).map_err(|_| IdentityError::Malformed)?;
        let raw: RawHeader =
            serde_json::from_slice(&bytes).map_err(|_| IdentityError::Malformed)?;
        if raw.crit.is_some() {
            return Err(IdentityError::Invalid);
        }
        Ok(TokenHeader {
            alg: raw.alg,
            kid: raw.kid,
        })
    }
}

fn principal(claims: &Value, config: &JwtIssuer) -> Result<Principal, IdentityError> {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or(IdentityError::Invalid)?;
    let email_verified = claims.get("email_verified").and_then(Value::as_bool) == Some(true);
    Ok(Principal::new(
        format!("jwt:{}:{subject}", config.name),
        claims
            .get("email")
            .and_then(Value::as_str)
            .filter(|_| email_verified)
            .map(str::to_owned),
        roles_from(claims, &config.claims),
        IdentityKind::Jwt,
        config.name.clone(),
    ))
}

/// `iss` from the payload, before any verification: used only to choose
/// which issuer's rules then verify the token. Public only for the
/// `jwt_header` fuzz target; not API.
#[doc(hidden)]
pub fn unverified_issuer(token: &str) -> Result<String, IdentityError> {
    let payload = token.split('.').nth(1).ok_or(IdentityError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| IdentityError::Malformed)?;
    let claims: Value = serde_json::from_slice(&bytes).map_err(|_| IdentityError::Malformed)?;
    claims
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(IdentityError::Invalid)
}

fn load_public_key(path: &PathBuf) -> Result<(KeyFamily, DecodingKey), KeyLoadError> {
    let pem = std::fs::read(path).map_err(|e| KeyLoadError {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((KeyFamily::Rsa, k));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
        return Ok((KeyFamily::Ec, k));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
        return Ok((KeyFamily::Ed, k));
    }
    Err(KeyLoadError {
        path: path.clone(),
        reason: "not an RSA, EC or Ed25519 public key in PEM".into(),
    })
}

struct CachedSet {
    keys: Vec<(Option<String>, KeyFamily, DecodingKey)>,
    last_fetch: Instant,
}

/// JWKS documents by URL, shared across policy reloads. Cached keys keep
/// serving when the endpoint is down; an unknown `kid` triggers a refetch
/// at most once per cooldown.
pub struct JwksCache {
    client: reqwest::Client,
    sets: RwLock<HashMap<String, CachedSet>>,
    fetching: tokio::sync::Mutex<()>,
}

impl JwksCache {
    pub fn new() -> Self {
        JwksCache {
            client: reqwest::Client::builder()
                .timeout(JWKS_FETCH_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            sets: RwLock::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(
        &self,
        url: &str,
        kid: Option<&str>,
        want: KeyFamily,
    ) -> (Vec<DecodingKey>, Option<Instant>) {
        let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
        match sets.get(url) {
            None => (Vec::new(), None),
            Some(set) => (
                set.keys
                    .iter()
                    .filter(|(k, f, _)| *f == want && (kid.is_none() || k.as_deref() == kid))
                    .map(|(_, _, key)| key.clone())
                    .collect(),
                Some(set.last_fetch),
            ),
        }
    }

    async fn keys_for(
        &self,
        url: &str,
        kid: Option<&str>,
        want: KeyFamily,
        cooldown: Duration,
    ) -> Result<Vec<DecodingKey>, IdentityError> {
        let (keys, last_fetch) = self.cached(url, kid, want);
        if !keys.is_empty() {
            return Ok(keys);
        }
        if last_fetch.is_some_and(|t| t.elapsed() < cooldown) {
            return Err(IdentityError::Unknown);
        }
        let _one_fetch_at_a_time = self.fetching.lock().await;
        // Another request may have fetched while we waited.
        let (keys, last_fetch) = self.cached(url, kid, want);
        if !keys.is_empty() {
            return Ok(keys);
        }
        if last_fetch.is_some_and(|t| t.elapsed() < cooldown) {
            return Err(IdentityError::Unknown);
        }
        let fetched = self.fetch(url).await;
        let mut sets = self.sets.write().unwrap_or_else(|e| e.into_inner());
        match fetched {
            Some(keys) => {
                sets.insert(
                    url.to_owned(),
                    CachedSet {
                        keys,
                        last_fetch: Instant::now(),
                    },
                );
            }
            None => {
                tracing::warn!(url, "JWKS fetch failed; keeping cached keys");
                let entry = sets.entry(url.to_owned()).or_insert(CachedSet {
                    keys: Vec::new(),
                    last_fetch: Instant::now(),
                });
                entry.last_fetch = Instant::now();
                if entry.keys.is_empty() {
                    return Err(IdentityError::KeysUnavailable);
                }
            }
        }
        drop(sets);
        let (keys, _) = self.cached(url, kid, want);
        if keys.is_empty() {
            Err(IdentityError::Unknown)
        } else {
            Ok(keys)
        }
    }

    async fn fetch(&self, url: &str) -> Option<Vec<(Option<String>, KeyFamily, DecodingKey)>> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?;
        let set: JwkSet = response.json().await.ok()?;
        Some(
            set.keys
                .iter()
                .filter_map(|jwk| {
                    let key = DecodingKey::from_jwk(jwk).ok()?;
                    let fam = match &jwk.algorithm {
                        jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
                        jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => KeyFamily::Ec,
                        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => KeyFamily::Ed,
                        jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_) => return None,
                    };
                    Some((jwk.common.key_id.clone(), fam, key))
                })
                .collect(),
        )
    }
}

impl Default for JwksCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(header), b64("{}"))
    }

    #[test]
    fn headers_name_a_signing_algorithm_and_maybe_a_key() {
        let header = TokenHeader::parse(&token(r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#));
        assert_eq!(
            header,
            Ok(TokenHeader {
                alg: Algorithm::ES256,
                kid: Some("k1".into())
            })
        );
    }

    #[test]
    fn crit_none_and_odd_shapes_are_refused() {
        assert_eq!(
            TokenHeader::parse(&token(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#)),
            Err(IdentityError::Invalid)
        );
        assert_eq!(
            TokenHeader::parse(&token(r#"{"alg":"none"}"#)),
            Err(IdentityError::Malformed)
        );
        // Found by the jwt_header fuzzer: invalid UTF-8 inside a field the
        // parser ignores.
        let invalid_utf8 = format!(
            "{}.e30.sig",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(b"{\"alg\":\"RS256\",\"x\":\"\x8c\xa7\"}")
        );
        assert_eq!(
            TokenHeader::parse(&invalid_utf8),
            Err(IdentityError::Malformed)
        );
        // Found by the jwt_header fuzzer: a number out of range in a field
        // the parser ignores.
        assert_eq!(
            TokenHeader::parse(&token(r#"{"alg":"RS256","jwk":{"e":1E900000000}}"#)),
            Err(IdentityError::Malformed)
        );
        // A repeated field is refused, not read as its first or last copy.
        assert_eq!(
            TokenHeader::parse(&token(r#"{"alg":"none","alg":"RS256"}"#)),
            Err(IdentityError::Malformed)
        );
        for bad in ["a.b", "a.b.c.d", "!!.e30.x", ""] {
            assert_eq!(
                TokenHeader::parse(bad),
                Err(IdentityError::Malformed),
                "{bad}"
            );
        }
    }
}
