//! The session-cookie opener, on arbitrary cookie values, with a fixed key.
//!
//! Forged values must not open (AES-GCM makes that a given, so this mostly
//! drives the base64 and length handling). What does open must stay bound
//! to the session cookie's name and round-trip through `seal`; and any
//! plaintext sealed must open again while it fits the size limit.
#![no_main]

use std::sync::LazyLock;

use gatehouse_gateway::identity::session::{
    Sealer, SessionData, FLOW_COOKIE, MAX_SEALED_BYTES, SESSION_COOKIE,
};
use gatehouse_policy::secret::SecretSource;
use libfuzzer_sys::fuzz_target;

/// The key the seeds in `corpus/session` were sealed with (fuzz/README.md).
const TEST_KEY: &str = "gatehouse-fuzz-session-key-0123456789";

static SEALER: LazyLock<Sealer> = LazyLock::new(|| {
    let key = SecretSource::Inline(TEST_KEY)
        .resolve(|_| None)
        .expect("an inline key resolves");
    Sealer::new(&[key])
});

fuzz_target!(|data: &[u8]| {
    if let Ok(sealed) = std::str::from_utf8(data) {
        if let Some(plain) = SEALER.open(SESSION_COOKIE, sealed) {
            assert!(
                SEALER.open(FLOW_COOKIE, sealed).is_none(),
                "a session cookie opened as the login-flow cookie"
            );
            let resealed = SEALER.seal(SESSION_COOKIE, &plain).expect("seal");
            assert_eq!(SEALER.open(SESSION_COOKIE, &resealed), Some(plain.clone()));
            // The gateway reads what opens as JSON; that must not panic either.
            let _ = serde_json::from_slice::<SessionData>(&plain);
        }
    }

    // The input as a plaintext: sealing then opening gives it back.
    let sealed = SEALER.seal(SESSION_COOKIE, data).expect("seal");
    let opened = SEALER.open(SESSION_COOKIE, &sealed);
    if sealed.len() <= MAX_SEALED_BYTES {
        assert_eq!(opened.as_deref(), Some(data), "sealed value did not open");
    } else {
        assert!(opened.is_none(), "an oversized value opened");
    }
});
