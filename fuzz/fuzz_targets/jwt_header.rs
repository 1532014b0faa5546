//! JWT header parsing: what the gateway reads from a bearer token before
//! any signature is checked: `TokenHeader::parse` (algorithm and `kid`;
//! refuses `crit`, `none` and odd shapes) and `unverified_issuer` (the
//! `iss` that picks which issuer's rules verify the token), both called
//! first thing in `JwtVerifier::verify_uncached`.
//!
//! Invariants: a header the gateway accepts has no `crit`, and where
//! jsonwebtoken's own `decode_header` (which the signature check later
//! relies on) also parses the token, both read the same algorithm and `kid`.
#![no_main]

use base64::Engine;
use gatehouse_gateway::identity::jwt::{unverified_issuer, TokenHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _issuer = unverified_issuer(token);
    let Ok(ours) = TokenHeader::parse(token) else {
        return;
    };
    let json = token.split('.').next().and_then(|h| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .ok()
    });
    let value: Option<serde_json::Value> = json.and_then(|j| serde_json::from_slice(&j).ok());
    assert!(
        value.as_ref().is_some_and(|v| v.get("crit").is_none()),
        "accepted a header with crit: {value:?}"
    );
    if let Ok(theirs) = jsonwebtoken::decode_header(token) {
        assert_eq!(theirs.alg, ours.alg, "the algorithms differ");
        assert_eq!(theirs.kid, ours.kid, "the kids differ");
    }
});
