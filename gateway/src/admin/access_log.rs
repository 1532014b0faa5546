//! The access log: one line per request, formatted here rather than by
//! tracing's fmt layer. The fmt layer visits each field through `dyn`
//! visitors and `core::fmt`, and styles every field name even with colours
//! off; that was about a fifth of a public request's instructions. This
//! writes the same fields, in the same two formats, straight into the
//! thread's log buffer ([`super::log_sink`]), with no allocation.
//!
//! Values a client influences (path, subject, rule names) are escaped: a
//! line is always one line, in both formats.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::logging::LogFormat;

/// The target the access log is filtered by (`GATEHOUSE_LOG`) and named
/// by in JSON lines, as when tracing wrote it.
pub const TARGET: &str = "gatehouse::access";

/// One finished request, as the access log records it.
#[derive(Debug, Clone)]
pub struct AccessRecord<'a> {
    pub request_id: &'a str,
    pub client: Option<IpAddr>,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub denial: &'a str,
    pub user: &'a str,
    pub auth: &'a str,
    pub identity_source: &'a str,
    pub rule: &'a str,
    pub error: &'a str,
    pub duration: Duration,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Writes the access line for `record` if the log filter lets
/// `gatehouse::access` through at info.
pub fn write(record: &AccessRecord<'_>) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    if let Some((format, sink)) = super::logging::access_output() {
        let now = SystemTime::now();
        sink.append_with(|line| record.write_line(format, now, line));
    }
}

impl AccessRecord<'_> {
    /// Appends the whole line, newline included.
    pub fn write_line(&self, format: LogFormat, now: SystemTime, out: &mut Vec<u8>) {
        match format {
            LogFormat::Human => self.write_human(now, out),
            LogFormat::Json => self.write_json(now, out),
        }
        out.push(b'\n');
    }

    /// `<time>  INFO gatehouse::access: request key=value ...`, the layout
    /// of tracing's human format: free text quoted, tokens bare.
    fn write_human(&self, now: SystemTime, out: &mut Vec<u8>) {
        push_timestamp(now, out);
        out.extend_from_slice(b"  INFO gatehouse::access: request");
        self.write_fields::<Human>(out);
    }

    /// One JSON object with the keys tracing's flattened JSON format used.
    fn write_json(&self, now: SystemTime, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        push_timestamp(now, out);
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\"");
        self.write_fields::<Json>(out);
        out.extend_from_slice(b",\"target\":\"gatehouse::access\"}");
    }

    /// The fields, in order, the same for both formats.
    fn write_fields<E: Encoding>(&self, out: &mut Vec<u8>) {
        E::token(out, "request_id", self.request_id);
        E::address(out, "client", self.client);
        E::token(out, "method", self.method);
        E::token(out, "path", self.path);
        E::text(out, "route", self.route);
        E::number(out, "status", u64::from(self.status));
        E::text(out, "denial", self.denial);
        E::text(out, "user", self.user);
        E::text(out, "auth", self.auth);
        E::text(out, "identity_source", self.identity_source);
        E::text(out, "rule", self.rule);
        E::token(out, "error", self.error);
        E::key(out, "duration_ms");
        push_millis(self.duration, out);
        E::number(out, "bytes_in", self.bytes_in);
        E::number(out, "bytes_out", self.bytes_out);
    }
}

/// How one format writes a field: `key` starts it (separator included).
trait Encoding {
    fn key(out: &mut Vec<u8>, key: &str);
    /// Free text: always quoted and escaped.
    fn text(out: &mut Vec<u8>, key: &str, value: &str);
    /// A value that is usually one bare token (an id, a method, a path).
    fn token(out: &mut Vec<u8>, key: &str, value: &str);

    fn number(out: &mut Vec<u8>, key: &str, value: u64) {
        Self::key(out, key);
        out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// An address as text, empty when there is none.
    fn address(out: &mut Vec<u8>, key: &str, ip: Option<IpAddr>) {
        let mut text = AddressText::new();
        if let Some(ip) = ip {
            text.write(ip);
        }
        Self::token(out, key, text.as_str());
    }
}

/// tracing's human format: ` key=value`.
struct Human;

impl Encoding for Human {
    fn key(out: &mut Vec<u8>, key: &str) {
        out.push(b' ');
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
    }

