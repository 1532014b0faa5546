//! Request-path normalisation for routing.
//!
//! The rule: if any common upstream server (nginx, Apache, Tomcat, Node, Go,
//! Python) could read a path differently from the gateway, the path is
//! rejected rather than guessed at. What survives is normalised: unreserved
//! characters decoded, other escapes upper-cased, dot segments resolved,
//! empty segments merged. The upstream receives exactly that path.

/// A normalised path: starts with `/`, printable ASCII, no dot segments,
/// no empty segments, no ambiguous escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath(String);

impl NormalizedPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRejection {
    #[error("path does not start with '/'")]
    NotOriginForm,
    #[error("malformed percent-encoding")]
    BadEscape,
    #[error("encoded '/' or '\\'")]
    EncodedSeparator,
    #[error("backslash in path")]
    Backslash,
    #[error("control character or NUL in path")]
    ControlCharacter,
    #[error("non-ASCII byte in path")]
    NonAscii,
    #[error("percent-encoded bytes are not valid UTF-8")]
    InvalidUtf8,
    #[error("double percent-encoding")]
    DoubleEncoding,
    #[error("';' in path")]
    Semicolon,
    #[error("'..' climbs above the root")]
    EscapesRoot,
    #[error("fragment in request target")]
    Fragment,
    #[error("query is not printable ASCII")]
    BadQuery,
    #[error("percent-encoded character that compatibility normalisation turns into ASCII")]
    ConfusableUnicode,
}

impl PathRejection {
    /// Stable name for metrics, logs and audit.
    pub fn reason(self) -> &'static str {
        match self {
            PathRejection::NotOriginForm => "path-not-origin-form",
            PathRejection::BadEscape => "path-bad-escape",
            PathRejection::EncodedSeparator => "path-encoded-separator",
            PathRejection::Backslash => "path-backslash",
            PathRejection::ControlCharacter => "path-control-character",
            PathRejection::NonAscii => "path-non-ascii",
            PathRejection::InvalidUtf8 => "path-invalid-utf8",
            PathRejection::DoubleEncoding => "path-double-encoding",
            PathRejection::Semicolon => "path-semicolon",
            PathRejection::EscapesRoot => "path-escapes-root",
            PathRejection::Fragment => "path-fragment",
            PathRejection::BadQuery => "path-bad-query",
            PathRejection::ConfusableUnicode => "path-confusable-unicode",
        }
    }

    pub const ALL: [PathRejection; 13] = [
        PathRejection::NotOriginForm,
        PathRejection::BadEscape,
        PathRejection::EncodedSeparator,
        PathRejection::Backslash,
        PathRejection::ControlCharacter,
        PathRejection::NonAscii,
        PathRejection::InvalidUtf8,
        PathRejection::DoubleEncoding,
        PathRejection::Semicolon,
        PathRejection::EscapesRoot,
        PathRejection::Fragment,
        PathRejection::BadQuery,
        PathRejection::ConfusableUnicode,
    ];
}

/// Splits a raw request target at the first `?` and normalises the path.
/// The query passes through unchanged, if it is printable ASCII.
pub fn normalize_path_and_query(
    raw: &[u8],
) -> Result<(NormalizedPath, Option<&str>), PathRejection> {
    let (path, query) = match raw.iter().position(|b| *b == b'?') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    let path = normalize(path)?;
    let query = match query {
        None => None,
        Some(q) if q.iter().all(|b| b.is_ascii_graphic()) && !q.contains(&b'#') => {
            Some(std::str::from_utf8(q).map_err(|_| PathRejection::BadQuery)?)
        }
        Some(q) if q.contains(&b'#') => return Err(PathRejection::Fragment),
        Some(_) => return Err(PathRejection::BadQuery),
    };
    Ok((path, query))
}

/// Normalises a raw path (no query): every byte checked and unreserved
/// escapes decoded, the fully decoded text checked, then dot segments
/// resolved.
pub fn normalize(raw: &[u8]) -> Result<NormalizedPath, PathRejection> {
    if raw.first() != Some(&b'/') {
        return Err(PathRejection::NotOriginForm);
    }
    let decoded = decode_unreserved(raw)?;
    resolve_dot_segments(&decoded).map(NormalizedPath)
}

