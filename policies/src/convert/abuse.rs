//! Converting the abuse protections: rate-limit tiers and the audit log.

use std::num::NonZeroU32;
use std::time::Duration;

use toml::Spanned;

use crate::convert::context::Converter;
use crate::model::{AuditSettings, OnAuditFailure, Rate, RateLimits};
use crate::raw::*;

/// The peers' defaults: 30 requests a minute per address without an
/// identity, 120 per identity, and 5 failed logins a minute per address.
pub(crate) const DEFAULT_CLIENT_RATE: Rate = rate(30, 60);
pub(crate) const DEFAULT_IDENTITY_RATE: Rate = rate(120, 60);
pub(crate) const DEFAULT_LOGIN_RATE: Rate = rate(5, 60);
const DEFAULT_MAX_TRACKED_KEYS: usize = 100_000;
/// One subscriber or host usually holds a whole /64.
const DEFAULT_IPV6_PREFIX: usize = 64;
/// Two distinct passwords checked at once per address: a browser's
/// parallel requests share one check of the same credential, so only a
/// guesser needs more.
const DEFAULT_PASSWORD_CHECKS_PER_ADDRESS: usize = 2;
const MAX_RATE_COUNT: u32 = 1_000_000;
const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_AUDIT_FILE_SIZE: u64 = 100 * 1024 * 1024;
/// A year of records, within 1 GiB (ten full files): enough for most
/// compliance regimes and incident look-backs, bounded on a small disk.
const DEFAULT_AUDIT_MAX_AGE: Duration = Duration::from_secs(365 * 86_400);
const DEFAULT_AUDIT_MAX_TOTAL_SIZE: u64 = 1024 * 1024 * 1024;

const fn rate(count: u32, per_secs: u64) -> Rate {
    Rate {
        count: match NonZeroU32::new(count) {
            Some(n) => n,
            None => NonZeroU32::MIN,
        },
        per: Duration::from_secs(per_secs),
    }
}

const RATE_HINT: &str = "write it like \"30/min\", \"5/s\", \"1000/h\" or \"10/30s\"";

/// Parses `"N/unit"` or `"N/duration"`.
pub(crate) fn parse_rate(text: &str) -> Result<Rate, String> {
    let (count, period) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not a rate"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("`{}` is not a whole number of requests", count.trim()))?;
    let count = NonZeroU32::new(count)
        .filter(|n| n.get() <= MAX_RATE_COUNT)
        .ok_or_else(|| format!("the count must be between 1 and {MAX_RATE_COUNT}"))?;
    let period = period.trim();
    let per = match period {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        other => {
            humantime::parse_duration(other).map_err(|_| format!("`{other}` is not a period"))?
        }
    };
    if per.is_zero() || per > Duration::from_secs(86_400) {
        return Err("the period must be between 1s and one day".to_owned());
    }
    Ok(Rate { count, per })
}

