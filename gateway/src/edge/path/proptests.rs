//! Property tests for the path normaliser.
//!
//! Paths are built from the pieces that path-confusion attacks are made of
//! (dot segments in every spelling, encoded separators, `;`, backslashes,
//! NUL, overlong and fullwidth dots, mixed case, empty segments), so most
//! generated paths are hostile. The properties: what the normaliser accepts
//! is in normal form and stays put when normalised again, and no accepted
//! path that misses a route's prefix reaches that prefix under the way a
//! common server behind the gateway reads paths.
//!
//! Route matching is becoming ASCII case-insensitive (IIS, ASP.NET and
//! Express fold case), so every comparison here folds case on both sides.

use percent_encoding::percent_decode_str;
use proptest::prelude::*;

use super::*;

/// Spellings of `.` and `..`, plain or in disguise (encoded, overlong
/// UTF-8, fullwidth, with `;` parameters, NUL or a separator glued on).
const DOTS: &[&str] = &[
    ".",
    "..",
    "%2e",
    "%2E",
    "%2e%2e",
    ".%2E",
    "%C0%AE",
    "%C0%AE%C0%AE",
    "%EF%BC%8E",
    "%EF%BC%8E%EF%BC%8E",
    "..;",
    "..;x=1",
    "%2e%2e%3B",
    "..\\",
    "..%5c",
    "..%2f",
    "%252e%252e",
    ".%00",
    "",
];

/// Other pieces: separators in disguise, NUL, escapes, letters.
const PIECES: &[&str] = &[
    "%2f", "%2F", "%5c", "%5C", ";", ";x=1", "\\", "%00", "%25", "%3B", "%61", "%41", "a", "A",
    "b", "x", "~",
];

/// A route prefix as policies write them: one to three segments, maybe a
/// trailing slash.
fn route_prefix() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(&["a", "b", "admin", "Admin", "x"][..]);
    (prop::collection::vec(segment, 1..4), any::<bool>()).prop_map(|(segments, slash)| {
        let prefix = format!("/{}", segments.join("/"));
        if slash {
            prefix + "/"
        } else {
            prefix
        }
    })
}

/// The prefix's own segments, as written, upper-cased and with the first
/// letter percent-encoded: what an attacker aims at.
fn aimed_segments(prefix: &str) -> Vec<String> {
    prefix
        .split('/')
        .filter(|s| !s.is_empty())
        .flat_map(|s| {
            let encoded = format!("%{:02X}{}", s.as_bytes()[0], &s[1..]);
            [s.to_owned(), s.to_ascii_uppercase(), encoded]
        })
        .collect()
}

/// One path segment: a dot in some spelling, a piece of the prefix, or a
/// few other pieces, or a dot with a piece glued on.
fn hostile_segment(aimed: Vec<String>) -> impl Strategy<Value = String> {
    let dot = || prop::sample::select(DOTS).prop_map(str::to_owned);
    let piece = || prop::sample::select(PIECES).prop_map(str::to_owned);
    prop_oneof![
        3 => dot(),
        3 => prop::sample::select(aimed),
        2 => prop::collection::vec(piece(), 1..3).prop_map(|p| p.concat()),
        1 => (dot(), piece()).prop_map(|(d, p)| d + &p),
    ]
}

/// A route prefix and a hostile request target aimed at it: `/` then up to
/// eight segments.
fn prefix_and_hostile_path() -> impl Strategy<Value = (String, String)> {
    route_prefix().prop_flat_map(|prefix| {
        let segments = prop::collection::vec(hostile_segment(aimed_segments(&prefix)), 0..8);
        (
            Just(prefix),
            segments.prop_map(|s| format!("/{}", s.join("/"))),
        )
    })
}

/// A hostile path, for the normal-form properties.
fn hostile_path() -> impl Strategy<Value = String> {
    prefix_and_hostile_path().prop_map(|(_, path)| path)
}

/// Any bytes after a `/`, for the normal-form properties.
fn any_path() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40).prop_map(|tail| [b"/".as_slice(), &tail].concat())
}

/// How a server behind the gateway may read the path it is sent.
#[derive(Debug, Clone, Copy)]
enum Reading {
    /// nginx, Go's net/http, Node: percent-decode once, resolve dot
    /// segments, merge slashes.
    DecodeOnce,
    /// Tomcat and other servlet containers: strip `;params` from every
    /// segment, then decode and resolve.
    ServletParams,
    /// IIS: decode, then treat `\` as `/`, then resolve.
    BackslashIsSlash,
    /// A proxy that decodes before a server that decodes again.
    DecodeTwice,
    /// Windows "best fit" mapping and NFKC normalisation (IIS, .NET, some
    /// Python and Java frameworks): decode, then compatibility-normalise,
    /// so a fullwidth `．` is `.` and `／` is `/`.
    Compatibility,
    /// Every reading above at once.
    All,
}