/// Pass 1: validates each byte and decodes escapes of unreserved
/// characters (others stay escaped, in upper case). Also checks the fully
/// decoded bytes, which is what an upstream that decodes everything sees.
fn decode_unreserved(raw: &[u8]) -> Result<String, PathRejection> {
    let mut decoded = String::with_capacity(raw.len());
    let mut fully_decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'%' => {
                let value = escaped_byte(raw, i)?;
                fully_decoded.push(value);
                if is_unreserved(value) {
                    decoded.push(value as char);
                } else {
                    decoded.push('%');
                    decoded.push(hex_upper(value >> 4));
                    decoded.push(hex_upper(value & 0x0f));
                }
                i += 3;
            }
            b'\\' => return Err(PathRejection::Backslash),
            // Servlet containers strip `;params` from every segment, so
            // `/admin;x/` is `/admin/` to Tomcat but another path to us and to
            // nginx: a route-level bypass. There is no unambiguous spelling.
            b';' => return Err(PathRejection::Semicolon),
            b'#' => return Err(PathRejection::Fragment),
            0x00..=0x1f | 0x7f => return Err(PathRejection::ControlCharacter),
            0x80..=0xff => return Err(PathRejection::NonAscii),
            b' ' | b'"' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}' | b'?' => {
                // Not allowed unencoded in a path (RFC 3986); servers differ
                // on how they treat them.
                return Err(PathRejection::BadEscape);
            }
            _ => {
                fully_decoded.push(b);
                decoded.push(b as char);
                i += 1;
            }
        }
    }
    check_fully_decoded(&fully_decoded)?;
    // A `%25` that the decoding above turned into the start of an escape
    // (`%25%32%46` -> `%252F`) decodes again to something else upstream.
    if decoded
        .as_bytes()
        .windows(5)
        .any(|w| w.starts_with(b"%25") && w[3].is_ascii_hexdigit() && w[4].is_ascii_hexdigit())
    {
        return Err(PathRejection::DoubleEncoding);
    }
    Ok(decoded)
}

/// The byte that the escape at `raw[i]` (a `%`) stands for, unless it is
/// malformed or stands for something no path may hide in an escape.
fn escaped_byte(raw: &[u8], i: usize) -> Result<u8, PathRejection> {
    let (hi, lo) = match (raw.get(i + 1), raw.get(i + 2)) {
        (Some(h), Some(l)) => (*h, *l),
        _ => return Err(PathRejection::BadEscape),
    };
    let value = match (hex_value(hi), hex_value(lo)) {
        (Some(h), Some(l)) => h * 16 + l,
        _ => return Err(PathRejection::BadEscape),
    };
    match value {
        b'/' | b'\\' => Err(PathRejection::EncodedSeparator),
        b';' => Err(PathRejection::Semicolon),
        0x00..=0x1f | 0x7f => Err(PathRejection::ControlCharacter),
        b'%' if raw.get(i + 3).copied().and_then(hex_value).is_some()
            && raw.get(i + 4).copied().and_then(hex_value).is_some() =>
        {
            Err(PathRejection::DoubleEncoding)
        }
        _ => Ok(value),
    }
}

/// The path with every escape decoded must be UTF-8 without invisible
/// controls and without characters that some upstream folds into ASCII.
fn check_fully_decoded(fully_decoded: &[u8]) -> Result<(), PathRejection> {
    let Ok(text) = std::str::from_utf8(fully_decoded) else {
        return Err(PathRejection::InvalidUtf8);
    };
    // C1 controls (U+0080..U+009F, e.g. NEL) are as invisible as C0 ones.
    if text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)) {
        return Err(PathRejection::ControlCharacter);
    }
    if !text.is_ascii() && has_ascii_compatibility_form(text) {
        return Err(PathRejection::ConfusableUnicode);
    }
    Ok(())
}

