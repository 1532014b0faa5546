//! What every section's conversion shares: the [`Converter`] (problems,
//! environment, base directory) and the parsers of the value kinds the
//! file uses everywhere (addresses, host names, paths, CIDRs, durations,
//! sizes, counts). The section modules build on this; it builds on none
//! of them.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use crate::error::Problems;

pub(crate) struct Converter<'a> {
    pub problems: Problems<'a>,
    /// Looks up `${VAR}` secrets.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Relative file paths in the policy resolve against this directory.
    pub base_dir: PathBuf,
}

impl Converter<'_> {
    pub(crate) fn socket_addr(&mut self, raw: &Spanned<String>) -> Option<SocketAddr> {
        match SocketAddr::from_str(raw.get_ref()) {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("`{}` is not an IP address and port", raw.get_ref()),
                    "write it as \"127.0.0.1:8443\" or \"[::1]:8443\"",
                );
                None
            }
        }
    }

    /// A lower-cased DNS name or IP literal.
    pub(crate) fn host_name(&mut self, raw: &Spanned<String>) -> Option<String> {
        let name = raw.get_ref().trim().to_ascii_lowercase();
        let is_ip = IpAddr::from_str(&name).is_ok();
        let is_dns = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if is_ip || is_dns {
            Some(name)
        } else {
            self.problems.add_hint(
                Some(raw.span()),
                format!("`{}` is not a host name or IP address", raw.get_ref()),
                "wildcards and ports are not supported here",
            );
            None
        }
    }

    pub(crate) fn file_path(&self, raw: &Spanned<String>) -> PathBuf {
        let path = Path::new(raw.get_ref());
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    pub(crate) fn cidrs(&mut self, raw: &[Spanned<String>]) -> Vec<IpNet> {
        raw.iter().filter_map(|entry| self.cidr(entry)).collect()
    }

    pub(crate) fn cidr(&mut self, raw: &Spanned<String>) -> Option<IpNet> {
        let text = raw.get_ref().trim();
        let parsed = IpNet::from_str(text)
            .ok()
            .or_else(|| IpAddr::from_str(text).ok().map(IpNet::from));
        match parsed {
            Some(net) if net.trunc() != net => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("`{text}` has host bits set"),
                    format!("did you mean {}?", net.trunc()),
                );
                None
            }
            Some(net) => Some(net),
            None => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("`{text}` is not a CIDR or IP address"),
                    "write \"10.0.0.0/8\", \"2001:db8::/32\" or a single address",
                );
                None
            }
        }
    }

    pub(crate) fn duration(
        &mut self,
        raw: &Option<Spanned<String>>,
        default: Duration,
    ) -> Duration {
        let Some(raw) = raw else { return default };
        match humantime::parse_duration(raw.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.problems
                    .add(Some(raw.span()), "a duration of zero is not allowed here");
                default
            }
            Err(e) => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("`{}` is not a duration: {e}", raw.get_ref()),
                    "write it like \"30s\", \"5m\" or \"1h 30m\"",
                );
                default
            }
        }
    }

    pub(crate) fn size(&mut self, raw: &Option<Spanned<String>>, default: u64) -> u64 {
        let Some(raw) = raw else { return default };
        match bytesize::ByteSize::from_str(raw.get_ref()) {
            Ok(size) if size.as_u64() > 0 => size.as_u64(),
            _ => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("`{}` is not a positive size", raw.get_ref()),
                    "write it like \"64KiB\" or \"1MiB\"",
                );
                default
            }
        }
    }

    /// A positive whole number no larger than `max`, or `default` when absent.
    pub(crate) fn bounded_count(
        &mut self,
        raw: &Option<Spanned<i64>>,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
        what: &str,
    ) -> usize {
        let Some(raw) = raw else { return default };
        match usize::try_from(*raw.get_ref()) {
            Ok(n) if range.contains(&n) => n,
            _ => {
                self.problems.add_hint(
                    Some(raw.span()),
                    format!("{what} is out of range"),
                    format!("between {} and {}", range.start(), range.end()),
                );
                default
            }
        }
    }
}

/// The route limits `[limits]` sets for every route that sets none.
pub(crate) struct RouteDefaults {
    pub max_body: u64,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

pub(crate) fn listeners_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}
