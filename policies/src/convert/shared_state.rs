//! `[shared_state]`: the Redis that gateway replicas share, and what the
//! gateway does while it does not answer.

use std::time::Duration;

use toml::Spanned;

use super::Converter;
use crate::raw::RawSharedState;
use crate::{SharedState, WhenUnavailable};

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_TIMEOUT: Duration = Duration::from_secs(5);

impl Converter<'_> {
    pub(crate) fn shared_state(
        &mut self,
        raw: &Option<Spanned<RawSharedState>>,
    ) -> Option<SharedState> {
        let raw = raw.as_ref()?.get_ref();
        let url = raw.redis.get_ref();
        match url::Url::parse(url) {
            Ok(parsed)
                if matches!(parsed.scheme(), "redis" | "rediss") && parsed.host().is_some() =>
            {
                if parsed.password().is_some() {
                    self.problems.add_hint(
                        Some(raw.redis.span()),
                        "the Redis URL holds a password",
                        "use `password = \"${REDIS_PASSWORD}\"` or `password_file`, so the policy file holds no secret",
                    );
                }
            }
            _ => self.problems.add_hint(
                Some(raw.redis.span()),
                "`redis` is not a Redis URL",
                "redis://host:port or rediss://host:port (TLS)",
            ),
        }
        let password = (raw.password.is_some() || raw.password_file.is_some())
            .then(|| {
                self.secret(
                    "password",
                    &raw.password,
                    &raw.password_file,
                    1,
                    raw.redis.span(),
                )
            })
            .flatten();
        let when_unavailable = match raw.when_unavailable.as_ref() {
            None => WhenUnavailable::LocalLimits,
            Some(v) => match v.get_ref().as_str() {
                "local_limits" => WhenUnavailable::LocalLimits,
                "refuse" => WhenUnavailable::Refuse,
                other => {
                    self.problems.add_hint(
                        Some(v.span()),
                        format!("unknown when_unavailable `{other}`"),
                        "\"local_limits\" (each replica limits on its own) or \"refuse\" (503)",
                    );
                    WhenUnavailable::LocalLimits
                }
            },
        };
        let timeout = self.duration(&raw.timeout, DEFAULT_TIMEOUT);
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            let span = raw.timeout.as_ref().map(|t| t.span());
            self.problems.add(
                span,
                "the shared-state timeout must be more than 0 and at most 5s",
            );
        }
        Some(SharedState {
            redis_url: url.clone(),
            password,
            when_unavailable,
            timeout,
        })
    }
}
