//! Request ids: one per request, in the access log, towards the upstream
//! and in the response.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderName, HeaderValue};

use super::headers::never_indexed;

/// The header a request id travels in, both ways.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// One request's id, kept as the header value it is sent as: the access
/// log, the upstream request and the response share it without copies.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// Before stage 1 has chosen one (a request refused that early still
    /// logs a line).
    pub fn none() -> Self {
        RequestId(HeaderValue::from_static("-"))
    }

    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII letters, digits and `-_.`.
        self.0.to_str().unwrap_or("-")
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

    pub fn make(&self) -> RequestId {
        let counter = self.next.fetch_add(1, Ordering::Relaxed);
        // `prefix-counter` in hex, written without `format!`, whose
        // machinery cost more than the rest of this function.
        let mut id = String::with_capacity(self.prefix.len() + 17);
        id.push_str(&self.prefix);
        id.push('-');
        push_hex(&mut id, counter);
        // The String becomes the header's bytes as it is, without a copy.
        let value = HeaderValue::try_from(id).unwrap_or(HeaderValue::from_static("-"));
        RequestId(never_indexed(value))
    }
}

/// `value` in lower-case hex without leading zeros, as `{:x}` writes it.
fn push_hex(text: &mut String, value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let nibbles = (64 - value.leading_zeros()).div_ceil(4).max(1);
    for nibble in (0..nibbles).rev() {
        let digit = (value >> (nibble * 4)) & 0xf;
        text.push(char::from(DIGITS[digit as usize]));
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

/// An `X-Request-Id` from a trusted proxy, if it is short and plain.
pub fn trusted_request_id(value: &HeaderValue) -> Option<RequestId> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    // A clone of a received header value shares its bytes.
    ok.then(|| RequestId(never_indexed(value.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_written_as_format_writes_hex() {
        for value in [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            256,
            0xdead_beef,
            u64::MAX >> 1,
            u64::MAX,
        ] {
            let mut text = String::new();
            push_hex(&mut text, value);
            assert_eq!(text, format!("{value:x}"));
        }
    }

    #[test]
    fn ids_are_never_indexed_by_hpack() {
        assert!(RequestIds::new().make().header_value().is_sensitive());
        let from_proxy = trusted_request_id(&HeaderValue::from_static("abc-123"));
        assert!(from_proxy.expect("plain id").header_value().is_sensitive());
    }

    #[test]
    fn made_ids_share_a_prefix_and_differ() {
        let ids = RequestIds::new();
        let (a, b) = (ids.make(), ids.make());
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.as_str().split('-').next(), b.as_str().split('-').next());
        assert_eq!(a.as_str().len(), 12 + 1 + 1);
    }

    #[test]
    fn request_id_from_a_proxy_must_be_short_and_plain() {
        assert_eq!(
            trusted_request_id(&HeaderValue::from_static("abc-123"))
                .as_ref()
                .map(RequestId::as_str),
            Some("abc-123")
        );
        assert!(trusted_request_id(&HeaderValue::from_static("a b")).is_none());
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert!(trusted_request_id(&long).is_none());
    }
}
