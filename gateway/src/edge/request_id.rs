//! Request ids: one per request, in the access log, towards the upstream
//! and in the response.

use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;

/// Cheap unique request ids: a random per-process prefix and a counter.
/// They identify, they do not authenticate, so they need not be unguessable.
pub struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new() -> Self {
        let mut seed = [0u8; 6];
        // Falling back to a fixed prefix only risks collisions across processes.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        RequestIds {
            prefix: hex::encode(seed),
            next: AtomicU64::new(1),
        }
    }

    pub fn make(&self) -> String {
        format!(
            "{}-{:x}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

/// An `X-Request-Id` from a trusted proxy, if it is short and plain.
pub fn trusted_request_id(value: &HeaderValue) -> Option<String> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_from_a_proxy_must_be_short_and_plain() {
        assert_eq!(
            trusted_request_id(&HeaderValue::from_static("abc-123")),
            Some("abc-123".into())
        );
        assert_eq!(trusted_request_id(&HeaderValue::from_static("a b")), None);
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert_eq!(trusted_request_id(&long), None);
    }
}
