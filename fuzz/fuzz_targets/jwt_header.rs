//! JWT header parsing: what the gateway reads from a bearer token before
//! any signature is checked.
//!
//! Today that is `jsonwebtoken::decode_header` (algorithm, `kid`) and
//! `gatehouse_gateway::identity::jwt::unverified_issuer` (the `iss` that
//! picks which issuer's rules verify the token), both called first thing in
//! `JwtVerifier::verify_uncached`. `parse_unverified` below is the one place
//! to re-point when the gateway gets its own header parser (the one that
//! refuses `crit`).
#![no_main]

use gatehouse_gateway::identity::jwt::unverified_issuer;
use gatehouse_gateway::identity::IdentityError;
use jsonwebtoken::Header;
use libfuzzer_sys::fuzz_target;

/// What the gateway knows about a token before verifying it.
fn parse_unverified(token: &str) -> Option<(Header, Result<String, IdentityError>)> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    Some((header, unverified_issuer(token)))
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let Some((header, _issuer)) = parse_unverified(token) else {
        return;
    };
    // A parsed header must survive its own JSON round trip unchanged, so
    // what the gateway checks is what it would log or compare.
    let json = serde_json::to_string(&header).expect("a parsed header serialises");
    let again: Header = serde_json::from_str(&json).expect("its JSON parses again");
    assert_eq!(again, header, "header changed in a JSON round trip: {json}");
});
