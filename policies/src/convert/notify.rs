//! Converting `[scheduler.notify]` and a job's `notify`. Every destination
//! the policy names must match `allow_hosts` here, so a typo or a pasted
//! internal URL fails `check` rather than the first delivery. (A Slack URL
//! kept in an env var or file is checked when the scheduler reads it.)

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::convert::context::Converter;
use crate::convert::identity::is_plain_name;
use crate::notify::*;
use crate::raw::notify::*;
use crate::secret::SecretSource;
use toml::Spanned;

const MAX_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;
const MAX_RETRIES: usize = 10;

impl Converter<'_> {
    pub(crate) fn notify_settings(&mut self, raw: &Option<Spanned<RawNotify>>) -> NotifySettings {
        let Some(raw) = raw else {
            return NotifySettings::default();
        };
        let r = raw.get_ref();
        let guard = GuardSettings {
            allow_hosts: r
                .allow_hosts
                .iter()
                .filter_map(|h| self.host_pattern(h))
                .collect(),
            insecure_allow_networks: self.cidrs(&r.insecure_allow_networks),
            timeout: self.duration(&r.timeout, DEFAULT_TIMEOUT),
            max_response: self.size(&r.max_response, DEFAULT_MAX_RESPONSE),
        };
        if guard.timeout > MAX_TIMEOUT {
            self.problems.add(
                r.timeout.as_ref().map(Spanned::span),
                "timeout may be at most 5m",
            );
        }
        if guard.max_response > MAX_RESPONSE {
            self.problems.add(
                r.max_response.as_ref().map(Spanned::span),
                "max_response may be at most 16MiB",
            );
        }
        let mut channels = Vec::new();
        for w in &r.webhook {
            channels.extend(self.webhook(w.get_ref(), &guard));
        }
        for s in &r.slack {
            channels.extend(self.slack(s.get_ref(), &guard));
        }
        for e in &r.email {
            channels.extend(self.email(e.get_ref(), &guard));
        }
        let mut names = HashSet::new();
        for (name, span) in channel_names(r) {
            if !is_plain_name(name) {
                self.problems.add_hint(
                    Some(span),
                    format!("channel name `{name}` is not allowed"),
                    "use lower-case letters, digits, '-' and '_'",
                );
            } else if !names.insert(name) {
                self.problems
                    .add(Some(span), format!("channel `{name}` is declared twice"));
            }
        }
        let mut settings = NotifySettings {
            channels,
            default: JobNotify::default(),
            guard,
            queue: self.bounded_count(&r.queue, DEFAULT_QUEUE, 1..=100_000, "queue"),
            retries: self.bounded_count(
                &r.retries,
                DEFAULT_RETRIES as usize,
                0..=MAX_RETRIES,
                "retries",
            ) as u32,
        };
        settings.default = JobNotify {
            to: self.channel_refs(&r.to, &settings),
            on: self.events(r.on.as_deref()),
        };
        settings
    }

    /// A job's `notify`; missing keys come from `[scheduler.notify]`.
    pub(crate) fn job_notify(
        &mut self,
        raw: &Option<Spanned<RawJobNotify>>,
        settings: &NotifySettings,
    ) -> JobNotify {
        let Some(raw) = raw else {
            return settings.default.clone();
        };
        let r = raw.get_ref();
        JobNotify {
            to: match &r.to {
                Some(to) => self.channel_refs(to, settings),
                None => settings.default.to.clone(),
            },
            on: match &r.on {
                Some(on) => self.events(Some(on)),
                None => settings.default.on.clone(),
            },
        }
    }

    fn channel_refs(&mut self, raw: &[Spanned<String>], settings: &NotifySettings) -> Vec<String> {
        let mut out = Vec::new();
        for name in raw {
            if settings.channel(name.get_ref()).is_none() {
                self.problems.add_hint(
                    Some(name.span()),
                    format!("no notification channel is named `{}`", name.get_ref()),
                    "declare it under [[scheduler.notify.webhook]], [[scheduler.notify.slack]] or [[scheduler.notify.email]]",
                );
            } else if !out.contains(name.get_ref()) {
                out.push(name.get_ref().clone());
            }
        }
        out
    }

    fn events(&mut self, raw: Option<&[Spanned<String>]>) -> BTreeSet<NotifyEvent> {
        let Some(raw) = raw else {
            return NotifyEvent::DEFAULT.into_iter().collect();
        };
        raw.iter()
            .filter_map(|e| {
                let event = NotifyEvent::parse(e.get_ref());
                if event.is_none() {
                    self.problems.add_hint(
                        Some(e.span()),
                        format!("`{}` is not a notification event", e.get_ref()),
                        "\"failed\", \"timed_out\", \"lost\", \"recovered\" or \"succeeded\"",
                    );
                }
                event
            })
            .collect()
    }

    fn host_pattern(&mut self, raw: &Spanned<String>) -> Option<HostPattern> {
        let text = raw.get_ref().trim().trim_end_matches('.');
        let unbracketed = text.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = IpAddr::from_str(unbracketed) {
            return Some(HostPattern::Ip(ip));
        }
        let (wildcard, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let name = self.host_name(&Spanned::new(raw.span(), name.to_owned()))?;
        Some(if wildcard {
            HostPattern::Suffix(name)
        } else {
            HostPattern::Exact(name)
        })
    }

    /// Whether `host` (from a URL or `server`) matches `allow_hosts`; if
    /// not, says so at `span`.
    fn allowed_host(&mut self, host: &url::Host<&str>, guard: &GuardSettings, span: Spanned<()>) {
        if guard.allows_host(host) {
            return;
        }
        self.problems.add_hint(
            Some(span.span()),
            format!("host `{host}` is not in [scheduler.notify] allow_hosts"),
            "notifications only go to hosts the policy allows; add it to allow_hosts",
        );
    }

    fn destination_url(
        &mut self,
        raw: &Spanned<String>,
        guard: &GuardSettings,
    ) -> Option<url::Url> {
        match url::Url::parse(raw.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if !u.username().is_empty() || u.password().is_some() {
                    self.problems.add(
                        Some(raw.span()),
                        "a notification URL cannot carry a user or password",
                    );
                    return None;
                }
                if let Some(host) = u.host() {
                    self.allowed_host(&host, guard, Spanned::new(raw.span(), ()));
                }
                Some(u)
            }
            _ => {
                self.problems.add_hint(
                    Some(raw.span()),
                    "not an http(s) URL with a host",
                    "for example \"https://hooks.example.com/gatehouse\"",
                );
                None
            }
        }
    }

    /// `key = "..."` / `key_file = "..."`, as everywhere in the policy; a
    /// missing secret is reported at `span`.
    fn secret_ref(
        &mut self,
        key: &str,
        value: &Option<Spanned<String>>,
        file: &Option<Spanned<String>>,
        span: std::ops::Range<usize>,
    ) -> Option<SecretRef> {
        let path = file.as_ref().map(|f| self.file_path(f));
        let at = value
            .as_ref()
            .or(file.as_ref())
            .map(Spanned::span)
            .unwrap_or(span);
        match SecretSource::from_keys(
            key,
            value.as_ref().map(|v| v.get_ref().as_str()),
            path.as_deref(),
        ) {
            Ok(Some(SecretSource::Inline(text))) => {
                match SecretSource::Inline(text).resolve(|_| None) {
                    Ok(secret) => Some(SecretRef::Inline(secret)),
                    Err(e) => {
                        self.problems.add(Some(at), format!("`{key}`: {e}"));
                        None
                    }
                }
            }
            Ok(Some(SecretSource::Env(var))) => Some(SecretRef::Env(var.to_owned())),
            Ok(Some(SecretSource::File(p))) => Some(SecretRef::File(Path::to_path_buf(p))),
            Ok(None) => {
                self.problems.add_hint(
                    Some(at),
                    format!("`{key}` is missing"),
                    format!("set `{key} = \"${{VAR}}\"` or `{key}_file = \"/run/secrets/...\"`"),
                );
                None
            }
            Err(e) => {
                self.problems.add(Some(at), e.to_string());
                None
            }
        }
    }

    fn webhook(&mut self, r: &RawWebhook, guard: &GuardSettings) -> Option<Channel> {
        let url = self.destination_url(&r.url, guard);
        let secret = self.secret_ref("secret", &r.secret, &r.secret_file, r.name.span());
        Some(Channel {
            name: r.name.get_ref().clone(),
            kind: ChannelKind::Webhook {
                url: url?,
                secret: secret?,
            },
        })
    }

    fn slack(&mut self, r: &RawSlack, guard: &GuardSettings) -> Option<Channel> {
        let url = self.secret_ref("url", &r.url, &r.url_file, r.name.span())?;
        if let (SecretRef::Inline(_), Some(raw)) = (&url, &r.url) {
            self.destination_url(raw, guard)?;
        }
        Some(Channel {
            name: r.name.get_ref().clone(),
            kind: ChannelKind::Slack { url },
        })
    }

    fn email(&mut self, r: &RawEmail, guard: &GuardSettings) -> Option<Channel> {
        let server = self.smtp_server(&r.server);
        if let Some((host, _)) = &server {
            let span = Spanned::new(r.server.span(), ());
            match IpAddr::from_str(host) {
                Ok(ip) => self.allowed_host(&ip_host(ip), guard, span),
                Err(_) => self.allowed_host(&url::Host::Domain(host), guard, span),
            }
        }
        let mut addresses = vec![&r.from];
        addresses.extend(r.to.iter());
        for address in &addresses {
            if !is_plain_address(address.get_ref()) {
                self.problems.add_hint(
                    Some(address.span()),
                    format!("`{}` is not a mail address", address.get_ref()),
                    "write it like \"ops@example.com\"",
                );
            }
        }
        if r.to.is_empty() {
            self.problems.add(
                Some(r.name.span()),
                "an email channel needs at least one `to` address",
            );
        }
        let password = match (&r.password, &r.password_file) {
            (None, None) => None,
            _ => Some(self.secret_ref("password", &r.password, &r.password_file, r.name.span())?),
        };
        if password.is_some() != r.username.is_some() {
            self.problems.add(
                Some(r.name.span()),
                "set `username` and `password` together",
            );
        }
        let (host, port) = server?;
        Some(Channel {
            name: r.name.get_ref().clone(),
            kind: ChannelKind::Email(EmailChannel {
                host,
                port,
                from: r.from.get_ref().clone(),
                to: r.to.iter().map(|t| t.get_ref().clone()).collect(),
                username: r.username.as_ref().map(|u| u.get_ref().clone()),
                password,
                ca_file: r.ca_file.as_ref().map(|f| self.file_path(f)),
            }),
        })
    }

    /// `host`, `host:port`, `[v6]:port`.
    fn smtp_server(&mut self, raw: &Spanned<String>) -> Option<(String, u16)> {
        let text = raw.get_ref().trim();
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, Some(p)),
            _ => (text, None),
        };
        let port = match port.map(u16::from_str) {
            None => Some(DEFAULT_SMTP_PORT),
            Some(Ok(p)) if p != 0 => Some(p),
            Some(_) => None,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = self.host_name(&Spanned::new(raw.span(), host.to_owned()));
        if port.is_none() {
            self.problems.add_hint(
                Some(raw.span()),
                format!("`{text}` has no valid port"),
                "write it like \"smtp.example.com:587\"",
            );
        }
        Some((host?, port?))
    }
}

fn ip_host<'a>(ip: IpAddr) -> url::Host<&'a str> {
    match ip {
        IpAddr::V4(v4) => url::Host::Ipv4(v4),
        IpAddr::V6(v6) => url::Host::Ipv6(v6),
    }
}

/// `local@domain` with no spaces, controls or angle brackets: enough to
/// keep header injection out; the scheduler parses it fully.
fn is_plain_address(text: &str) -> bool {
    text.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
}

fn channel_names(r: &RawNotify) -> Vec<(&str, std::ops::Range<usize>)> {
    let webhooks = r.webhook.iter().map(|w| &w.get_ref().name);
    let slacks = r.slack.iter().map(|s| &s.get_ref().name);
    let emails = r.email.iter().map(|e| &e.get_ref().name);
    webhooks
        .chain(slacks)
        .chain(emails)
        .map(|n| (n.get_ref().as_str(), n.span()))
        .collect()
}