impl Converter<'_> {
    pub(crate) fn rate(&mut self, raw: Option<&Spanned<String>>, default: Rate) -> Rate {
        let Some(raw) = raw else { return default };
        match parse_rate(raw.get_ref()) {
            Ok(rate) => rate,
            Err(message) => {
                self.problems.add_hint(Some(raw.span()), message, RATE_HINT);
                default
            }
        }
    }

    pub(crate) fn rate_limits(&mut self, raw: &RawRateLimit) -> RateLimits {
        // Each key costs about 100 bytes.
        let max_tracked_keys = self.bounded_count(
            &raw.max_tracked_keys,
            DEFAULT_MAX_TRACKED_KEYS,
            10..=10_000_000,
            "max_tracked_keys",
        );
        let ipv6_prefix = self.bounded_count(
            &raw.ipv6_prefix,
            DEFAULT_IPV6_PREFIX,
            32..=128,
            "ipv6_prefix",
        ) as u8;
        let password_checks_per_address = self.bounded_count(
            &raw.password_checks_per_address,
            DEFAULT_PASSWORD_CHECKS_PER_ADDRESS,
            1..=64,
            "password_checks_per_address",
        );
        RateLimits {
            client: self.rate(raw.client.as_ref(), DEFAULT_CLIENT_RATE),
            identity: self.rate(raw.identity.as_ref(), DEFAULT_IDENTITY_RATE),
            login: self.rate(raw.login.as_ref(), DEFAULT_LOGIN_RATE),
            max_tracked_keys,
            ipv6_prefix,
            password_checks_per_address,
        }
    }

    pub(crate) fn audit(&mut self, raw: &Option<Spanned<RawAudit>>) -> Option<AuditSettings> {
        let raw = raw.as_ref()?.get_ref();
        if raw.path.get_ref().trim().is_empty() {
            self.problems
                .add(Some(raw.path.span()), "the audit path is empty");
            return None;
        }
        let on_failure = match raw.on_audit_failure.as_ref() {
            None => OnAuditFailure::Deny,
            Some(v) => match v.get_ref().as_str() {
                "deny" => OnAuditFailure::Deny,
                "continue" => OnAuditFailure::Continue,
                other => {
                    self.problems.add_hint(
                        Some(v.span()),
                        format!("`{other}` is not an audit failure mode"),
                        "\"deny\" (serve 503 while records cannot be written) or \"continue\"",
                    );
                    OnAuditFailure::Deny
                }
            },
        };
        let max_file_size = self.size(&raw.max_file_size, DEFAULT_AUDIT_FILE_SIZE);
        let max_total_size = self.size(&raw.max_total_size, DEFAULT_AUDIT_MAX_TOTAL_SIZE);
        if max_total_size < max_file_size {
            // The active file alone may grow to max_file_size and is never
            // deleted, so a smaller total could not be kept.
            let span = raw
                .max_total_size
                .as_ref()
                .or(raw.max_file_size.as_ref())
                .map(|s| s.span());
            self.problems.add_hint(
                span,
                "max_total_size is smaller than max_file_size",
                "the active file alone may reach max_file_size; give max_total_size at least that (a few files' worth keeps history)",
            );
        }
        Some(AuditSettings {
            path: self.file_path(&raw.path),
            fsync_interval: self.duration(&raw.fsync_interval, DEFAULT_FSYNC_INTERVAL),
            max_file_size,
            on_failure,
            stdout: raw.stdout,
            max_age: self.duration(&raw.max_age, DEFAULT_AUDIT_MAX_AGE),
            max_total_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, Policy, Problem};

    const POLICY: &str = concat!(
        crate::tests::policy_head!(),
        r#"
[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:9000"
public = true

[audit]
path = "audit.jsonl"
"#
    );

    fn audit_with(keys: &str) -> Result<Policy, Vec<Problem>> {
        parse(
            std::path::Path::new("policy.toml"),
            &format!("{POLICY}{keys}"),
        )
        .map_err(|e| e.problems().to_vec())
    }

    #[test]
    fn audit_retention_defaults_to_a_year_and_one_gibibyte() {
        let policy = audit_with("").expect("valid");
        let audit = policy.audit.expect("audit");
        assert_eq!(audit.max_age, Duration::from_secs(365 * 86_400));
        assert_eq!(audit.max_total_size, 1 << 30);
        let policy = audit_with("max_age = \"30d\"\nmax_total_size = \"10GiB\"\n").expect("valid");
        let audit = policy.audit.expect("audit");
        assert_eq!(audit.max_age, Duration::from_secs(30 * 86_400));
        assert_eq!(audit.max_total_size, 10 << 30);
    }

    #[test]
    fn bad_audit_retention_is_reported_where_it_is_written() {
        let line = POLICY.lines().count() + 1;
        let problems =
            audit_with("max_age = \"forever\"\nmax_total_size = \"lots\"\n").expect_err("refused");
        assert_eq!(problems.len(), 2, "{problems:?}");
        let at = |text: &str| {
            let p = problems
                .iter()
                .find(|p| p.message.contains(text))
                .unwrap_or_else(|| panic!("no problem says {text}: {problems:?}"));
            (p.line, p.column)
        };
        assert_eq!(at("`forever` is not a duration"), (line, 11));
        assert_eq!(at("`lots` is not a positive size"), (line + 1, 18));

        // A total the active file alone could exceed cannot be kept.
        let problems = audit_with("max_file_size = \"100MiB\"\nmax_total_size = \"10MiB\"\n")
            .expect_err("refused");
        assert!(problems[0]
            .message
            .contains("max_total_size is smaller than max_file_size"));
        assert_eq!(problems[0].line, line + 1);
    }

    #[test]
    fn rates_parse_units_and_durations() {
        let r = parse_rate("30/min").unwrap();
        assert_eq!((r.count.get(), r.per), (30, Duration::from_secs(60)));
        let r = parse_rate("5 / s").unwrap();
        assert_eq!((r.count.get(), r.per), (5, Duration::from_secs(1)));
        let r = parse_rate("10/30s").unwrap();
        assert_eq!((r.count.get(), r.per), (10, Duration::from_secs(30)));
        let r = parse_rate("1000/hour").unwrap();
        assert_eq!(r.per, Duration::from_secs(3600));
    }

    #[test]
    fn bad_rates_are_refused() {
        for bad in [
            "30",
            "0/min",
            "-1/min",
            "x/min",
            "5/fortnight",
            "5/0s",
            "5/2d",
            "2000000/s",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad} was accepted");
        }
    }
}