const READINGS: [Reading; 6] = [
    Reading::DecodeOnce,
    Reading::ServletParams,
    Reading::BackslashIsSlash,
    Reading::DecodeTwice,
    Reading::Compatibility,
    Reading::All,
];

fn read_as(reading: Reading, upstream: &str) -> String {
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let strip_params = |s: &str| {
        s.split('/')
            .map(|segment| segment.split(';').next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("/")
    };
    let path = match reading {
        Reading::DecodeOnce => decode(upstream),
        Reading::ServletParams => decode(&strip_params(upstream)),
        Reading::BackslashIsSlash => decode(upstream).replace('\\', "/"),
        Reading::DecodeTwice => decode(&decode(upstream)),
        Reading::Compatibility => nfkc(&decode(upstream)),
        Reading::All => nfkc(&decode(&decode(&strip_params(upstream)))).replace('\\', "/"),
    };
    resolve_dot_segments(&path)
}

fn nfkc(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.nfkc().collect()
}

/// RFC 3986 §5.2.4 as servers apply it: `..` at the root stays at the root,
/// empty segments merge, a trailing dot segment leaves a trailing slash.
fn resolve_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut ends_in_directory = false;
    for segment in path.split('/') {
        ends_in_directory = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let mut out: String = kept.iter().flat_map(|s| ["/", s]).collect();
    if out.is_empty() || ends_in_directory {
        out.push('/');
    }
    out
}

/// The gateway's prefix rule, folding ASCII case as route matching does.
fn matches_folded(path: &str, prefix: &str) -> bool {
    matches_prefix(&NormalizedPath(path.to_owned()), prefix, true)
}

fn is_normal_form(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("//")
        && path.bytes().all(|b| b.is_ascii_graphic())
        && path.split('/').all(|s| s != "." && s != "..")
        && !path.contains(['\\', ';', '#', '?'])
}

/// Hostile paths and arbitrary bytes, half each.
fn raw_path() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![hostile_path().prop_map(String::into_bytes), any_path()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn accepted_paths_are_in_normal_form(raw in raw_path()) {
        if let Ok(path) = normalize(&raw) {
            let shown = String::from_utf8_lossy(&raw);
            prop_assert!(is_normal_form(path.as_str()), "{shown:?} -> {path:?}");
        }
    }

    #[test]
    fn normalising_twice_changes_nothing(raw in raw_path()) {
        if let Ok(once) = normalize(&raw) {
            let twice = normalize(once.as_str().as_bytes());
            prop_assert_eq!(twice, Ok(once));
        }
    }

    #[test]
    fn no_accepted_path_reaches_a_prefix_it_does_not_match(
        (prefix, raw) in prefix_and_hostile_path(),
    ) {
        let Ok(upstream) = normalize(raw.as_bytes()) else {
            return Ok(());
        };
        let upstream = upstream.as_str();
        if matches_folded(upstream, &prefix) {
            return Ok(());
        }
        for reading in READINGS {
            let read = read_as(reading, upstream);
            prop_assert!(
                !matches_folded(&read, &prefix),
                "{raw:?} goes upstream as {upstream:?}, outside {prefix:?}, \
                 but {reading:?} reads it as {read:?}"
            );
        }
    }
}

#[test]
fn readings_model_the_servers_they_name() {
    assert_eq!(read_as(Reading::DecodeOnce, "/a/%2e%2e/b"), "/b");
    assert_eq!(read_as(Reading::ServletParams, "/admin;x=1/y"), "/admin/y");
    assert_eq!(
        read_as(Reading::BackslashIsSlash, "/a%5C..%5Cadmin"),
        "/admin"
    );
    assert_eq!(
        read_as(Reading::DecodeTwice, "/a/%252e%252e/admin"),
        "/admin"
    );
    assert_eq!(
        read_as(Reading::Compatibility, "/a/%EF%BC%8E%EF%BC%8E/admin"),
        "/admin"
    );
    assert_eq!(resolve_dot_segments("/a/b/.."), "/a/");
    assert_eq!(resolve_dot_segments("/../a"), "/a");
    assert!(matches_folded("/ADMIN/x", "/admin"));
    assert!(!matches_folded("/administrator", "/admin"));
}