    /// Quoted and escaped as Rust's `Debug` escapes strings (what tracing's
    /// human format did).
    fn text(out: &mut Vec<u8>, key: &str, value: &str) {
        Self::key(out, key);
        if value
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
        {
            out.push(b'"');
            out.extend_from_slice(value.as_bytes());
            out.push(b'"');
        } else {
            let mut text = String::with_capacity(value.len() + 8);
            let _ = write!(text, "{value:?}");
            out.extend_from_slice(text.as_bytes());
        }
    }

    /// Bare unless the value holds anything that could break the line or
    /// be mistaken for the next field; then quoted as text.
    fn token(out: &mut Vec<u8>, key: &str, value: &str) {
        if value.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
            Self::key(out, key);
            out.extend_from_slice(value.as_bytes());
        } else {
            Self::text(out, key, value);
        }
    }
}

/// JSON members: `,"key":value`, strings escaped by serde_json.
struct Json;

impl Encoding for Json {
    fn key(out: &mut Vec<u8>, key: &str) {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
    }

    fn text(out: &mut Vec<u8>, key: &str, value: &str) {
        Self::key(out, key);
        // Writing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }

    fn token(out: &mut Vec<u8>, key: &str, value: &str) {
        Self::text(out, key, value);
    }
}

/// An address written into a stack buffer: an IPv4 address (the common
/// case) digit by digit, since `Display` for addresses goes through
/// `core::fmt` and was a quarter of the line's cost.
struct AddressText {
    bytes: [u8; 48],
    len: usize,
}

impl AddressText {
    fn new() -> Self {
        AddressText {
            bytes: [0; 48],
            len: 0,
        }
    }

    fn write(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                let mut digits = itoa::Buffer::new();
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push(b".");
                    }
                    self.push(digits.format(octet).as_bytes());
                }
            }
            IpAddr::V6(v6) => {
                let mut cursor = std::io::Cursor::new(&mut self.bytes[..]);
                // The longest IPv6 text is 45 bytes: it always fits.
                let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{v6}"));
                self.len = cursor.position() as usize;
            }
        }
    }

    fn push(&mut self, part: &[u8]) {
        self.bytes[self.len..self.len + part.len()].copy_from_slice(part);
        self.len += part.len();
    }

    fn as_str(&self) -> &str {
        // Only digits, hex letters, `.` and `:` are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

/// RFC 3339 in UTC with microseconds, as tracing's timestamps. The part up
/// to the second is formatted once a second per thread (calendar arithmetic
/// and `core::fmt` were most of the line's cost); the microseconds are
/// written as digits.
fn push_timestamp(now: SystemTime, out: &mut Vec<u8>) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let second = since_epoch.as_secs();
    SECOND_TEXT.with(|cached| {
        let (cached_second, mut text) = cached.get();
        if cached_second != second || text[0] == 0 {
            let mut full = String::with_capacity(32);
            let _ = write!(
                full,
                "{}",
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(second))
            );
            // `YYYY-MM-DDTHH:MM:SS` then `Z`; years past 9999 do not occur.
            if let Some(prefix) = full.as_bytes().get(..SECOND_TEXT_LEN) {
                text.copy_from_slice(prefix);
                cached.set((second, text));
            }
        }
        out.extend_from_slice(&text);
    });
    out.push(b'.');
    let mut digits = itoa::Buffer::new();
    // Six digits with leading zeros: the leading `1` is cut off.
    let micros = digits.format(1_000_000 + since_epoch.subsec_micros());
    out.extend_from_slice(&micros.as_bytes()[1..]);
    out.push(b'Z');
}

const SECOND_TEXT_LEN: usize = "2026-12-07T03:45:01".len();

thread_local! {
    /// The second last formatted on this thread, and its text.
    static SECOND_TEXT: std::cell::Cell<(u64, [u8; SECOND_TEXT_LEN])> =
        const { std::cell::Cell::new((0, [0; SECOND_TEXT_LEN])) };
}

/// Milliseconds with three decimals (microsecond resolution).
fn push_millis(duration: Duration, out: &mut Vec<u8>) {
    let micros = duration.as_micros();
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(micros / 1000).as_bytes());
    out.push(b'.');
    let fraction = digits.format(1000 + micros % 1000).as_bytes();
    out.extend_from_slice(&fraction[1..]);
}

#[cfg(test)]
mod tests;
