//! The path normaliser, on raw request targets (path and query).
//!
//! Besides "never panics", every accepted path must already be in the
//! normal form the upstream relies on, and normalising it again must change
//! nothing: a second reading that differed would be a routing bypass.
#![no_main]

use gatehouse_gateway::edge::path::{normalize, normalize_path_and_query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    let Ok((path, query)) = normalize_path_and_query(raw) else {
        return;
    };
    let out = path.as_str();
    assert!(out.starts_with('/'), "{out:?} does not start with '/'");
    assert!(!out.contains("//"), "{out:?} has an empty segment");
    assert!(
        out.bytes().all(|b| b.is_ascii_graphic()),
        "{out:?} is not printable ASCII"
    );
    assert!(
        out.split('/')
            .all(|segment| segment != "." && segment != ".."),
        "{out:?} has a dot segment"
    );
    check_escapes(out);
    let again = normalize(out.as_bytes())
        .unwrap_or_else(|e| panic!("{out:?} was produced but is refused again: {e}"));
    assert_eq!(again, path, "normalising {out:?} again changed it");
    if let Some(query) = query {
        assert!(
            query.bytes().all(|b| b.is_ascii_graphic() && b != b'#'),
            "query {query:?} passed with a byte it must refuse"
        );
    }
});

/// The one spelling per byte: unreserved characters are decoded, every other
/// escape is upper-case hex and is never a separator or `;`.
fn check_escapes(out: &str) {
    let bytes = out.as_bytes();
    for (i, _) in out.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
        assert!(
            hex.len() == 2 && hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')),
            "{out:?} has a malformed or lower-case escape at {i}"
        );
        let text = std::str::from_utf8(hex).unwrap_or_default();
        let value = u8::from_str_radix(text, 16).unwrap_or_default();
        assert!(
            !(value.is_ascii_alphanumeric() || b"-._~/\\;".contains(&value)),
            "{out:?} keeps %{text} encoded, which has a plain or ambiguous spelling"
        );
    }
}
