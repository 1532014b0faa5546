//! Browser sessions: a stateless cookie sealed with AES-256-GCM (ring).
//!
//! The first policy key seals, every key opens (rotation). The cookie name
//! is the additional authenticated data, so a sealed login-flow cookie can
//! never be replayed as a session. The cookie holds only what
//! authorization needs, a random session id (logout revokes it), and the
//! id_token for RP-initiated logout when it fits: browsers drop cookies
//! over 4 KB, and logout works without it (the provider is then told the
//! client id instead of the token).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use gatehouse_policy::{secret::Secret, SessionSettings};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

pub const SESSION_COOKIE: &str = "__Host-gatehouse";
pub const FLOW_COOKIE: &str = "__Host-gatehouse-flow";
/// Browsers drop cookies over 4096 bytes of name, value and attributes;
/// the sealed value stays below this, and nothing longer is opened.
pub const MAX_SEALED_BYTES: usize = 3800;
/// A session's `seen` time is refreshed at most this often.
pub const REFRESH_AFTER: Duration = Duration::from_secs(60);

pub struct Sealer {
    keys: Vec<LessSafeKey>,
    rng: SystemRandom,
}

impl Sealer {
    /// Each secret is stretched to an AES-256 key with HKDF-SHA256.
    pub fn new(secrets: &[Secret]) -> Self {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"gatehouse-session-v1");
        let keys = secrets
            .iter()
            .filter_map(|secret| {
                let prk = salt.extract(secret.expose());
                let okm = prk.expand(&[b"aes-256-gcm"], &AES_256_GCM).ok()?;
                let mut bytes = [0u8; 32];
                okm.fill(&mut bytes).ok()?;
                Some(LessSafeKey::new(
                    UnboundKey::new(&AES_256_GCM, &bytes).ok()?,
                ))
            })
            .collect();
        Sealer {
            keys,
            rng: SystemRandom::new(),
        }
    }

    pub fn seal(&self, cookie: &str, plaintext: &[u8]) -> Option<String> {
        let key = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut data = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(cookie.as_bytes()),
            &mut data,
        )
        .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out))
    }

    pub fn open(&self, cookie: &str, sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > MAX_SEALED_BYTES {
            return None;
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed)
            .ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        self.keys.iter().find_map(|key| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut data = body.to_vec();
            let plain = key
                .open_in_place(nonce, Aad::from(cookie.as_bytes()), &mut data)
                .ok()?;
            Some(plain.to_vec())
        })
    }
}

/// What the session cookie carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionData {
    /// Random, per login; what logout revokes.
    pub sid: String,
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub roles: Vec<String>,
    /// OIDC provider name.
    pub idp: String,
    /// Issued at and last seen, Unix seconds.
    pub iat: u64,
    pub seen: u64,
    /// The id_token, kept only as `id_token_hint` for logout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idt: Option<String>,
}

/// A new random session id (128 bits, base64url).
pub fn new_session_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SessionData {
    /// Within the absolute lifetime and the idle timeout.
    pub fn is_current(&self, settings: &SessionSettings, now: u64) -> bool {
        now.saturating_sub(self.iat) < settings.lifetime.as_secs()
            && now.saturating_sub(self.seen) < settings.idle_timeout.as_secs()
            && self.iat <= now + 60
    }

    pub fn needs_refresh(&self, now: u64) -> bool {
        now.saturating_sub(self.seen) >= REFRESH_AFTER.as_secs()
    }
}

/// `Set-Cookie` for a `__Host-` cookie: Secure, HttpOnly, SameSite=Lax, Path=/,
/// no Domain (the prefix requires exactly that).
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    cookie::Cookie::build((name, value))
        .secure(true)
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .path("/")
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build()
        .to_string()
}

/// `Set-Cookie` that removes a cookie.
pub fn clear_cookie(name: &str) -> String {
    set_cookie(name, "", Duration::ZERO)
}

/// The value of cookie `name` from the request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `Cookie` header without cookie `name`, or `None` when nothing is left.
pub fn without_cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let kept: Vec<&str> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').map(|(k, _)| k) != Some(name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_policy::secret::SecretSource;

    fn secret(text: &str) -> Secret {
        SecretSource::Inline(text).resolve(|_| None).unwrap()
    }

    #[test]
    fn sealed_value_opens_only_with_a_listed_key_and_the_same_cookie_name() {
        let old = secret(&"o".repeat(32));
        let new = secret(&"n".repeat(32));
        let sealed = Sealer::new(std::slice::from_ref(&old))
            .seal(SESSION_COOKIE, b"hello")
            .unwrap();
        // After rotation the old key still opens, the new one seals.
        let rotated = Sealer::new(&[new.clone(), old]);
        assert_eq!(rotated.open(SESSION_COOKIE, &sealed).unwrap(), b"hello");
        assert!(
            rotated.open(FLOW_COOKIE, &sealed).is_none(),
            "cookie name is bound"
        );
        assert!(Sealer::new(&[new]).open(SESSION_COOKIE, &sealed).is_none());
    }

    #[test]
    fn tampered_or_oversized_values_do_not_open() {
        let sealer = Sealer::new(&[secret(&"k".repeat(32))]);
        let sealed = sealer.seal(SESSION_COOKIE, b"hello").unwrap();
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert!(sealer
            .open(SESSION_COOKIE, std::str::from_utf8(&bytes).unwrap())
            .is_none());
        assert!(sealer.open(SESSION_COOKIE, &"A".repeat(5000)).is_none());
        assert!(sealer.open(SESSION_COOKIE, "%%%").is_none());
    }

    #[test]
    fn sessions_expire_by_lifetime_and_idleness() {
        let settings = SessionSettings {
            keys: vec![],
            idle_timeout: Duration::from_secs(100),
            lifetime: Duration::from_secs(1000),
        };
        let at = |iat, seen| SessionData {
            sid: "id".into(),
            sub: "s".into(),
            email: None,
            roles: vec![],
            idp: "p".into(),
            iat,
            seen,
            idt: None,
        };
        assert!(at(5000, 5000).is_current(&settings, 5050));
        assert!(!at(5000, 5000).is_current(&settings, 5100), "idle");
        assert!(!at(5000, 5990).is_current(&settings, 6000), "lifetime");
    }

    #[test]
    fn host_prefixed_cookie_has_the_required_attributes() {
        let header = set_cookie(SESSION_COOKIE, "v", Duration::from_secs(60));
        for part in [
            "__Host-gatehouse=v",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(header.contains(part), "{header}");
        }
        assert!(!header.contains("Domain"));
    }

    #[test]
    fn session_cookie_is_found_and_removed_from_cookie_headers() {
        let mut headers = http::HeaderMap::new();
        headers.append(
            "cookie",
            "a=1; __Host-gatehouse=secret; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&headers, SESSION_COOKIE), Some("secret"));
        assert_eq!(
            without_cookie(&headers, SESSION_COOKIE).as_deref(),
            Some("a=1; b=2")
        );
    }
}