/// Pass 2: resolves dot segments (RFC 3986 5.2.4) and merges empty
/// segments; `..` above the root is refused, not clamped.
fn resolve_dot_segments(decoded: &str) -> Result<String, PathRejection> {
    let trailing_slash = decoded.ends_with('/');
    let mut segments: Vec<&str> = Vec::new();
    let mut last_was_dot = false;
    for segment in decoded.split('/').skip(1) {
        last_was_dot = false;
        match segment {
            "" => {}
            "." => last_was_dot = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathRejection::EscapesRoot);
                }
                last_was_dot = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if (trailing_slash || last_was_dot) && !segments.is_empty() || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Prefix match on segment boundaries: `/api` matches `/api`, `/api/` and
/// `/api/x`, never `/apix`. With `fold_case`, ASCII letters match either
/// case (the route prefix is stored without a trailing `/`, except `/`).
pub fn matches_prefix(path: &NormalizedPath, prefix: &str, fold_case: bool) -> bool {
    let (path, prefix) = (path.as_str().as_bytes(), prefix.as_bytes());
    if prefix == b"/" {
        return true;
    }
    let prefix = prefix.strip_suffix(b"/").unwrap_or(prefix);
    if path.len() < prefix.len() {
        return false;
    }
    let (head, rest) = path.split_at(prefix.len());
    let same = if fold_case {
        head.eq_ignore_ascii_case(prefix)
    } else {
        head == prefix
    };
    same && (rest.is_empty() || rest[0] == b'/')
}

/// Whether any non-ASCII character turns into ASCII under NFKC, as the
/// fullwidth `．` (U+FF0E) turns into `.` and the Kelvin sign into `K`.
/// Servers that apply compatibility normalisation (IIS and .NET's
/// best-fit mapping, some Python and Java frameworks) would read
/// `/admin/%EF%BC%8E%EF%BC%8E/` as `/admin/../`, a path we never checked.
fn has_ascii_compatibility_form(text: &str) -> bool {
    use unicode_normalization::UnicodeNormalization;
    text.chars()
        .filter(|c| !c.is_ascii())
        .any(|c| std::iter::once(c).nfkc().any(|n| n.is_ascii()))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_upper(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble & 0x0f)])
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match normalize(raw.as_bytes()) {
            Ok(p) => p.0,
            Err(e) => panic!("{raw}: {e}"),
        }
    }

    fn err(raw: &[u8]) -> PathRejection {
        normalize(raw).expect_err(&String::from_utf8_lossy(raw))
    }

    #[test]
    fn plain_paths_are_unchanged() {
        for p in ["/", "/a", "/a/b/", "/a-b_c~d.e", "/a:b@c!$&'()*+,=x"] {
            assert_eq!(ok(p), p);
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_uppercased() {
        assert_eq!(ok("/%61%62c"), "/abc");
        assert_eq!(ok("/a%2eb"), "/a.b");
        assert_eq!(ok("/a%3fb"), "/a%3Fb");
        assert_eq!(ok("/caf%C3%A9"), "/caf%C3%A9");
    }

    #[test]
    fn dot_segments_are_resolved() {
        assert_eq!(ok("/a/./b"), "/a/b");
        assert_eq!(ok("/a/b/../c"), "/a/c");
        assert_eq!(ok("/a/%2e%2e/c"), "/c");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/."), "/a/");
    }

    #[test]
    fn empty_segments_are_merged() {
        assert_eq!(ok("//a///b"), "/a/b");
        assert_eq!(ok("/a//"), "/a/");
    }

    #[test]
    fn climbing_above_root_is_rejected() {
        assert_eq!(err(b"/.."), PathRejection::EscapesRoot);
        assert_eq!(err(b"/a/../../b"), PathRejection::EscapesRoot);
        assert_eq!(err(b"/%2e%2e/etc/passwd"), PathRejection::EscapesRoot);
    }

    #[test]
    fn encoded_separators_are_rejected() {
        assert_eq!(err(b"/a%2Fb"), PathRejection::EncodedSeparator);
        assert_eq!(err(b"/a%2fb"), PathRejection::EncodedSeparator);
        assert_eq!(err(b"/a%5Cb"), PathRejection::EncodedSeparator);
        assert_eq!(err(b"/a\\b"), PathRejection::Backslash);
    }

    #[test]
    fn nul_and_control_characters_are_rejected() {
        assert_eq!(err(b"/a%00b"), PathRejection::ControlCharacter);
        assert_eq!(err(b"/a\0b"), PathRejection::ControlCharacter);
        assert_eq!(err(b"/a%0Ab"), PathRejection::ControlCharacter);
        assert_eq!(err(b"/a\tb"), PathRejection::ControlCharacter);
        assert_eq!(err(b"/a%C2%85b"), PathRejection::ControlCharacter);
    }

    #[test]
    fn non_ascii_and_invalid_utf8_are_rejected() {
        assert_eq!(err("/café".as_bytes()), PathRejection::NonAscii);
        assert_eq!(err(b"/%C0%AF"), PathRejection::InvalidUtf8);
        assert_eq!(err(b"/%FF"), PathRejection::InvalidUtf8);
    }

    #[test]
    fn characters_that_normalise_to_ascii_are_rejected() {
        // Fullwidth full stop and solidus, one-dot leader, Kelvin sign.
        for raw in [
            &b"/a/%EF%BC%8E%EF%BC%8E/b"[..],
            b"/a%EF%BC%8Fb",
            b"/%E2%80%A4",
            b"/%E2%84%AA",
        ] {
            assert_eq!(err(raw), PathRejection::ConfusableUnicode, "{raw:?}");
        }
        // Letters that stay non-ASCII are fine.
        assert_eq!(ok("/caf%C3%A9"), "/caf%C3%A9");
    }

    #[test]
    fn malformed_and_double_escapes_are_rejected() {
        assert_eq!(err(b"/%"), PathRejection::BadEscape);
        assert_eq!(err(b"/%4"), PathRejection::BadEscape);
        assert_eq!(err(b"/%zz"), PathRejection::BadEscape);
        assert_eq!(err(b"/%252F"), PathRejection::DoubleEncoding);
        assert_eq!(err(b"/%25%32%46"), PathRejection::DoubleEncoding);
    }

    #[test]
    fn semicolon_is_rejected() {
        assert_eq!(err(b"/a/..;/b"), PathRejection::Semicolon);
        assert_eq!(err(b"/admin;x/secret"), PathRejection::Semicolon);
        assert_eq!(err(b"/a%3Bb"), PathRejection::Semicolon);
    }

    #[test]
    fn non_origin_form_and_fragments_are_rejected() {
        assert_eq!(err(b"http://evil/"), PathRejection::NotOriginForm);
        assert_eq!(err(b"*"), PathRejection::NotOriginForm);
        assert_eq!(err(b"/a#b"), PathRejection::Fragment);
    }

    #[test]
    fn query_is_split_and_passed_through() {
        let (p, q) = normalize_path_and_query(b"/a/../b?x=1&y=%2F").unwrap();
        assert_eq!(p.as_str(), "/b");
        assert_eq!(q, Some("x=1&y=%2F"));
        assert_eq!(
            normalize_path_and_query(b"/a?x=\x01").unwrap_err(),
            PathRejection::BadQuery
        );
    }

    #[test]
    fn normalisation_is_idempotent() {
        let alphabet: &[&str] = &[
            "a", "b", ".", "..", "%2e", "%41", "%3F", "/", "//", ";x", "~",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..500 {
            let mut raw = String::from("/");
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                raw.push_str(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            if let Ok(once) = normalize(raw.as_bytes()) {
                let twice = normalize(once.as_str().as_bytes()).unwrap();
                assert_eq!(once, twice, "{raw}");
            }
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let p = |s: &str| normalize(s.as_bytes()).unwrap();
        let exact = |path: &str, prefix: &str| matches_prefix(&p(path), prefix, false);
        assert!(exact("/api", "/api"));
        assert!(exact("/api/", "/api"));
        assert!(exact("/api/x", "/api"));
        assert!(!exact("/apix", "/api"));
        assert!(exact("/anything", "/"));
        assert!(exact("/api/x", "/api/"));
        assert!(exact("/api/", "/api/"));
        assert!(
            exact("/api", "/api/"),
            "a trailing slash does not make another route"
        );
        assert!(!exact("/API/x", "/api"));
    }

    #[test]
    fn folded_prefixes_ignore_ascii_case_only() {
        let p = |s: &str| normalize(s.as_bytes()).unwrap();
        assert!(matches_prefix(&p("/ADMIN"), "/admin", true));
        assert!(matches_prefix(&p("/Admin/x"), "/admin", true));
        assert!(matches_prefix(&p("/%41dmin/x"), "/admin", true));
        assert!(!matches_prefix(&p("/ADMINX"), "/admin", true));
    }
}
